"""The inventory schema (docs/inventory.md): what loads, and errors that name file:line and the field."""

from __future__ import annotations

import textwrap

import pytest

from kaudit.core.inventory import parse_inventory
from kaudit.core.errors import UsageError

GOOD = """\
loki:
  url: https://loki.example.net:3100/
  tenant: audit
  username: kaudit
  password_env: LOKI_PW
  ca_file: certs/ca.pem
parallel: 2
clusters:
  - name: lab
    hosts: lima:lab
  - name: prod-eu
    hosts:
      - ssh://root@10.0.0.5
      - ssh://root@10.0.0.6:2222
    ssh_key: ~/.ssh/prod
    kubeconfig: kube/prod-eu
    options:
      collector: alloy
      policy_profile: gce-modern
      namespace: audit
"""


def load(text: str):
    return parse_inventory(textwrap.dedent(text), "clusters.yaml", "/inv")


def test_a_full_inventory_loads_with_paths_from_its_directory():
    inv = load(GOOD)
    assert inv.parallel == 2
    assert inv.loki.url == "https://loki.example.net:3100" and inv.loki.tenant == "audit"
    assert inv.loki.password_env == "LOKI_PW" and inv.loki.ca_file == "/inv/certs/ca.pem"
    lab, prod = inv.clusters
    assert lab.name == "lab" and lab.hosts == ("lima:lab",) and lab.options == {}
    assert prod.hosts == ("ssh://root@10.0.0.5", "ssh://root@10.0.0.6:2222")
    assert prod.kubeconfig == "/inv/kube/prod-eu" and prod.ssh_key.endswith("/.ssh/prod") and not prod.ssh_key.startswith("~")
    assert prod.options == {"collector": "alloy", "policy_profile": "gce-modern", "namespace": "audit"}
    assert prod.where == "clusters.yaml:11"


@pytest.mark.parametrize(
    "text,where,message",
    [
        ("clusters:\n  - name: lab\n    hosts: [lima:lab]\n    colour: red\n", "clusters.yaml:4: clusters[0].colour", "unknown field"),
        ("clusters:\n  - name: lab\n", "clusters.yaml:2: clusters[0].hosts", "is missing"),
        ("clusters:\n  - name: lab\n    hosts: [lima:lab]\n  - name: bad name\n    hosts: [lima:b]\n",
         "clusters.yaml:4: clusters[1].name", "not a cluster name"),
        ("clusters:\n  - name: a\n    hosts: [lima:a]\n  - name: a\n    hosts: [lima:b]\n",
         "clusters.yaml:4: clusters[1].name", "already the name of the cluster at clusters.yaml:2"),
        ("clusters:\n  - name: a\n    hosts:\n      - lima:a\n      - ftp://x\n", "clusters.yaml:5: clusters[0].hosts[1]", "not a host kaudit knows"),
        ("clusters:\n  - name: a\n    hosts: [ssh://root@h:99999]\n", "clusters.yaml:3: clusters[0].hosts[0]", "65535"),
        ("clusters:\n  - name: a\n    hosts: [lima:a]\n    options:\n      collector: fluentd\n",
         "clusters.yaml:5: clusters[0].options.collector", "not one of: promtail, shipper, alloy, none"),
        ("clusters:\n  - name: a\n    hosts: [lima:a]\n    options: {shipper_image: 3}\n", "clusters.yaml:4: clusters[0].options.shipper_image", "not a non-empty string"),
        ("loki:\n  url: ftp://l\nclusters:\n  - name: a\n    hosts: [lima:a]\n", "clusters.yaml:2: loki.url", "not an http(s) URL"),
        ("loki:\n  url: http://l\n  password_file: p\nclusters:\n  - name: a\n    hosts: [lima:a]\n", "clusters.yaml:1: loki.username", "needs a user"),
        ("loki:\n  url: http://l\n  username: u\n  password_file: p\n  token_env: T\nclusters:\n  - {name: a, hosts: [lima:a]}\n",
         "clusters.yaml:3: loki", "exclude each other"),
        ("parallel: 0\nclusters:\n  - {name: a, hosts: [lima:a]}\n", "clusters.yaml:1: parallel", "at least 1"),
        ("clusters: []\n", "clusters.yaml:1: clusters", "at least one cluster"),
        ("clusters:\n  - {name: a, hosts: [ssh://root@h]}\n  - {name: b, hosts: [ssh://root@h]}\n", "clusters.yaml:3: clusters[1].hosts", "also a host of cluster a"),
        ("clusters:\n  - {name: a, hosts: [lima:a], rootfs: /x}\n", "clusters.yaml:2: clusters[0].rootfs", "only with hosts: [local]"),
        ("clusters:\n  - name: a\n    hosts: [lima:a\n", "clusters.yaml:4", "not valid YAML"),
    ],
)
def test_errors_name_file_line_and_field(text, where, message):
    with pytest.raises(UsageError) as e:
        load(text)
    assert e.value.message.startswith(where), e.value.message
    assert message in e.value.message and e.value.hint


def test_cli_reports_inventory_errors_as_usage_errors_before_touching_anything(cli, tmp_path):
    inv = tmp_path / "clusters.yaml"
    inv.write_text("clusters:\n  - name: lab\n    hosts: [lima:lab]\n    kubeconfig: nowhere/kubeconfig\n")
    r = cli(["up", "-f", inv])
    assert r.code == 2 and f"{inv}:2: lab.kubeconfig" in r.err and "no such file" in r.err
    r = cli(["up", "-f", tmp_path / "missing.yaml"])
    assert r.code == 2 and "no such file" in r.err
    r = cli(["up", "-f", inv, "--host", "lima:x"])
    assert r.code == 2 and "leave out --host" in r.err
    inv.write_text("loki:\n  url: http://l\n  username: u\n  password_file: pw\nclusters:\n  - {name: a, hosts: [local], rootfs: .}\n")
    r = cli(["up", "-f", inv, "--dry-run"])
    assert r.code == 2 and f"{inv}:1: loki.password-file" in r.err and "no such file" in r.err

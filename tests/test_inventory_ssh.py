"""`kaudit up -f clusters.yaml` over real SSH: two kubeadm clusters behind their own loopback sshd
(tests/ssh_nodes.py) and one whose host does not answer. The two are configured side by side,
the third fails without stopping them, the exit code is 1 and the summary names it. The Loki
password reaches the cluster only inside the Secret: never an argv, a ConfigMap or a DaemonSet."""

from __future__ import annotations

import base64
import json
import socket

import pytest

from cluster_doubles import Cluster
from ssh_nodes import ssh_nodes  # noqa: F401  (fixture)

PASSWORD = "s3cret-pa55word-for-loki"
CA = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket closes: nothing listens


@pytest.fixture
def fleet(tmp_path, ssh_nodes, monkeypatch):  # noqa: F811
    east, west = ssh_nodes("cp-east", "east-kubeadm"), ssh_nodes("cp-west", "west-kubeadm")
    cluster = Cluster.make(tmp_path / "workstation")
    for k, v in cluster.env.items():
        monkeypatch.setenv(k, v)
    (tmp_path / "loki-password").write_text(PASSWORD + "\n")
    (tmp_path / "ca.pem").write_text(CA)
    gone = _closed_port()
    key = east.server.key_path

    def entry(name, node):
        return (
            f"  - name: {name}\n"
            f"    hosts: [{node.url}]\n"
            f"    ssh_key: {node.server.key_path}\n"
            f"    known_hosts: {node.server.known_hosts_path}\n"
            f"    kubeconfig: workstation/kubeconfig\n"
            f"    options: {{collector: shipper, namespace: audit-{name}}}\n"
        )

    (tmp_path / "clusters.yaml").write_text(
        "loki:\n"
        "  url: https://loki.example.net:3100\n"
        "  tenant: audit\n"
        "  username: kaudit\n"
        "  password_file: loki-password\n"
        "  ca_file: ca.pem\n"
        "parallel: 3\n"
        "clusters:\n"
        + entry("east", east)
        + entry("west", west)
        + f"  - name: gone\n    hosts: [ssh://root@127.0.0.1:{gone}]\n    ssh_key: {key}\n"
        "    known_hosts: ca.pem\n    kubeconfig: workstation/kubeconfig\n"
    )
    return tmp_path / "clusters.yaml", east, west, cluster


UP = ["--only", "policy,apiserver,persist,collector", "--wait-timeout", "20s"]


def test_two_clusters_configured_one_unreachable_fails_alone(cli, fleet):
    inventory, east, west, cluster = fleet
    before = {n.name: n.manifest() for n in (east, west)}

    r = cli(["up", "-f", inventory, *UP])

    assert r.code == 1, r.err
    summary = r.err[r.err.index("kaudit up summary (clusters)"):]
    rows = {line.split()[0]: line.split()[1] for line in summary.splitlines()[2:5]}
    assert rows == {"east": "ok", "west": "ok", "gone": "FAILED"}, r.err
    assert rows == {"east": "ok", "west": "ok", "gone": "FAILED"}
    assert "1 of 3 cluster(s) failed: gone" in r.err
    assert f"127.0.0.1:{inventory.read_text().split('127.0.0.1:')[-1].split(']')[0]}" in summary  # the failure says where
    for node in (east, west):
        text = node.manifest()
        assert text != before[node.name] and "--audit-log-path=" in text
        assert (node.etc / "kubernetes/audit-policy.yaml").is_file()
        kubeadm = node.state()["configmaps"]["kube-system/kubeadm-config"]["data"]["ClusterConfiguration"]
        assert "audit-log-path" in kubeadm

    applies = {}
    for call in cluster.kubectl_calls():
        assert PASSWORD not in " ".join(call["argv"])
        if call["stdin"]:
            items = json.loads(call["stdin"])["items"]
            ns = {i["metadata"].get("namespace") for i in items} - {None}
            applies[ns.pop()] = items
    assert set(applies) == {"audit-east", "audit-west"}
    for name, items in (("east", applies["audit-east"]), ("west", applies["audit-west"])):
        kinds = {i["kind"]: i for i in items}
        secret = kinds["Secret"]
        assert base64.b64decode(secret["data"]["password"]).decode() == PASSWORD
        assert base64.b64decode(secret["data"]["ca.crt"]).decode() == CA
        others = json.dumps([i for i in items if i["kind"] != "Secret"])
        assert PASSWORD not in others and base64.b64encode(PASSWORD.encode()).decode() not in others
        [c] = kinds["DaemonSet"]["spec"]["template"]["spec"]["containers"]
        args = c["args"]
        assert args[args.index("--cluster") + 1] == name  # the inventory's name, not kubeadm's clusterName
        assert args[args.index("--loki-url") + 1] == "https://loki.example.net:3100"
        assert args[args.index("--tenant") + 1] == "audit"
        assert args[args.index("--basic-auth-password-file") + 1] == "/etc/kaudit/loki-auth/password"
        assert args[args.index("--ca-file") + 1] == "/etc/kaudit/loki-auth/ca.crt"
    assert PASSWORD not in r.err + r.out

    # the same file again: nothing changes on the two clusters, the third still fails
    again = cli(["up", "-f", inventory, *UP])
    assert again.code == 1
    for name in ("east", "west"):
        line = next(x for x in again.err.splitlines() if x.strip().startswith(name + " "))
        assert " ok " in line and "changed" not in line.replace("unchanged", ""), line

    # diff-manifest with the same file: nothing pending on the two, the unreachable one is an error (1)
    d = cli(["diff-manifest", "-f", inventory, "--exit-code"])
    assert d.code == 1 and d.out == ""
    assert "0 of 1 manifest(s) with changes pending" in d.err

    # and down takes it all out again
    down = cli(["down", "-f", inventory, "--parallel", "2"])
    assert down.code == 1, down.err
    for node in (east, west):
        assert "--audit-log-path" not in node.manifest()
    d = cli(["diff-manifest", "-f", inventory, "--exit-code"])
    assert d.code == 1 and d.out.count("+    - --audit-log-path=") == 2


def test_cluster_label_defaults_to_kubeadms_cluster_name_over_ssh(cli, tmp_path, ssh_nodes, monkeypatch):  # noqa: F811
    node = ssh_nodes("cp-1", "prod-eu")
    cluster = Cluster.make(tmp_path / "workstation")
    for k, v in cluster.env.items():
        monkeypatch.setenv(k, v)
    r = cli(["-v", "up", "--host", node.url, "--ssh-key", node.server.key_path, "--ssh-known-hosts", node.server.known_hosts_path,
             "--only", "collector", "--collector", "shipper", "--kubeconfig", cluster.root / "kubeconfig",
             "--loki-url", "http://loki.example.net:3100"])
    assert r.code == 0, r.err
    [apply] = [c for c in cluster.kubectl_calls() if c["stdin"]]
    ds = [i for i in json.loads(apply["stdin"])["items"] if i["kind"] == "DaemonSet"][0]
    args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--cluster") + 1] == "prod-eu"
    assert "cluster label: prod-eu (clusterName in kube-system/kubeadm-config)" in r.err

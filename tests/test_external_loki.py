"""An existing Loki behind a gateway: basic auth or a bearer token, a tenant, https with a private CA.

The Loki double (tests/doubles/loki.py) plays the gateway and Loki; the CA and the server
certificate are made here with `cryptography`. The shipper pushes to it with the cluster
label, `kaudit verify` and `kaudit query` read from it, and the credentials never appear in
an argv or in a rendered collector config: only file paths do.
"""

from __future__ import annotations

import datetime
import ipaddress
import json

import pytest

from cluster_doubles import Cluster
from doubles.loki import LokiDouble
from loki_fixture import loki_factory  # noqa: F401  (fixture)
from shipper_helpers import ShipperProc, append, base_args, make_events

PASSWORD = "pa55-w0rd-nobody-may-see"
TOKEN = "eyJ-token-nobody-may-see"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A private CA and a certificate it signed for 127.0.0.1: (ca.pem, server.crt, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    d = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kaudit test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "loki")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    return d / "ca.pem", d / "server.crt", d / "server.key"


@pytest.fixture
def gateway(pki):
    """Loki 3 behind a gateway: https (private CA), basic auth kaudit/PASSWORD or bearer TOKEN, tenants required."""
    d = LokiDouble("3.5.0", reject_old_samples_max_age_ns=0, tls=(str(pki[1]), str(pki[2])), auth_enabled=True,
                   basic_auth=("kaudit", PASSWORD), bearer_token=TOKEN).start()
    yield d
    d.stop()


@pytest.fixture
def secrets(tmp_path):
    (tmp_path / "password").write_text(PASSWORD + "\n")
    (tmp_path / "token").write_text(TOKEN + "\n")
    return tmp_path / "password", tmp_path / "token"


# --------------------------------------------------------------------------- the shipper


def test_shipper_pushes_with_cluster_label_basic_auth_tenant_and_private_ca(tmp_path, gateway, pki, secrets):
    log = tmp_path / "audit.log"
    append(log, make_events(20))
    args = base_args(log, gateway, tmp_path / "p.json", "--once", "--cluster", "prod-eu", "--tenant", "team-a",
                     "--basic-auth-user", "kaudit", "--basic-auth-password-file", secrets[0], "--ca-file", pki[0])
    code, err = ShipperProc(args).wait()
    assert code == 0, err
    entries = gateway.entries()
    assert len(entries) == 20
    assert {e.stream["cluster"] for e in entries} == {"prod-eu"} and {e.tenant for e in entries} == {"team-a"}
    assert PASSWORD not in " ".join(map(str, args)) + err


def test_shipper_with_a_bearer_token_and_without_credentials(tmp_path, gateway, pki, secrets):
    log = tmp_path / "audit.log"
    append(log, make_events(5))
    ok = base_args(log, gateway, tmp_path / "a.json", "--once", "--cluster", "lab", "--tenant", "t",
                   "--bearer-token-file", secrets[1], "--ca-file", pki[0])
    code, err = ShipperProc(ok).wait()
    assert code == 0, err and len(gateway.entries()) == 5
    refused = base_args(log, gateway, tmp_path / "b.json", "--once", "--tenant", "t", "--ca-file", pki[0], "--max-retries", "1")
    code, err = ShipperProc(refused).wait()
    assert code == 1 and "401" in err
    assert gateway.received == 5


def test_bad_cluster_names_are_refused_everywhere(cli, tmp_path):
    from kaudit.shipper import fields as F

    for bad in ("", "has space", "-lead", "x" * 64, 'q"uote', "ünï"):
        with pytest.raises(ValueError):
            F.check_cluster_name(bad)
    for good in ("lab", "prod-eu.1", "K8s_A", "x" * 63):
        F.check_cluster_name(good)
    log = tmp_path / "audit.log"
    log.write_text("")
    code, err = ShipperProc(["--path", log, "--loki-url", "http://127.0.0.1:9", "--cluster", "has space", "--once"]).wait()
    assert code == 2 and "--cluster" in err
    r = cli(["up", "--cluster-name", "has space", "--dry-run"])
    assert r.code == 2 and "--cluster-name" in r.err
    r = cli(["query", "--cluster", "a{b}", "--logql"])
    assert r.code == 2 and "--cluster" in r.err


# --------------------------------------------------------------------------- query and verify


def _push_audit_events(gateway, cluster: str, tenant: str, n: int = 3) -> None:
    import time

    lines = [e.decode() for e in make_events(n)]
    body = json.dumps({"streams": [{"stream": {"job": "kubernetes-audit", "cluster": cluster, "node": "cp-1",
                                               "audit_level": "Metadata", "verb": "get", "stage": "ResponseComplete"},
                                    "values": [[str(time.time_ns() - 1000 + i), line] for i, line in enumerate(lines)]}]}).encode()
    gateway.push(body, content_type="application/json", encoding="", tenant=tenant)


def test_query_through_the_gateway_with_each_kind_of_credential(cli, gateway, pki, secrets, monkeypatch):
    _push_audit_events(gateway, "prod-eu", "team-a")
    _push_audit_events(gateway, "lab", "team-a", n=2)
    base = ["query", "--loki-url", gateway.url, "--loki-tenant", "team-a", "--loki-ca-file", pki[0], "-o", "json"]
    r = cli([*base, "--loki-username", "kaudit", "--loki-password-file", secrets[0], "--cluster", "prod-eu"])
    assert r.code == 0, r.err
    assert json.loads(r.out)["count"] == 3 and 'cluster="prod-eu"' in json.loads(r.out)["query"]
    monkeypatch.setenv("KAUDIT_LOKI_TOKEN", TOKEN)
    r = cli([*base, "--cluster", "lab"])
    assert r.code == 0, r.err and json.loads(r.out)["count"] == 2
    monkeypatch.delenv("KAUDIT_LOKI_TOKEN")
    monkeypatch.setenv("KAUDIT_LOKI_PASSWORD", PASSWORD)
    assert cli([*base, "--loki-username", "kaudit"]).code == 0
    # every request carried the credentials; none of them was ever an argument
    assert all(req.headers.get("Authorization") for req in gateway.requests("/loki/api/v1/query_range"))


def test_query_errors_name_what_is_wrong(cli, gateway, pki, secrets, tmp_path):
    base = ["query", "--loki-url", gateway.url, "--loki-tenant", "team-a"]
    r = cli([*base, "--loki-username", "kaudit", "--loki-password-file", secrets[0]])
    assert r.code == 1 and "TLS failed" in r.err and "--loki-ca-file" in r.err
    wrong = tmp_path / "wrong"
    wrong.write_text("nope")
    r = cli([*base, "--loki-ca-file", pki[0], "--loki-username", "kaudit", "--loki-password-file", wrong])
    assert r.code == 1 and "answered 401" in r.err and "--loki-password-file" in r.err
    assert "nope" not in r.err
    r = cli([*base, "--loki-username", "kaudit"])
    assert r.code == 2 and "no password" in r.err
    r = cli([*base, "--loki-password-file", tmp_path / "missing"])
    assert r.code == 2 and "missing: no such file" in r.err
    r = cli([*base, "--loki-ca-file", secrets[0]])
    assert r.code == 2 and "not a PEM certificate" in r.err


def test_verify_against_the_gateway_checks_the_cluster_label(cli, tmp_path, monkeypatch, gateway, pki, secrets):
    from doubles.verify.cluster import Cluster as VerifyCluster, NodeTree, double_path

    tree = NodeTree(tmp_path / "node").healthy()
    monkeypatch.setenv("PATH", double_path())
    cluster = VerifyCluster(tmp_path / "cluster.json").healthy(loki_url=gateway.url, audit_log=tree.p(tree.spec.log_path))
    # the collector pushes as a real one would: tenant, credentials, the private CA, the cluster label
    cluster.state["audit"]["headers"] = {"X-Scope-OrgID": "team-a", "Authorization": f"Bearer {TOKEN}"}
    cluster.state["audit"]["cafile"] = str(pki[0])
    cluster.save()
    monkeypatch.setenv("KAUDIT_VERIFY_CLUSTER", str(cluster.path))
    monkeypatch.delenv("KAUDIT_LOKI_URL", raising=False)
    argv = ["verify", "--host", "local", "--rootfs", tree.root, "--loki-url", gateway.url, "--loki-tenant", "team-a",
            "--loki-username", "kaudit", "--loki-password-file", secrets[0], "--loki-ca-file", pki[0],
            "--timeout", "10s", "-o", "json"]
    r = cli([*argv, "--cluster", "lab"])
    doc = json.loads(r.out)
    checks = {c["name"]: c for c in doc["checks"]}
    assert r.code == 0, [(c["name"], c["detail"]) for c in doc["checks"] if c["status"] != "pass"]
    assert checks["probe"]["data"]["cluster"] == "lab" and checks["loki"]["status"] == "pass"
    assert PASSWORD not in r.out + r.err

    r = cli([*argv, "--cluster", "prod-eu"])
    checks = {c["name"]: c for c in json.loads(r.out)["checks"]}
    assert r.code == 4
    assert checks["probe"]["status"] == "fail" and "cluster='lab', not 'prod-eu'" in checks["probe"]["detail"]
    assert checks["labels"]["status"] == "fail"  # no stream of prod-eu at all

    i = argv.index("--loki-username")
    r = cli(argv[:i] + argv[i + 4:])  # no credentials: the loki check says why
    checks = {c["name"]: c for c in json.loads(r.out)["checks"]}
    assert r.code == 4 and "answered 401" in checks["loki"]["detail"]


# --------------------------------------------------------------------------- kaudit up --loki-url


@pytest.mark.parametrize("collector", ["promtail", "alloy", "shipper"])
def test_up_with_an_existing_loki_installs_no_stack_and_keeps_secrets_in_the_secret(cli, tmp_path, monkeypatch, pki, secrets, collector):
    cluster = Cluster.make(tmp_path / "cluster")
    for k, v in cluster.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("KAUDIT_LOKI_TOKEN", TOKEN)
    (tmp_path / "node").mkdir()
    argv = ["up", "--host", "local", "--rootfs", tmp_path / "node", "--only", "stack,collector", "--kubeconfig", cluster.root / "kubeconfig",
            "--collector", collector, "--cluster-name", "prod-eu", "--loki-url", "https://loki.example.net", "--loki-tenant", "team-a",
            "--loki-ca-file", pki[0]]
    r = cli(argv)
    assert r.code == 0, r.err
    assert "no stack installed" in r.err
    upgrades = cluster.upgrades()
    assert [u["argv"][3] for u in upgrades] == ([] if collector == "shipper" else [collector])  # no loki, no grafana
    everything = json.dumps(cluster.helm_calls()) + json.dumps([c["argv"] for c in cluster.kubectl_calls()])
    assert TOKEN not in everything  # not in any argv, nor in the chart values helm read from stdin
    objects = [i for c in cluster.kubectl_calls() if c["stdin"] for i in json.loads(c["stdin"])["items"]]
    [secret] = [o for o in objects if o["kind"] == "Secret"]
    assert secret["metadata"]["name"] == "kaudit-loki-auth" and set(secret["data"]) == {"token", "ca.crt"}
    assert TOKEN not in json.dumps([o for o in objects if o["kind"] != "Secret"])
    if collector == "promtail":
        values = json.loads(upgrades[0]["stdin"])
        [client] = values["config"]["clients"]
        assert client == {"url": "https://loki.example.net/loki/api/v1/push", "tenant_id": "team-a",
                          "bearer_token_file": "/etc/kaudit/loki-auth/token", "tls_config": {"ca_file": "/etc/kaudit/loki-auth/ca.crt"}}
        assert {"name": "kaudit-loki-auth", "secret": {"secretName": "kaudit-loki-auth"}} in values["extraVolumes"]
        assert {"name": "kaudit-loki-auth", "mountPath": "/etc/kaudit/loki-auth", "readOnly": True} in values["extraVolumeMounts"]
        assert "cluster: prod-eu" in values["config"]["snippets"]["extraScrapeConfigs"]
    elif collector == "alloy":
        values = json.loads(upgrades[0]["stdin"])
        config = values["alloy"]["configMap"]["content"]
        assert 'bearer_token_file = "/etc/kaudit/loki-auth/token"' in config and 'ca_file = "/etc/kaudit/loki-auth/ca.crt"' in config
        assert '"cluster" = "prod-eu"' in config
        assert {"name": "kaudit-loki-auth", "secret": {"secretName": "kaudit-loki-auth"}} in values["controller"]["volumes"]["extra"]
        assert {"name": "kaudit-loki-auth", "mountPath": "/etc/kaudit/loki-auth", "readOnly": True} in values["alloy"]["mounts"]["extra"]
    else:
        [ds] = [o for o in objects if o["kind"] == "DaemonSet"]
        pod = ds["spec"]["template"]["spec"]
        args = pod["containers"][0]["args"]
        assert args[args.index("--bearer-token-file") + 1] == "/etc/kaudit/loki-auth/token"
        assert args[args.index("--cluster") + 1] == "prod-eu"
        assert {"name": "loki-auth", "secret": {"secretName": "kaudit-loki-auth"}} in pod["volumes"]
    # a second run changes nothing (the Secret is applied with the same data)
    again = cli(argv)
    assert again.code == 0 and "nothing changed" in again.err, again.err


def test_credentials_without_loki_url_and_both_kinds_are_usage_errors(cli, tmp_path, secrets, monkeypatch):
    r = cli(["up", "--dry-run", "--loki-username", "kaudit", "--loki-password-file", secrets[0]])
    assert r.code == 2 and "without --loki-url" in r.err
    monkeypatch.setenv("KAUDIT_LOKI_TOKEN", TOKEN)
    r = cli(["up", "--dry-run", "--loki-url", "https://l", "--loki-username", "kaudit", "--loki-password-file", secrets[0]])
    assert r.code == 2 and "exclude each other" in r.err
    assert TOKEN not in r.err and PASSWORD not in r.err


def test_verify_inventory_checks_each_clusters_label(cli, tmp_path, monkeypatch, loki_factory):
    """Two clusters in one file share a Loki; the collector of both labels its events cluster=lab,
    so the cluster named `other` fails its probe and the run exits 4 naming it."""
    from doubles.verify.cluster import Cluster as VerifyCluster, NodeTree, double_path

    loki = loki_factory()
    trees = [NodeTree(tmp_path / name).healthy() for name in ("lab", "other")]
    monkeypatch.setenv("PATH", double_path())
    cluster = VerifyCluster(tmp_path / "cluster.json").healthy(loki_url=loki.url)
    monkeypatch.setenv("KAUDIT_VERIFY_CLUSTER", str(cluster.path))
    monkeypatch.delenv("KAUDIT_LOKI_URL", raising=False)
    inv = tmp_path / "clusters.yaml"
    inv.write_text(
        f"loki:\n  url: {loki.url}\nclusters:\n"
        f"  - {{name: lab, hosts: [local], rootfs: {trees[0].root}}}\n"
        f"  - {{name: other, hosts: [local], rootfs: {trees[1].root}}}\n"
    )
    r = cli(["verify", "-f", inv, "--timeout", "5s", "-o", "json"])
    assert r.code == 4, r.err
    doc = json.loads(r.out)
    assert [(c["name"], c["ok"]) for c in doc["clusters"]] == [("lab", True), ("other", False)]
    probe = {c["name"]: c for c in doc["clusters"][1]["report"]["checks"]}["probe"]
    assert "cluster='lab', not 'other'" in probe["detail"]
    assert "1 of 2 cluster(s) failed: other" in r.err


def test_a_verbose_dry_run_shows_the_plan_but_no_credential(cli, tmp_path, monkeypatch, secrets):
    cluster = Cluster.make(tmp_path / "cluster")
    for k, v in cluster.env.items():
        monkeypatch.setenv(k, v)
    (tmp_path / "node").mkdir()
    for collector in ("promtail", "shipper"):
        r = cli(["-v", "up", "--host", "local", "--rootfs", tmp_path / "node", "--only", "stack,collector", "--dry-run",
                 "--kubeconfig", cluster.root / "kubeconfig", "--collector", collector, "--cluster-name", "lab",
                 "--loki-url", "https://loki.example.net", "--loki-username", "kaudit", "--loki-password-file", secrets[0]])
        assert r.code == 0, r.err
        assert "secret/kaudit-loki-auth" in r.err and "basic auth as kaudit" in r.err
        assert PASSWORD not in r.err + r.out
    assert cluster.helm_calls() == [] and cluster.kubectl_calls() == []

"""`kaudit up --mode webhook|both` on a kubeadm-shaped tree with the kubectl+kubelet
simulator, helm and crictl doubles: certificates and kubeconfig on the node, the
manifest and kubeadm-config patched, the receiver in the shipper DaemonSet; twice
changes nothing; a switch back to --mode log takes it all out of the manifest."""

from __future__ import annotations

import base64
import ssl

import pytest
from ruamel.yaml import YAML

from upnode import DATA, MANIFEST, kube_node, snapshot  # noqa: F401  (fixture)

KUBECONFIG = "etc/kubernetes/audit-webhook.kubeconfig"
TLS = "etc/kubernetes/kaudit-webhook"


def daemonset(kube_node) -> dict:
    objs = kube_node.state().get("objects", {})
    for key, obj in (objs.items() if isinstance(objs, dict) else enumerate(objs)):
        if isinstance(obj, dict) and obj.get("kind") == "DaemonSet":
            return obj
    raise AssertionError(f"no DaemonSet applied: {list(objs)[:20]}")


@pytest.mark.parametrize("mode", ["webhook", "both"])
def test_up_mode_webhook_twice(kube_node, cli, tmp_path, monkeypatch, mode):
    monkeypatch.setenv("HELM_DOUBLE_DIR", str(tmp_path / "helm"))
    kube_node.set_cluster_configuration((DATA / "up/ClusterConfiguration-v1beta4.yaml").read_text())
    argv = ["up", "--host", "local", "--rootfs", kube_node.root, "--skip-phases", "verify",
            "--wait-timeout", "5s", "--collector", "shipper", "--mode", mode]
    first = cli(argv)
    assert first.code == 0, first.err
    root = kube_node.root
    manifest = (root / MANIFEST).read_text()
    assert "--audit-webhook-config-file=/etc/kubernetes/audit-webhook.kubeconfig" in manifest
    assert ("--audit-log-path" in manifest) == (mode == "both")
    # the kubeconfig trusts the CA the receiver's certificate is signed by, and names the receiver
    kc = YAML(typ="safe").load((root / KUBECONFIG).read_text())
    assert kc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:9443/audit"
    ca = base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"])
    assert ca == (root / TLS / "ca.crt").read_bytes()
    ctx = ssl.create_default_context(cadata=ca.decode())
    ctx.load_cert_chain(str(root / TLS / "tls.crt"), str(root / TLS / "tls.key"))  # key matches the certificate
    assert (root / KUBECONFIG).stat().st_mode & 0o777 == 0o600
    assert (root / TLS / "tls.key").stat().st_mode & 0o777 == 0o600
    assert "audit-webhook-config-file" in kube_node.cluster_configuration()
    ds = daemonset(kube_node)
    spec = ds["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    names = [c["name"] for c in spec["containers"]]
    assert names == (["shipper", "webhook"] if mode == "both" else ["webhook"])
    hook = next(c for c in spec["containers"] if c["name"] == "webhook")
    assert hook["args"][:2] == ["--listen", "127.0.0.1:9443"]
    assert "/etc/kubernetes/kaudit-webhook/ca.crt" in hook["args"]
    tree = snapshot(root)

    second = cli(argv)
    assert second.code == 0, second.err
    assert "nothing changed: everything was already done" in second.err
    for phase in ("webhook", "apiserver", "persist", "collector"):
        assert any(line.split()[:2] == [phase, "unchanged"] for line in second.err.splitlines()), (phase, second.err)
    assert snapshot(root) == tree

    # back to the log backend: kaudit's webhook flags and mount leave the manifest and kubeadm-config
    back = cli(["up", "--host", "local", "--rootfs", root, "--only", "policy,apiserver,persist", "--wait-timeout", "5s"])
    assert back.code == 0, back.err
    manifest = (root / MANIFEST).read_text()
    assert "audit-webhook" not in manifest and "--audit-log-path" in manifest
    assert "audit-webhook" not in kube_node.cluster_configuration()


def test_mode_webhook_needs_the_shipper_collector(cli, tmp_path):
    r = cli(["up", "--host", "local", "--rootfs", tmp_path, "--mode", "webhook", "--collector", "promtail"])
    assert r.code == 2 and "--collector shipper" in r.err


def test_dry_run_plans_the_webhook_and_shows_the_diff(kube_node, cli):
    r = cli(["up", "--host", "local", "--rootfs", kube_node.root, "--only", "policy,webhook,apiserver",
             "--mode", "webhook", "--dry-run", "--collector", "shipper"])
    assert r.code == 0, r.err
    assert "+    - --audit-webhook-config-file=/etc/kubernetes/audit-webhook.kubeconfig" in r.out
    assert "would write a CA" in r.err
    assert not (kube_node.root / KUBECONFIG).exists()

"""The whole `kaudit up` (every phase but verify, which needs a running Loki) on a
kubeadm-shaped tree, twice: the second run changes nothing on the node, in the
API or in Helm, and says so. Helm is the stack's helm double (tests/doubles/helm)."""

from __future__ import annotations

import json

import pytest

from upnode import DATA, MANIFEST, kube_node, snapshot  # noqa: F401  (fixture)


def helm_argv(tmp_path):
    log = tmp_path / "helm" / "argv.log"
    return [json.loads(line)["argv"] for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.parametrize("collector", ["promtail", "shipper"])
def test_full_up_twice_second_run_changes_nothing(kube_node, cli, tmp_path, monkeypatch, collector):
    monkeypatch.setenv("HELM_DOUBLE_DIR", str(tmp_path / "helm"))
    kube_node.set_cluster_configuration((DATA / "up/ClusterConfiguration-v1beta4.yaml").read_text())
    argv = ["up", "--host", "local", "--rootfs", kube_node.root, "--skip-phases", "verify",
            "--wait-timeout", "5s", "--collector", collector]

    first = cli(argv)
    assert first.code == 0, first.err
    assert b"--audit-log-path" in (kube_node.root / MANIFEST).read_bytes()
    assert any(a[1] == "upgrade" for a in helm_argv(tmp_path))
    tree = snapshot(kube_node.root)
    cluster = {k: v for k, v in kube_node.state().items() if k in ("configmaps", "objects")}
    helm_calls = len(helm_argv(tmp_path))
    kube_calls = len(kube_node.calls())

    second = cli(argv)

    assert second.code == 0, second.err
    assert "nothing changed: everything was already done" in second.err
    # how to reach Grafana comes last, after the summary, where the user looks
    tail = second.err[second.err.index("nothing changed"):]
    assert "port-forward svc/loki-grafana 3000:80" in tail and "admin-password" in tail
    assert "Loki keeps its data in an emptyDir: it lives as long as the Loki pod" in tail
    for phase in ("preflight", "policy", "apiserver", "persist", "stack", "collector"):
        assert any(line.split()[:2] == [phase, "unchanged"] for line in second.err.splitlines()), (phase, second.err)
    assert snapshot(kube_node.root) == tree
    assert {k: v for k, v in kube_node.state().items() if k in ("configmaps", "objects")} == cluster
    assert not any(a[1] in ("upgrade", "install", "uninstall") for a in helm_argv(tmp_path)[helm_calls:])
    assert not any(c[0] == "replace" for c in kube_node.calls()[kube_calls:])

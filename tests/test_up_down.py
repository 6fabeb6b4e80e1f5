"""`kaudit down`: the audit patch comes out the same safe way it went in."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from upnode import AUDIT_LOG, DATA, DOUBLES, MANIFEST, POLICY, kube_node, snapshot  # noqa: F401  (fixture)

V4 = (DATA / "up/ClusterConfiguration-v1beta4.yaml").read_text()


def up(cli, node):
    return cli(["up", "--host", "local", "--rootfs", node.root, "--only", "policy,apiserver,persist", "--wait-timeout", "5s"])


def down(cli, node, *extra):
    return cli(["down", "--host", "local", "--rootfs", node.root, "--wait-timeout", "5s", *extra])


def test_down_round_trip_restores_the_fresh_manifest_bytes(kube_node, cli):
    kube_node.set_cluster_configuration(V4)
    fresh = (kube_node.root / MANIFEST).read_bytes()
    assert up(cli, kube_node).code == 0
    assert (kube_node.root / MANIFEST).read_bytes() != fresh
    kube_node.script(["api-error", "new-not-ready"], after="ready")

    r = down(cli, kube_node, "--remove-policy")

    assert r.code == 0, r.err
    assert (kube_node.root / MANIFEST).read_bytes() == fresh
    assert not (kube_node.root / POLICY).exists()
    assert kube_node.cluster_configuration() == V4
    assert (kube_node.root / AUDIT_LOG).is_file()  # logs already written are kept
    # the apiserver restarted onto the fresh manifest: its hash is the one it booted with
    state = kube_node.node_state()
    assert state["running"] == state["boot"] and state["script"] == []
    # both runs left a backup, outside the manifests dir
    assert len(list((kube_node.root / "etc/kubernetes/tmp").iterdir())) == 2

    again = snapshot(kube_node.root)
    r2 = down(cli, kube_node, "--remove-policy")
    assert r2.code == 0
    assert snapshot(kube_node.root) == again
    assert "nothing changed" in r2.err


def test_down_keeps_the_policy_without_remove_policy(kube_node, cli):
    assert up(cli, kube_node).code == 0
    r = down(cli, kube_node)
    assert r.code == 0, r.err
    assert (kube_node.root / POLICY).is_file()
    assert "--remove-policy deletes it" in r.err


def test_down_that_breaks_the_apiserver_is_rolled_back(kube_node, cli):
    assert up(cli, kube_node).code == 0
    patched = (kube_node.root / MANIFEST).read_bytes()
    kube_node.script([], after="crashloop")

    r = down(cli, kube_node, "--remove-policy")

    assert r.code == 1
    assert (kube_node.root / MANIFEST).read_bytes() == patched
    assert (kube_node.root / POLICY).is_file()  # the run stopped before deleting what the apiserver uses
    assert "rolled back" in r.err


def test_purge_charts_without_helm_says_so(kube_node, cli, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    r = down(cli, kube_node, "--purge-charts", "--no-wait")
    assert r.code == 0, r.err
    assert "helm is not installed here" in r.err


def test_purge_charts_deletes_applied_objects_and_plans_helm_uninstall(kube_node, cli, monkeypatch, tmp_path):
    # the whole stack as `up` installs it: helm releases (helm double) and kubectl-applied objects
    monkeypatch.setenv("HELM_DOUBLE_DIR", str(tmp_path / "helm"))
    r = cli(["up", "--host", "local", "--rootfs", kube_node.root, "--skip-phases", "verify", "--wait-timeout", "5s",
             "--collector", "shipper"])
    assert r.code == 0, r.err
    assert "DaemonSet/kaudit/kaudit-shipper" in kube_node.state()["objects"]

    plan = down(cli, kube_node, "--purge-charts", "--dry-run")
    assert plan.code == 0, plan.err
    assert "would run helm uninstall loki -n kaudit" in plan.err
    assert "would run: kubectl delete configmap/kaudit-dashboards" in plan.err
    assert "DaemonSet/kaudit/kaudit-shipper" in kube_node.state()["objects"]

    # without helm on PATH the applied objects still go, and the releases are named
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("kubectl", "crictl", "journalctl"):
        (bin_dir / tool).symlink_to(DOUBLES / tool)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    assert not shutil.which("helm")
    r = down(cli, kube_node, "--purge-charts")
    assert r.code == 0, r.err
    objects = kube_node.state()["objects"]
    assert not [k for k in objects if k.endswith(("/kaudit-shipper", "/kaudit-dashboards", "/kaudit-shipper-code"))]
    assert "deleted configmap/kaudit-dashboards" in r.err and "daemonset.apps/kaudit-shipper" in r.err
    assert "helm is not installed here; nothing uninstalled (releases: loki" in r.err
    assert b"--audit-log-path" not in (kube_node.root / MANIFEST).read_bytes()


def test_purge_charts_uninstalls_the_releases_helm_lists(kube_node, cli, monkeypatch, tmp_path):
    monkeypatch.setenv("HELM_DOUBLE_DIR", str(tmp_path / "helm"))
    r = cli(["up", "--host", "local", "--rootfs", kube_node.root, "--skip-phases", "verify", "--wait-timeout", "5s"])
    assert r.code == 0, r.err
    state = json.loads((tmp_path / "helm/state.json").read_text())
    installed = sorted(state["releases"])
    assert installed, "up installed no release"

    r = down(cli, kube_node, "--purge-charts")

    assert r.code == 0, r.err
    state = json.loads((tmp_path / "helm/state.json").read_text())
    assert state["releases"] == {}
    calls = [json.loads(line)["argv"] for line in (tmp_path / "helm/argv.log").read_text().splitlines()]
    uninstalled = sorted(f"{c[c.index('-n') + 1]}/{c[c.index('uninstall') + 1]}" for c in calls if "uninstall" in c)
    assert uninstalled == installed
    # a second purge finds nothing left to uninstall and says so without failing
    r = down(cli, kube_node, "--purge-charts", "--no-wait")
    assert r.code == 0, r.err


def test_down_dry_run_writes_nothing(kube_node, cli):
    kube_node.set_cluster_configuration(V4)
    assert up(cli, kube_node).code == 0
    tree = snapshot(kube_node.root)
    cm = kube_node.cluster_configuration()

    r = down(cli, kube_node, "--dry-run", "--remove-policy")

    assert r.code == 0, r.err
    assert snapshot(kube_node.root) == tree
    assert kube_node.cluster_configuration() == cm
    assert "-    - --audit-log-path=/var/log/kubernetes-audit/audit.log\n" in r.out
    assert "would update ClusterConfiguration in kube-system/kubeadm-config" in r.err
    assert "would delete /etc/kubernetes/audit-policy.yaml (after the apiserver stops using it)" in r.err

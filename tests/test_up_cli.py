"""`kaudit up` / `kaudit down` command-line surface: help, usage errors, the dry-run seam."""

from __future__ import annotations

import pytest

from kaudit.adapters.hosts.dryrun import recording
from kaudit.core.errors import KauditError
from kaudit.adapters.hosts.local import LocalHost
from kaudit.engine.workflow import PHASE_NAMES
from upnode import MANIFEST, kube_node, snapshot  # noqa: F401  (fixture)


def test_help_lists_every_phase_and_the_options(cli):
    r = cli(["up", "--help"])
    assert r.code == 0
    for name in PHASE_NAMES:
        assert name in r.out
    for opt in ("--only", "--skip-phases", "--dry-run", "--policy-profile", "--policy-file", "--wait-timeout",
                "--no-wait", "--no-rollback", "--no-persist", "--stack", "--collector", "--lima-template", "--cpus",
                "--audit-log-path", "--host", "--rootfs"):
        assert opt in r.out, opt
    assert "Examples:" in r.out and "  kaudit up" in r.out
    assert "  kaudit down --host" in cli(["down", "--help"]).out


@pytest.mark.parametrize("argv,needle", [
    (["--only", "policy,nope"], "--only: unknown phase nope"),
    (["--skip-phases", ",".join(PHASE_NAMES)], "no phase left to run"),
    (["--wait-timeout", "soon"], "--wait-timeout: 'soon' is not a duration"),
    (["--policy-profile", "strict"], "'strict' is not one of: gce, gce-modern"),
    (["--collector", "fluentd"], "'fluentd' is not one of"),
    (["--policy-file", "/nonexistent/policy.yaml"], "--policy-file /nonexistent/policy.yaml: no such file"),
    (["--host", "lima:k8s", "--rootfs", "/tmp"], "--rootfs works only with --host local"),
    (["--loki-size", "10GB"], "--loki-size: '10GB' is not a size such as 10Gi or 500Mi"),
    (["--loki-storage-class", "Local Path"], "--loki-storage-class: 'Local Path' is not a StorageClass name"),
])
def test_usage_errors_exit_2_with_one_line(cli, argv, needle):
    r = cli(["up", *argv])
    assert r.code == 2, r.err
    assert needle in r.err
    assert "Traceback" not in r.err


def test_skip_phases_skips(kube_node, cli):
    r = cli(["up", "--host", "local", "--rootfs", kube_node.root, "--only", "policy,apiserver", "--skip-phases", "apiserver", "--no-wait"])
    assert r.code == 0, r.err
    assert (kube_node.root / "etc/kubernetes/audit-policy.yaml").exists()
    assert b"--audit-log-path" not in (kube_node.root / MANIFEST).read_bytes()
    assert "[apiserver]" not in r.err


def test_recording_host_reads_but_never_writes(kube_node):
    node = recording(LocalHost(kube_node.root))
    before = snapshot(kube_node.root)
    assert isinstance(node, LocalHost)  # phases that check the host type still see it
    assert node.read_file("/etc/kubernetes/manifests/kube-apiserver.yaml").startswith(b"apiVersion: v1")
    node.write_file("/etc/kubernetes/manifests/kube-apiserver.yaml", b"x")
    node.makedirs("/etc/kubernetes/tmp/x")
    node.remove("/etc/kubernetes/admin.conf")
    with pytest.raises(KauditError) as e:
        node.run(["rm", "-rf", "/etc"])
    assert "dry run: refusing to run rm -rf /etc" in e.value.message
    assert node.run(["kubectl", "--kubeconfig", "x", "get", "pods"], check=False) is not None
    assert snapshot(kube_node.root) == before
    assert [r[0] for r in node.recorded] == ["write", "mkdir", "remove"]


def test_lima_dry_run_plans_the_vm_and_defers_node_checks(fake_lima, cli):
    # no VM yet: preflight cannot look at the node, and the vm phase (seeing a Lima host
    # through the dry-run wrapper) plans limactl start without running it
    r = cli(["up", "--host", "lima:k8s", "--dry-run", "--only", "preflight,vm", "--cpus", "4"])
    assert r.code == 0, r.err
    assert "node checks follow the vm phase" in r.err
    assert "would run: limactl start --name=k8s --tty=false --cpus=4 template:k8s" in r.err
    assert not any(c[:1] == ["start"] for c in fake_lima.calls)
    assert fake_lima.status("k8s") is None


def test_lima_vm_options_reach_the_vm_phase(fake_lima, cli):
    r = cli(["up", "--host", "lima:k8s", "--only", "vm", "--memory", "8GiB", "--lima-template", "k8s"])
    assert r.code == 0, r.err
    start = next(c for c in fake_lima.calls if c[:1] == ["start"])
    assert "--memory=8" in start and start[-1] == "template:k8s", start


def test_a_bad_second_host_stops_the_run_before_any_node_is_touched(kube_node, cli):
    before = snapshot(kube_node.root)
    r = cli(["up", "--host", "local", "--host", "ssh://", "--rootfs", kube_node.root, "--only", "policy", "--no-wait"])
    assert r.code == 2
    assert "--rootfs works only with --host local" in r.err
    assert snapshot(kube_node.root) == before

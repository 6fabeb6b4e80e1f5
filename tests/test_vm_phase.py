"""The `vm` phase of `kaudit up`, driven through the phase registry against the limactl double."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from kaudit.core.errors import PhaseError
from kaudit.adapters.hosts.lima import LimaHost
from kaudit.adapters.hosts.local import LocalHost
from kaudit.engine.ui import UI
from kaudit.engine.workflow import PHASES, Status, UpContext, run_phase

VM = next(p for p in PHASES if p.name == "vm")


def context(node=None, *, dry_run=False, **options):
    stream = io.StringIO()
    ctx = UpContext(
        node=node or LimaHost("k8s"), local=LocalHost(), ui=UI(stream=stream),
        options=SimpleNamespace(**options), dry_run=dry_run,
    )
    return ctx, stream


def starts(fake_lima):
    return [c for c in fake_lima.calls if c[:1] == ["start"]]


def test_creates_the_vm_from_the_k8s_template(fake_lima):
    ctx, out = context()
    outcome = run_phase(VM, ctx)
    assert outcome.status == Status.CHANGED and outcome.message == "VM k8s created (4 CPUs, 4 GiB memory, 100 GiB disk)"
    assert starts(fake_lima) == [["start", "--name=k8s", "--tty=false", "template:k8s"]]
    kubeconfig = fake_lima.home / "k8s/copied-from-guest/kubeconfig.yaml"
    assert ctx.kubeconfig == kubeconfig and kubeconfig.is_file()
    text = out.getvalue()
    assert "... Creating Lima VM k8s (limactl start, up to 10m)" in text
    assert "✓ Creating Lima VM k8s" in text
    assert f'export KUBECONFIG="{kubeconfig}"' in text


def test_second_run_reuses_the_running_vm(fake_lima):
    run_phase(VM, context()[0])
    ctx, _ = context()
    outcome = run_phase(VM, ctx)
    assert outcome.status == Status.UNCHANGED
    assert outcome.message == "VM k8s is running (4 CPUs, 4 GiB memory, 100 GiB disk)"
    assert len(starts(fake_lima)) == 1
    assert ctx.kubeconfig is not None


def test_starts_a_stopped_vm(fake_lima):
    fake_lima.add("k8s", status="Stopped")
    ctx, _ = context()
    outcome = run_phase(VM, ctx)
    assert outcome.status == Status.CHANGED and "started" in outcome.message
    assert starts(fake_lima) == [["start", "--tty=false", "k8s"]]
    assert fake_lima.status("k8s") == "Running"
    assert ctx.kubeconfig.is_file()  # copied out again on start (deleteOnStop)


def test_lima_1_gets_the_old_locator(fake_lima):
    fake_lima.update(version="1.2.3")
    outcome = run_phase(VM, context()[0])
    assert outcome.status == Status.CHANGED
    assert starts(fake_lima)[0][-1] == "template://k8s"


def test_overrides_reach_limactl_start(fake_lima):
    ctx, _ = context(lima_template="k8s", lima_cpus=2, lima_memory="8GiB", lima_disk=40)
    run_phase(VM, ctx)
    assert starts(fake_lima) == [["start", "--name=k8s", "--tty=false", "--cpus=2", "--memory=8", "--disk=40", "template:k8s"]]


def test_overrides_for_an_existing_vm_are_ignored_with_a_warning(fake_lima):
    fake_lima.add("k8s")
    ctx, out = context(lima_cpus=8)
    assert run_phase(VM, ctx).status == Status.UNCHANGED
    assert "warning: VM k8s exists" in out.getvalue()


def test_dry_run_plans_and_starts_nothing(fake_lima):
    ctx, _ = context(dry_run=True)
    outcome = run_phase(VM, ctx)
    assert outcome.status == Status.PLANNED
    assert outcome.message == "VM k8s does not exist; would run: limactl start --name=k8s --tty=false template:k8s"
    assert starts(fake_lima) == [] and fake_lima.status("k8s") is None
    fake_lima.add("k8s", status="Stopped")
    outcome = run_phase(VM, context(dry_run=True)[0])
    assert outcome.status == Status.PLANNED and "would run: limactl start --tty=false k8s" in outcome.message
    assert fake_lima.status("k8s") == "Stopped"


def test_failure_shows_limactls_text_with_the_phase(fake_lima):
    fake_lima.update(fail_start='did not receive an event with the "running" status')
    ctx, out = context()
    with pytest.raises(PhaseError) as e:
        run_phase(VM, ctx)
    assert str(e.value) == '[vm] creating Lima VM k8s failed (limactl start exit 1): did not receive an event with the "running" status'
    assert "✗ Creating Lima VM k8s" in out.getvalue()


def test_missing_kubeconfig_is_a_warning(fake_lima):
    fake_lima.update(no_kubeconfig=True)
    ctx, out = context()
    assert run_phase(VM, ctx).status == Status.CHANGED
    assert ctx.kubeconfig is None
    assert "warning: no kubeconfig at" in out.getvalue()


def test_other_hosts_skip_the_phase(fake_lima, tmp_path):
    outcome = run_phase(VM, context(LocalHost(tmp_path))[0])
    assert outcome.status == Status.SKIPPED and outcome.message == "not a Lima host"
    assert fake_lima.calls == []


def test_a_kubeconfig_the_user_chose_wins(fake_lima, tmp_path):
    fake_lima.add("k8s")
    ctx, _ = context()
    mine = tmp_path / "my-kubeconfig"
    ctx.kubeconfig = mine
    run_phase(VM, ctx)
    assert ctx.kubeconfig == mine
    assert ctx.facts["lima_kubeconfig"] == str(fake_lima.home / "k8s/copied-from-guest/kubeconfig.yaml")

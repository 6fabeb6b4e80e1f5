"""`kaudit destroy` and `kaudit vm status` through the CLI error boundary, with the limactl double."""

from __future__ import annotations

import io
import json

import pytest


class TtyInput(io.StringIO):
    def isatty(self):
        return True


def test_destroy_without_yes_and_without_a_tty_refuses(cli, fake_lima):
    fake_lima.add("k8s")
    r = cli(["destroy", "--host", "lima:k8s"])
    assert r.code == 2
    assert "error: refusing to delete Lima VM k8s without confirmation" in r.err
    assert "hint: pass --yes: kaudit destroy --host lima:k8s --yes" in r.err
    assert fake_lima.status("k8s") == "Running"


def test_destroy_with_yes_deletes(cli, fake_lima):
    d = fake_lima.add("k8s")
    r = cli(["destroy", "--yes"])  # default host lima:k8s
    assert r.code == 0, r.err
    assert fake_lima.status("k8s") is None and not d.exists()
    assert ["delete", "--force", "--tty=false", "k8s"] in fake_lima.calls
    assert "✓ Deleting Lima VM k8s" in r.err and r.out == ""


@pytest.mark.parametrize("answer,kept", [("y\n", False), ("n\n", True), ("\n", True)])
def test_destroy_asks_on_a_terminal(cli, fake_lima, monkeypatch, answer, kept):
    fake_lima.add("k8s")
    monkeypatch.setattr("sys.stdin", TtyInput(answer))
    r = cli(["destroy", "--host", "lima:k8s"])
    assert r.code == 0, r.err
    assert "Delete Lima VM k8s" in r.err
    assert (fake_lima.status("k8s") == "Running") is kept


def test_destroy_absent_vm_is_a_no_op(cli, fake_lima):
    r = cli(["destroy", "--host", "lima:gone", "--yes"])
    assert r.code == 0 and "Lima VM gone does not exist; nothing to delete" in r.err
    assert not [c for c in fake_lima.calls if c[0] == "delete"]


def test_destroy_refuses_non_lima_hosts(cli, fake_lima):
    r = cli(["destroy", "--host", "ssh://root@10.0.0.5", "--yes"])
    assert r.code == 2 and "only Lima VMs" in r.err


def test_destroy_shows_limactl_failure(cli, fake_lima, monkeypatch):
    import os

    fake_lima.add("k8s")
    fake_lima.update(refuse_root=True, root_uid=os.geteuid())
    r = cli(["destroy", "--yes"])
    assert r.code == 1 and "must not run as the root user" in r.err
    assert "Traceback" not in r.err


def test_vm_status(cli, fake_lima):
    r = cli(["vm", "status", "-o", "json"])
    assert r.code == 1 and json.loads(r.out)["status"] == "Absent"
    d = fake_lima.add("k8s", cpus=2)
    r = cli(["vm", "status", "-o", "json"])
    assert r.code == 0
    got = json.loads(r.out)
    assert got["status"] == "Running" and got["cpus"] == 2 and got["limaVersion"] == "2.2.0"
    assert got["kubeconfig"] == str(d / "copied-from-guest/kubeconfig.yaml")
    r = cli(["vm", "status"])
    assert r.code == 0 and "lima:k8s: Running, 2 CPUs" in r.out and "export KUBECONFIG=" in r.out


def test_kaudit_up_only_vm_creates_then_reports_no_change(cli, fake_lima):
    r = cli(["up", "--only", "vm", "--dry-run"])
    assert r.code == 0, r.err
    assert "would run: limactl start --name=k8s --tty=false template:k8s" in r.err
    assert fake_lima.status("k8s") is None

    r = cli(["up", "--only", "vm", "--lima-cpus", "2", "--lima-memory", "6"])
    assert r.code == 0, r.err
    assert "VM k8s created (2 CPUs, 6 GiB memory, 100 GiB disk)" in r.err
    kubeconfig = fake_lima.home / "k8s/copied-from-guest/kubeconfig.yaml"
    assert f'export KUBECONFIG="{kubeconfig}"' in r.err

    r = cli(["up", "--only", "vm"])
    assert r.code == 0, r.err
    assert "VM k8s is running (2 CPUs, 6 GiB memory, 100 GiB disk)" in r.err
    assert len([c for c in fake_lima.calls if c[0] == "start"]) == 1


def test_kaudit_up_shows_limactls_failure(cli, fake_lima):
    fake_lima.update(fail_start='did not receive an event with the "running" status')
    r = cli(["up", "--only", "vm"])
    assert r.code == 1
    assert 'error: [vm] creating Lima VM k8s failed (limactl start exit 1): did not receive an event with the "running" status' in r.err
    assert "hint: see " in r.err and "Traceback" not in r.err

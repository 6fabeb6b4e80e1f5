"""Several control-plane nodes: configured one at a time, and the run stops at the
first node that fails, after that node was rolled back."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from kaudit.engine.run import run_phases
from kaudit.core.errors import KauditError
from kaudit.adapters.hosts.local import LocalHost
from kaudit.engine.ui import UI
from kaudit.engine.settings import UpOptions
from kaudit.engine.workflow import select_phases
from upnode import MANIFEST, kube_node  # noqa: F401  (fixture)


@dataclass(frozen=True)
class Nodes:
    """HostOptions' interface, with each --host mapped to its own rootfs."""

    roots: dict

    @property
    def hosts(self):
        return tuple(self.roots)

    def open(self, spec):
        return LocalHost(self.roots[spec])


def options():
    from kaudit.core.manifest import AuditSpec

    return UpOptions(spec=AuditSpec(), wait_timeout=1.0, poll_interval=0.01, phases=("policy", "apiserver"))


def test_nodes_one_at_a_time_and_stop_at_the_first_failure(kube_node, capsys):
    kube_node.add("cp2", endpoint="192.168.5.16")
    kube_node.add("cp3", endpoint="192.168.5.17")
    roots = {name: root for name, root in kube_node.roots.items()}
    fresh = {name: (root / MANIFEST).read_bytes() for name, root in roots.items()}
    kube_node.script([], after="never-ready", node="cp2")

    with pytest.raises(KauditError) as e:
        run_phases(UI(), Nodes(roots), select_phases("policy,apiserver", None), options(), dry_run=False, verb="up")

    assert "did not come up" in e.value.message and "rolled back" in e.value.message
    assert (roots["cp1"] / MANIFEST).read_bytes() != fresh["cp1"]  # configured
    assert (roots["cp2"] / MANIFEST).read_bytes() == fresh["cp2"]  # rolled back
    assert (roots["cp3"] / MANIFEST).read_bytes() == fresh["cp3"]  # never touched
    assert not (roots["cp3"] / "etc/kubernetes/audit-policy.yaml").exists()
    err = capsys.readouterr().err
    assert f"not started on: local (rootfs {roots['cp3']})" in err
    # each node's mirror pod was found by its own advertise endpoint
    pods = {c[2] for c in kube_node.calls() if c[0:2] == ["get", "pod"]}
    assert pods == {"kube-apiserver-cp1", "kube-apiserver-cp2"}


def test_all_nodes_configured_then_second_run_unchanged(kube_node, capsys):
    kube_node.add("cp2", endpoint="192.168.5.16")
    roots = dict(kube_node.roots)
    phases = select_phases("policy,apiserver", None)
    assert run_phases(UI(), Nodes(roots), phases, options(), dry_run=False, verb="up") == 0
    for root in roots.values():
        assert b"--audit-log-path" in (root / MANIFEST).read_bytes()
    capsys.readouterr()
    run_phases(UI(), Nodes(roots), phases, options(), dry_run=False, verb="up")
    err = capsys.readouterr().err
    assert "4 unchanged" in err and "changed," not in err

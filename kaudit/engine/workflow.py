"""`kaudit up` as an ordered list of named phases, registered in one place.

The registry (PHASES) drives --only, --skip-phases and the help text. A phase is
a module path plus a function ``run(ctx: UpContext) -> Outcome``; modules are
imported only when their phase runs, so phases filled in by later work plug in
here without touching the runner.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional

from kaudit.core.errors import KauditError, PhaseError, UsageError
from kaudit.adapters.hosts.base import Host
from kaudit.engine.ui import UI


class Status(str, Enum):
    CHANGED = "changed"
    UNCHANGED = "unchanged"  # already done: nothing to change
    SKIPPED = "skipped"  # not applicable, or not selected
    PLANNED = "planned"  # --dry-run: would change


@dataclass
class Outcome:
    status: Status
    message: str

    @classmethod
    def changed(cls, message: str) -> "Outcome":
        return cls(Status.CHANGED, message)

    @classmethod
    def unchanged(cls, message: str) -> "Outcome":
        return cls(Status.UNCHANGED, message)

    @classmethod
    def skipped(cls, message: str) -> "Outcome":
        return cls(Status.SKIPPED, message)

    @classmethod
    def planned(cls, message: str) -> "Outcome":
        return cls(Status.PLANNED, message)


@dataclass
class UpContext:
    """What every phase gets (kubeadm's RunData, kind's ActionContext)."""

    node: Host  # the control-plane node being configured
    local: Host  # this workstation: limactl, helm, kubectl for the cluster run here
    ui: UI
    options: Any  # the command's settings (kaudit.cli.up builds them)
    dry_run: bool = False
    #: kubeconfig usable from this workstation (the vm phase sets it for Lima)
    kubeconfig: Optional[Path] = None
    #: anything phases pass on to later phases (e.g. the Loki URL the stack installed)
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Phase:
    name: str
    short: str
    target: str  # "module:function"
    #: True for phases that configure the node itself (run once per --host);
    #: False for cluster-wide phases (run once).
    per_node: bool = True

    def load(self) -> Optional[Callable[[UpContext], Outcome]]:
        module_name, func = self.target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:
                return None
            raise
        return getattr(module, func)


PHASES: tuple[Phase, ...] = (
    Phase("preflight", "check tools, the node and the manifest", "kaudit.engine.phases.preflight:run"),
    Phase("vm", "create or start the Lima VM (lima hosts only)", "kaudit.engine.phases.vm:run"),
    Phase("policy", "write the audit policy file on the node", "kaudit.engine.phases.policy:run"),
    Phase("webhook", "certificates and kubeconfig for the audit webhook (--mode webhook|both)", "kaudit.engine.phases.webhook:run"),
    Phase("apiserver", "patch kube-apiserver, wait for kubelet to restart it, roll back on failure", "kaudit.engine.phases.apiserver:run"),
    Phase("persist", "record the audit settings in kubeadm-config so kubeadm upgrade keeps them", "kaudit.engine.phases.persist:run", per_node=False),
    Phase("stack", "install Loki and Grafana with Helm", "kaudit.engine.phases.stack:run", per_node=False),
    Phase("detect", "load kaudit's detection rules into the Loki ruler, with their dashboard", "kaudit.engine.phases.detect:run", per_node=False),
    Phase("collector", "install the collector (promtail, shipper or alloy)", "kaudit.engine.phases.collector:run", per_node=False),
    Phase("verify", "prove the pipeline end to end", "kaudit.engine.phases.verify:run", per_node=False),
)
PHASE_NAMES: tuple[str, ...] = tuple(p.name for p in PHASES)


def phases_help() -> str:
    return "\n".join(f"  {p.name:<10} {p.short}" for p in PHASES)


def parse_phase_list(text: Optional[str], flag: str) -> list[str]:
    if not text:
        return []
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PHASE_NAMES]
    if unknown:
        raise UsageError(f"{flag}: unknown phase {', '.join(unknown)}", f"phases are: {', '.join(PHASE_NAMES)}")
    return names


def select_phases(only: Optional[str], skip: Optional[str]) -> list[Phase]:
    only_names = parse_phase_list(only, "--only")
    skip_names = parse_phase_list(skip, "--skip-phases")
    chosen = [p for p in PHASES if (not only_names or p.name in only_names) and p.name not in skip_names]
    if not chosen:
        raise UsageError("no phase left to run", f"phases are: {', '.join(PHASE_NAMES)}")
    return chosen


def run_phase(phase: Phase, ctx: UpContext) -> Outcome:
    """Run one phase, wrapping its failure with the phase name."""
    fn = phase.load()
    if fn is None:
        return Outcome.skipped("not available in this version of kaudit")
    try:
        return fn(ctx)
    except PhaseError:
        raise
    except KauditError as e:
        raise PhaseError(phase.name, e) from e


#: the phases of `kaudit down`, in order: the same safety as up, backwards
DOWN_PHASES: tuple[Phase, ...] = tuple(
    Phase(name, short, target, per_node=per_node)
    for name, short, target, per_node in (
        ("apiserver", "take kaudit's flags and mounts out of kube-apiserver (backup, wait, roll back)", "kaudit.engine.phases.apiserver:run_down", True),
        ("policy", "delete the policy file (--remove-policy)", "kaudit.engine.phases.policy:run_down", True),
        ("persist", "take the audit settings out of kubeadm-config", "kaudit.engine.phases.persist:run_down", False),
        ("detect", "delete the detection rules and their dashboard", "kaudit.engine.phases.detect:run_down", False),
        ("charts", "uninstall kaudit's Helm releases (--purge-charts)", "kaudit.engine.phases.purge:run", False),
    )
)

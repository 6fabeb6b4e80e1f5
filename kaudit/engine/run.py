"""Run phases: node phases on each host in turn, then cluster-wide phases once, and a summary.

The one entry point of `kaudit up` and `kaudit down` (and of each cluster of an inventory):
it takes the frozen settings (kaudit.engine.settings.UpOptions) the CLI built, the targets
(kaudit.engine.targets.HostOptions) and the phases, and never sees Typer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from kaudit.core.errors import ExitCode, UsageError


def run_phases(ui, hosts, phases, opts, *, dry_run: bool, verb: str, rows: Optional[list] = None) -> int:
    """Node phases on each host in turn, then cluster-wide phases once; a summary at the end.
    ``rows`` (when given) receives (host, phase, status, message) for each phase run."""
    from kaudit.core.errors import KauditError
    from kaudit.adapters.hosts.local import LocalHost
    from kaudit.engine.workflow import Status, UpContext, run_phase

    if opts.kubeconfig is not None and not Path(opts.kubeconfig).is_file():
        raise UsageError(f"--kubeconfig {opts.kubeconfig}: no such file", "pass the kubeconfig of the cluster, or leave it out")
    node_phases = [p for p in phases if p.per_node]
    cluster_phases = [p for p in phases if not p.per_node]
    rows = [] if rows is None else rows  # (host, phase, status, message)
    local = LocalHost()
    facts: dict = {}
    kubeconfig = opts.kubeconfig
    first_ctx = None
    multi = len(hosts.hosts) > 1
    if dry_run:
        ui.info("dry run: nothing will be changed")

    def one(phase, ctx, label):
        ui.detail(f"[{phase.name}] {phase.short}")
        try:
            outcome = run_phase(phase, ctx)
        except KauditError as e:
            rows.append((label, phase.name, "failed", getattr(e, "cause", e).message))
            raise
        rows.append((label, phase.name, outcome.status.value, outcome.message))
        text = f"[{phase.name}]{' ' + label + ':' if multi else ''} {outcome.message}"
        if outcome.status == Status.SKIPPED:
            ui.skip(text)
        elif outcome.status == Status.PLANNED:
            ui.info(f"~ {text}")
        else:
            ui.ok(text)

    # every --host is parsed before any node is touched (nothing connects yet)
    opened = [hosts.open(spec) for spec in hosts.hosts]
    started = 0
    try:
        for node in opened:
            started += 1
            if dry_run:
                from kaudit.adapters.hosts.dryrun import recording

                node = recording(node)
            if kubeconfig is None:
                kubeconfig = _local_admin_conf(node)
            ctx = UpContext(node=node, local=local, ui=ui, options=opts, dry_run=dry_run, kubeconfig=kubeconfig, facts=facts)
            first_ctx = first_ctx or ctx
            for phase in node_phases:
                one(phase, ctx, node.name)
            kubeconfig = ctx.kubeconfig
        if cluster_phases and first_ctx is not None:
            first_ctx.kubeconfig = kubeconfig
            for phase in cluster_phases:
                one(phase, first_ctx, "cluster")
    except KauditError:
        _summary(ui, rows, verb, failed=True, remaining=[n.name for n in opened[started:]])
        raise
    finally:
        for node in opened:
            node.close()
    _summary(ui, rows, verb, failed=False, remaining=[])
    for line in facts.get("grafana_access", []):
        ui.info(line)
    return ExitCode.OK


def _local_admin_conf(node) -> Optional[Path]:
    """On the node itself (--host local), kubeadm's admin.conf serves helm and kubectl
    too, if this user may read it; elsewhere --kubeconfig or the vm phase says."""
    import os

    from kaudit.adapters.hosts.local import LocalHost
    from kaudit.core.node_paths import ADMIN_CONF

    if isinstance(node, LocalHost):
        path = node.path(ADMIN_CONF)
        if path.is_file() and os.access(path, os.R_OK):
            return path
    return None


def _summary(ui, rows, verb: str, *, failed: bool, remaining: list[str]) -> None:
    if not rows:
        return
    ui.info("")
    ui.info(f"kaudit {verb} summary:")
    width = max(len(r[1]) for r in rows)
    hosts = list(dict.fromkeys(r[0] for r in rows))
    for h in hosts:
        if len(hosts) > 1:
            ui.info(f"  {h}")
        for _, phase, status, message in (r for r in rows if r[0] == h):
            ui.info(f"  {phase:<{width}}  {status:<9}  {message}")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r[2]] = counts.get(r[2], 0) + 1
    line = ", ".join(f"{n} {s}" for s, n in counts.items())
    if remaining:
        line += f"; not started on: {', '.join(remaining)}"
    if not failed and not counts.get("changed") and not counts.get("planned"):
        line += " — nothing changed: everything was already done"
    ui.info(line)

"""The `vm` phase of `kaudit up`: create or start the Lima VM behind --host lima:NAME.

Only Lima hosts have a VM to manage; for ssh:// and local nodes the phase is
skipped. It reads and plans first (limactl --version, limactl list --json), so
--dry-run reports exactly the limactl command it would run and starts nothing.
"""

from __future__ import annotations

from kaudit.engine.workflow import Outcome, UpContext


def run(ctx: UpContext) -> Outcome:
    from kaudit.adapters.hosts.lima import LimaHost
    from kaudit.adapters.lima import Lima, kubeconfig_message

    node = ctx.node
    if not isinstance(node, LimaHost):
        return Outcome.skipped("not a Lima host")
    opts = ctx.options
    lima = Lima(ctx.local, limactl=node.limactl)
    version = lima.version()
    ctx.ui.detail(f"[vm] Lima {version}")
    inst, plan = lima.plan(
        node.instance,
        template=getattr(opts, "lima_template", None) or "k8s",
        cpus=getattr(opts, "lima_cpus", None),
        memory=getattr(opts, "lima_memory", None),
        disk=getattr(opts, "lima_disk", None),
    )
    if inst is not None and any(getattr(opts, f, None) is not None for f in ("lima_cpus", "lima_memory", "lima_disk")):
        ctx.ui.warn(f"VM {node.instance} exists ({inst.summary()}); --lima-cpus/--lima-memory/--lima-disk apply only when kaudit creates it")

    if ctx.dry_run:
        if plan.action == "none":
            _note_kubeconfig(ctx, inst)
            return Outcome.unchanged(plan.reason)
        from kaudit.adapters.hosts.base import display_command

        return Outcome.planned(f"{plan.reason}; would run: {display_command(list(plan.argv))}")

    if plan.action == "none":
        _note_kubeconfig(ctx, inst)
        return Outcome.unchanged(plan.reason)

    verb = "Creating" if plan.action == "create" else "Starting"
    with ctx.ui.step(f"{verb} Lima VM {node.instance} (limactl start, up to 10m)"):
        inst = _while_ticking(ctx, lambda: lima.ensure(node.instance, plan))
    _note_kubeconfig(ctx, inst)
    done = "created" if plan.action == "create" else "started"
    msg = f"VM {node.instance} {done} ({', '.join(inst.resources())})"
    if "lima_kubeconfig" in ctx.facts:
        ctx.ui.info(kubeconfig_message(ctx.facts["lima_kubeconfig"]))
    return Outcome.changed(msg)


def _while_ticking(ctx: UpContext, fn):
    """Run fn in a thread so the terminal's status line keeps its elapsed time current."""
    import threading

    box: dict = {}

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=work, name="limactl-start", daemon=True)
    t.start()
    while t.is_alive():
        t.join(1.0)
        ctx.ui.tick()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _note_kubeconfig(ctx: UpContext, inst) -> None:
    """Point later phases (and the user) at the kubeconfig the k8s template copies out.
    A kubeconfig the user chose (ctx.kubeconfig already set) wins."""
    path = inst.kubeconfig
    if path.is_file():
        ctx.facts["lima_kubeconfig"] = str(path)
        if ctx.kubeconfig is None:
            ctx.kubeconfig = path
    else:
        ctx.ui.warn(
            f"no kubeconfig at {path} (the template's copyToHost did not run); "
            f"kubectl through the VM still works: limactl shell {inst.name} sudo kubectl get nodes"
        )

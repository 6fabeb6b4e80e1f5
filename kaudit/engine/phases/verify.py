"""The `verify` phase of `kaudit up`: the same checks as `kaudit verify`, on the node up just configured.

Options are read with getattr from ctx.options (the `up` command's settings), so
the phase works with whatever subset `up` offers. Loki is reached at --loki-url,
else through a port-forward to the service the stack phase recorded in
ctx.facts (namespace, loki_service, loki_port). The stack's own ``loki_url`` is
the in-cluster address, which this machine cannot reach, so it is not used.
"""

from __future__ import annotations

from kaudit.core.errors import ExitCode, KauditError
from kaudit.engine.workflow import Outcome, UpContext


def _spec(opts):
    spec = getattr(opts, "spec", None) or getattr(opts, "audit_spec", None)
    if spec is not None:
        return spec
    from kaudit.core.manifest import AuditSpec

    return AuditSpec()


def run(ctx: UpContext) -> Outcome:
    from kaudit.core.units import format_duration, parse_duration
    from kaudit.engine.verify.checks import FAIL, Node, Settings

    opts = ctx.options
    loki_url = getattr(opts, "loki_url", None)
    collector = getattr(opts, "collector", None) or "auto"
    if hasattr(collector, "value"):
        collector = collector.value
    timeout = getattr(opts, "verify_timeout", None) or getattr(opts, "timeout", None) or 60.0
    if isinstance(timeout, str):
        timeout = parse_duration(timeout, field="--verify-timeout")
    cluster = None
    if getattr(opts, "collector", None) != "none":
        from kaudit.engine import cluster_name

        cluster = cluster_name.resolve(ctx)
    labels = getattr(opts, "labels", None)  # the collector's label fields, when up lets the user choose them
    extra = {"labels": tuple(name for name in labels if isinstance(name, str))} if labels else {}
    settings = Settings(
        spec=_spec(opts),
        policy_profile=getattr(opts, "policy_profile", None),
        policy_file=getattr(opts, "policy_file", None),
        audit_log=getattr(opts, "audit_log", None),
        kubeconfig=ctx.kubeconfig or getattr(opts, "kubeconfig", None),
        loki_url=loki_url,
        loki_tenant=getattr(opts, "loki_tenant", None),
        collector=collector,
        timeout=float(timeout),
        loki_namespace=str(ctx.facts.get("namespace") or getattr(opts, "namespace", None) or "kaudit"),
        loki_service=str(ctx.facts.get("loki_service") or "loki"),
        loki_port=int(ctx.facts.get("loki_port") or 3100),
        cluster=cluster,
        loki_auth=getattr(opts, "loki_auth", None),
        **extra,
    )
    if ctx.dry_run:
        where = loki_url or f"a port-forward to svc/{settings.loki_service} in {settings.loki_namespace}"
        return Outcome.planned(f"would run the 9 verify checks on {ctx.node.name} against {where}")

    from kaudit.engine.verify import session

    node = Node(ctx.node.name, lambda: ctx.node, host=ctx.node, owned=False)
    results, doc = session.verify(settings, [node], ui=ctx.ui, stream=ctx.ui.stream, facts=ctx.facts)
    failed = [r for r in results if r.status == FAIL]
    if failed:
        first = failed[0]
        raise KauditError(
            f"verify failed: {', '.join(r.name for r in failed)} ({first.name}: {first.detail})",
            first.hint or "run kaudit verify for the full report",
            exit_code=ExitCode.VERIFY_FAILED,
        )
    if doc.get("loki_url"):
        ctx.facts.setdefault("verified_loki_url", doc["loki_url"])
    return Outcome.unchanged(f"all checks passed in {format_duration(doc['elapsed_s'])}")

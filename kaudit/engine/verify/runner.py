"""Run the checks in order, skip what cannot run after a failure, and time each one.

A node that is not reachable gets its other node checks skipped (with the
reason); a Loki that does not answer skips the probe and the label check. The
port-forward verify may have opened is closed whatever happens.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from kaudit.core.errors import KauditError
from kaudit.engine.verify import checks as C
from kaudit.engine.verify.checks import CheckResult, Node, Verdict, VerifyContext
from kaudit.engine.verify.webhook import check_webhook

NODE_FUNCS = {
    "reachable": C.check_reachable,
    "manifest": C.check_manifest,
    "policy": C.check_policy,
    "apiserver": C.check_apiserver,
    "audit-log": C.check_audit_log,
    "webhook": check_webhook,
}
CLUSTER_FUNCS = {
    "collector": C.check_collector,
    "loki": C.check_loki,
    "probe": C.check_probe,
    "labels": C.check_labels,
}


def _timed(name: str, node: Optional[Node], fn: Callable[[], Verdict]) -> CheckResult:
    t0 = time.monotonic()
    try:
        v = fn()
    except KauditError as e:  # an expected failure the check did not phrase itself
        v = C.failed(e.message, e.hint or "see the message above")
    except OSError as e:  # a file on this machine (rootfs tree, --policy-file) could not be read
        where = f"{e.filename}: " if e.filename else ""
        v = C.failed(f"{where}{e.strerror or e}", "check that the file exists and kaudit may read it")
    return CheckResult(name, v.status, time.monotonic() - t0, v.detail, v.hint, node.label if node else None, v.data)


def run_checks(
    ctx: VerifyContext,
    *,
    on_start: Callable[[str, Optional[str]], None] = lambda name, node: None,
    on_result: Callable[[CheckResult], None] = lambda r: None,
) -> list[CheckResult]:
    results: list[CheckResult] = []

    def emit(r: CheckResult) -> None:
        results.append(r)
        on_result(r)

    try:
        for node in ctx.nodes:
            for name, fn in NODE_FUNCS.items():
                if name == "webhook" and getattr(ctx.settings.spec, "mode", "log") == "log":
                    continue  # only reported for kaudit verify --mode webhook|both
                if name != "reachable" and node.error is not None:
                    emit(CheckResult(name, C.SKIP, 0.0, f"skipped: {node.label} is not reachable", None, node.label))
                    continue
                on_start(name, node.label)
                emit(_timed(name, node, lambda fn=fn: fn(ctx, node)))
        loki_ok = True
        for name, fn in CLUSTER_FUNCS.items():
            if name in ("probe", "labels") and not loki_ok:
                emit(CheckResult(name, C.SKIP, 0.0, "skipped: Loki does not answer", None, None))
                continue
            if name in ("collector", "probe") and ctx.kubectl_reason and not (name == "collector" and ctx.settings.collector == "none"):
                emit(CheckResult(name, C.SKIP, 0.0, f"skipped: {ctx.kubectl_reason}", None, None))
                continue
            on_start(name, None)
            r = _timed(name, None, lambda fn=fn: fn(ctx))
            if name == "loki" and r.status == C.FAIL:
                loki_ok = False
            emit(r)
    finally:
        ctx.close()
    return results


def exit_code(results: list[CheckResult]) -> int:
    """0 when no check failed (warnings and deliberate skips do not fail), 4 otherwise."""
    from kaudit.core.errors import ExitCode

    return int(ExitCode.OK if all(r.status != C.FAIL for r in results) else ExitCode.VERIFY_FAILED)

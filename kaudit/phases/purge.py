"""`kaudit down --purge-charts`: uninstall the Helm releases kaudit installed.

helm runs on this machine (ctx.local), like the stack phase that installed them;
only the releases `helm list` shows in the namespace are uninstalled.
"""

from __future__ import annotations

import json

from kaudit.errors import KauditError
from kaudit.workflow import Outcome, UpContext


def run(ctx: UpContext) -> Outcome:
    opts = ctx.options
    if not getattr(opts, "purge_charts", False):
        return Outcome.skipped("charts kept (--purge-charts uninstalls them)")
    try:
        from kaudit.charts import RELEASES
    except ImportError:
        return Outcome.skipped("this kaudit has no chart list; uninstall with helm uninstall RELEASE -n kaudit")
    local = ctx.local
    if not local.which("helm"):
        return Outcome.skipped(f"helm is not installed here; nothing uninstalled (releases: {', '.join(RELEASES)})")
    namespace = opts.namespace
    base = ["helm"]
    kubeconfig = ctx.kubeconfig or opts.kubeconfig
    if kubeconfig:
        base += ["--kubeconfig", str(kubeconfig)]
    listed = local.run([*base, "list", "-n", namespace, "-o", "json"], sudo=False, timeout=120,
                       hint="check that the cluster answers: kubectl get --raw /readyz")
    try:
        names = {row.get("name") for row in json.loads(listed.out or "[]")}
    except (ValueError, AttributeError):
        raise KauditError(f"helm list -n {namespace} -o json printed something that is not JSON") from None
    present = [r for r in RELEASES if r in names]
    if not present:
        return Outcome.unchanged(f"no kaudit release installed in namespace {namespace}")
    if ctx.dry_run:
        return Outcome.planned(f"would run helm uninstall {' '.join(present)} -n {namespace}")
    for release in present:
        local.run([*base, "uninstall", release, "-n", namespace], sudo=False, timeout=600,
                  hint=f"run helm uninstall {release} -n {namespace} by hand to see why")
    return Outcome.changed(f"uninstalled {', '.join(present)} from namespace {namespace}")

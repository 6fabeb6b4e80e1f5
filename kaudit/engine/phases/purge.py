"""`kaudit down --purge-charts`: remove what the stack and collector phases installed.

Both run on this machine (ctx.local), like the phases that installed them: the
objects kaudit applied itself (dashboard and shipper, kaudit.core.charts.APPLIED_OBJECTS)
are deleted with ``kubectl delete --ignore-not-found``, and each kaudit release
that ``helm list`` shows in the namespace is uninstalled. The namespace itself
is left alone: it may hold things kaudit did not put there.
"""

from __future__ import annotations

import json

from kaudit.core.errors import KauditError
from kaudit.engine.workflow import Outcome, UpContext


def run(ctx: UpContext) -> Outcome:
    opts = ctx.options
    if not getattr(opts, "purge_charts", False):
        return Outcome.skipped("charts kept (--purge-charts uninstalls them)")
    try:
        from kaudit.core.charts import APPLIED_OBJECTS, RELEASES
    except ImportError:
        return Outcome.skipped("this kaudit has no chart list; uninstall with helm uninstall RELEASE -n kaudit")
    namespace = opts.namespace
    kubeconfig = ctx.kubeconfig or opts.kubeconfig
    kc = ["--kubeconfig", str(kubeconfig)] if kubeconfig else []
    local = ctx.local
    done: list[str] = []
    notes: list[str] = []

    objects = [f"{kind}/{name}" for kind, name in APPLIED_OBJECTS]
    if not local.which("kubectl"):
        notes.append(f"kubectl is not installed here; not deleted: {', '.join(objects)}")
    else:
        argv = ["kubectl", *kc, "delete", *objects, "-n", namespace, "--ignore-not-found"]
        if ctx.dry_run:
            notes.append(f"would run: kubectl delete {' '.join(objects)} -n {namespace} --ignore-not-found")
        else:
            r = local.run(argv, sudo=False, timeout=300, hint=f"run kubectl delete {' '.join(objects)} -n {namespace} by hand to see why")
            # kubectl prints `configmap "kaudit-dashboards" deleted` per object
            deleted = [f"{w[0]}/{w[1].strip(chr(34))}" for w in (line.split() for line in r.out.splitlines()) if len(w) == 3 and w[2] == "deleted"]
            if deleted:
                done.append("deleted " + ", ".join(deleted))

    if not local.which("helm"):
        notes.append(f"helm is not installed here; nothing uninstalled (releases: {', '.join(RELEASES)})")
    else:
        base = ["helm", *kc]
        listed = local.run([*base, "list", "-n", namespace, "-o", "json"], sudo=False, timeout=120,
                           hint="check that the cluster answers: kubectl get --raw /readyz")
        try:
            names = {row.get("name") for row in json.loads(listed.out or "[]")}
        except (ValueError, AttributeError):
            raise KauditError(f"helm list -n {namespace} -o json printed something that is not JSON") from None
        present = [r for r in RELEASES if r in names]
        if ctx.dry_run and present:
            notes.append(f"would run helm uninstall {' '.join(present)} -n {namespace}")
        elif present:
            for release in present:
                local.run([*base, "uninstall", release, "-n", namespace], sudo=False, timeout=600,
                          hint=f"run helm uninstall {release} -n {namespace} by hand to see why")
            done.append(f"uninstalled {', '.join(present)}")
        else:
            notes.append(f"no kaudit release installed in namespace {namespace}")

    message = "; ".join(done + notes)
    if ctx.dry_run and any(n.startswith("would") for n in notes):
        return Outcome.planned(message)
    return Outcome.changed(message) if done else Outcome.unchanged(message)

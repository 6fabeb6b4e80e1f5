"""`kaudit up` phase detect: kaudit's detection rules in the Loki ruler, and their dashboard.

Two parts, so that each lands where it belongs:

* the Loki ruler's configuration (local rule storage, a ConfigMap volume, the Alertmanager
  URL) is part of the Loki release's values: ``with_ruler`` merges the detect-ruler values
  template of the stack into the values the stack phase installs (one call there);
* the rules themselves (Prometheus rule groups) and the "detections" dashboard are two
  ConfigMaps this phase applies with kubectl, so changing or removing them never needs a
  Helm upgrade. The rules volume is optional: Loki starts without the ConfigMap.

``kaudit up --no-detect`` leaves all of it out (and removes the ConfigMaps of an earlier
run); ``kaudit down`` deletes the ConfigMaps (``run_down``).
"""

from __future__ import annotations

import copy
from typing import Any

from kaudit.core import charts
from kaudit.core import render
from kaudit.core import stack_values
from kaudit.core.errors import KauditError, UsageError
from kaudit.adapters.helm import Kubectl
from kaudit.engine.workflow import Outcome, UpContext

RULES_CONFIGMAP = "kaudit-loki-rules"
RULES_FILE = "kaudit-detect.yaml"
DASHBOARD_CONFIGMAP = "kaudit-detect-dashboard"
#: the single tenant's id while Loki runs with auth_enabled: false
TENANT = "fake"
#: where each stack's ruler reads rule files (local storage); the tenant directory is below
RULES_DIR = {"loki-stack": "/rules", "loki": "/etc/loki/rules"}
RULER_TEMPLATES = {"loki-stack": "detect-ruler-loki-stack-values.yaml.j2", "loki": "detect-ruler-loki-values.yaml.j2"}
OBJECTS = (("configmap", RULES_CONFIGMAP), ("configmap", DASHBOARD_CONFIGMAP))


def enabled(ctx: UpContext) -> bool:
    """Detection is part of `up` unless --no-detect (options without the field: off)."""
    return bool(getattr(ctx.options, "detect", False))


def alertmanager_url(ctx: UpContext) -> str | None:
    url = getattr(ctx.options, "alertmanager_url", None)
    if url and not str(url).startswith(("http://", "https://")):
        raise UsageError(f"--alertmanager-url {url!r} is not an http(s) URL", "write it like http://alertmanager.monitoring.svc:9093")
    return url or None


def _stack(ctx: UpContext) -> str:
    stack = str(getattr(ctx.options, "stack", None) or "loki-stack")
    if stack not in RULER_TEMPLATES:
        raise UsageError(f"--stack: unknown stack {stack!r}", f"choose one of: {', '.join(RULER_TEMPLATES)}")
    return stack


# -- pure: what gets installed ------------------------------------------------------------
def ruler_values_text(stack: str, alertmanager: str | None) -> str:
    """The values overlay that turns on the ruler of the stack's Loki release."""
    chart = charts.STACKS[stack][0]
    name = RULER_TEMPLATES[stack]
    text = render.render_template(name, chart=chart, rules_dir=RULES_DIR[stack], tenant=TENANT,
                                  rules_configmap=RULES_CONFIGMAP, alertmanager_url=alertmanager)
    render.parse_yaml(text, name)
    return text


def merge(base: Any, overlay: Any) -> Any:
    """Helm's merge of values: mappings merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = dict(base)
        for k, v in overlay.items():
            out[k] = merge(base.get(k), v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(overlay)


def with_ruler(ctx: UpContext, stack: str, values: dict[str, Any]) -> dict[str, Any]:
    """The stack's release values with the ruler overlay merged into the Loki release."""
    if not enabled(ctx):
        return values
    overlay = render.parse_yaml(ruler_values_text(stack, alertmanager_url(ctx)), RULER_TEMPLATES[stack])
    release = charts.STACKS[stack][0].release
    return {**values, release: merge(values[release], overlay)}


def rules_text(rules) -> str:
    import io

    from ruamel.yaml import YAML

    from kaudit.core.detect.logql import rule_groups

    y = YAML(typ="safe", pure=True)
    y.default_flow_style = False
    y.width = 4096
    buf = io.StringIO()
    y.dump(rule_groups(rules), buf)
    return buf.getvalue()


def objects(namespace: str, rules) -> list[dict]:
    """The rules ConfigMap and the dashboard ConfigMap."""
    from kaudit.core.detect import dashboard

    labels = {charts.MANAGED_BY_LABEL[0]: charts.MANAGED_BY_LABEL[1]}
    rules_cm = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": RULES_CONFIGMAP, "namespace": namespace, "labels": labels},
        "data": {RULES_FILE: rules_text(rules)},
    }
    dash_cm = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": DASHBOARD_CONFIGMAP, "namespace": namespace,
                     "labels": {**labels, stack_values.DASHBOARD_LABEL: "1"}},
        "data": {dashboard.FILE: dashboard.dashboard_json(rules)},
    }
    return [rules_cm, dash_cm]


# -- side effects --------------------------------------------------------------------------
def _delete(ctx: UpContext, namespace: str) -> list[str] | None:
    """kubectl delete both ConfigMaps; the lines kubectl printed, or None without kubectl."""
    kubeconfig = ctx.kubeconfig or getattr(ctx.options, "kubeconfig", None)
    kc = ["--kubeconfig", str(kubeconfig)] if kubeconfig else []
    names = [f"{k}/{n}" for k, n in OBJECTS]
    argv = ["kubectl", *kc, "delete", *names, "-n", namespace, "--ignore-not-found"]
    r = ctx.local.run(argv, sudo=False, timeout=120, check=False)
    if r.returncode == 127:
        return None
    if not r.ok:
        raise KauditError(f"kubectl could not delete {', '.join(names)}: {(r.err or r.out).strip().splitlines()[-1:] or ['exit ' + str(r.returncode)]}",
                          f"run kubectl delete {' '.join(names)} -n {namespace} by hand to see why")
    # kubectl prints `configmap "kaudit-loki-rules" deleted` per object it deleted
    return [line.strip() for line in r.out.splitlines() if line.strip().endswith("deleted")]


def run(ctx: UpContext) -> Outcome:
    namespace = str(getattr(ctx.options, "namespace", None) or charts.NAMESPACE)
    stack = _stack(ctx)
    if not enabled(ctx):
        if ctx.dry_run:
            return Outcome.skipped("--no-detect: no rules in the Loki ruler")
        gone = _delete(ctx, namespace) or []
        return Outcome.changed("--no-detect: removed " + ", ".join(gone)) if gone else Outcome.skipped("--no-detect: no rules in the Loki ruler")
    if getattr(ctx.options, "loki_url", None):
        return Outcome.skipped("--loki-url: kaudit did not install this Loki; load `kaudit detect --list --logql --cluster NAME` rules into its ruler yourself")
    from kaudit.core.detect.model import rule_pack

    rules = rule_pack()
    objs = objects(namespace, rules)
    if ctx.dry_run:
        ctx.ui.info(f"would merge into the {stack} values: the Loki ruler (local rules in {RULES_DIR[stack]}/{TENANT})")
        ctx.ui.detail(ruler_values_text(stack, alertmanager_url(ctx)))
        ctx.ui.info(f"would apply: configmap/{RULES_CONFIGMAP} ({len(rules)} rules), configmap/{DASHBOARD_CONFIGMAP} in namespace {namespace}")
        return Outcome.planned(f"{len(rules)} detection rules into the Loki ruler")
    done = Kubectl(ctx.local, kubeconfig=ctx.kubeconfig or getattr(ctx.options, "kubeconfig", None)).apply(objs, "the detection rules and dashboard")
    ctx.facts["detect_rules"] = len(rules)
    summary = ", ".join(f"{a.name} {a.action}" for a in done)
    target = f"; alerts go to {alertmanager_url(ctx)}" if alertmanager_url(ctx) else ""
    if any(a.changed for a in done):
        return Outcome.changed(f"{len(rules)} rules in the Loki ruler{target} ({summary})")
    return Outcome.unchanged(f"{len(rules)} rules already in the Loki ruler{target}")


def run_down(ctx: UpContext) -> Outcome:
    namespace = str(getattr(ctx.options, "namespace", None) or charts.NAMESPACE)
    if ctx.dry_run:
        return Outcome.planned(f"would run: kubectl delete {' '.join(f'{k}/{n}' for k, n in OBJECTS)} -n {namespace} --ignore-not-found")
    gone = _delete(ctx, namespace)
    if gone is None:
        return Outcome.skipped(f"kubectl is not installed here; delete configmap/{RULES_CONFIGMAP} and configmap/{DASHBOARD_CONFIGMAP} by hand")
    return Outcome.changed("deleted " + ", ".join(gone)) if gone else Outcome.unchanged("no detection rules installed")

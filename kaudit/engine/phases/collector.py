"""`kaudit up` phase collector: what reads the audit log on each control-plane node.

--collector promtail (default, as the seed): grafana/promtail chart with the rendered values.
--collector alloy: grafana/alloy chart with the rendered config and a control-plane toleration.
--collector shipper: kaudit's own shipper as a DaemonSet on a stock python image, its code
delivered by a ConfigMap generated from the installed package at deploy time.
--collector none: shipping is done elsewhere.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Optional

from kaudit.core import charts
from kaudit.core import render
from kaudit.core.shipper_manifest import ShipperDeploy, render_shipper_manifest
from kaudit.core.errors import KauditError, UsageError
from kaudit.adapters.helm import Applied, Helm, Kubectl, parse_timeout, upgrade_install_argv
from kaudit.adapters.hosts.base import display_command
from kaudit.engine.phases.stack import option, rollout_watch, stack_name
from kaudit.engine.workflow import Outcome, UpContext

COLLECTORS = ("promtail", "shipper", "alloy", "none")
DEFAULT_SHIPPER_IMAGE = "python:3.12-slim"

#: how verify finds each collector's pods (workload, label selector)
WORKLOADS = {
    "promtail": ("daemonset/promtail", "app.kubernetes.io/name=promtail"),
    "alloy": ("daemonset/alloy", "app.kubernetes.io/name=alloy"),
    "shipper": (f"daemonset/{charts.SHIPPER_NAME}", f"app.kubernetes.io/name={charts.SHIPPER_NAME}"),
}

#: a package __init__ for the ConfigMap: the real kaudit/__init__.py is not needed in the pod
_PACKAGE_STUB = '"""kaudit shipper runtime (delivered by a ConfigMap)."""\n'


def audit_log_path(ctx: UpContext) -> str:
    for holder in (ctx.options, getattr(ctx.options, "audit", None), getattr(ctx.options, "audit_spec", None)):
        value = getattr(holder, "log_path", None) if holder is not None else None
        if value:
            return str(value)
    return str(ctx.facts.get("audit_log_path") or render.DEFAULT_LOG_PATH)


def structured_metadata(ctx: UpContext, stack: str) -> bool:
    """on/off/auto (default auto: on for Loki 3, off for loki-stack's Loki 2.6.1)."""
    raw: Any = option(ctx, "structured_metadata", "auto")
    _, supported = charts.LOKI_VERSIONS[stack]
    if option(ctx, "loki_url", None):
        # a Loki kaudit did not install: its version is unknown, so only on request
        return raw is True or str(getattr(raw, "value", raw)).lower() == "on"
    if isinstance(raw, bool):
        wanted: Optional[bool] = raw
    else:
        text = str(getattr(raw, "value", raw)).lower()
        if text not in ("on", "off", "auto"):
            raise UsageError(f"--structured-metadata: {raw!r} is not on, off or auto")
        wanted = None if text == "auto" else text == "on"
    if wanted and not supported:
        version, _ = charts.LOKI_VERSIONS[stack]
        raise UsageError(
            f"--structured-metadata on: --stack {stack} runs Loki {version}, which rejects structured metadata",
            "use --stack loki (Loki 3), or --structured-metadata off",
        )
    return supported if wanted is None else wanted


def settings(ctx: UpContext, stack: str, namespace: str) -> render.CollectorSettings:
    from kaudit.engine import cluster_name
    from kaudit.core.loki_auth import pod_auth

    loki = ctx.facts.get("loki_url") if ctx.facts.get("namespace", namespace) == namespace else None
    return render.CollectorSettings(
        log_path=audit_log_path(ctx),
        loki_url=option(ctx, "loki_url", None) or loki or charts.loki_base_url(namespace),
        structured_metadata=structured_metadata(ctx, stack),
        tenant=option(ctx, "tenant", None) or option(ctx, "loki_tenant", None),
        cluster=cluster_name.resolve(ctx),
        auth=pod_auth(option(ctx, "loki_auth", None)),
    ).checked()


def auth_secret(ctx: UpContext, namespace: str) -> list[dict]:
    """The Secret holding the Loki credentials (none when there are none)."""
    from kaudit.core.loki_auth import secret_object

    creds = option(ctx, "loki_auth", None)
    if creds is None or creds.empty:
        return []
    return [secret_object(namespace, creds, charts.MANAGED_BY_LABEL)]


def shipper_sources() -> dict[str, str]:
    """The shipper's files as paths under the pod's code dir -> text, read from the
    installed package (so the pod runs exactly the kaudit that deployed it)."""
    import kaudit.shipper as pkg

    provided = getattr(pkg, "shipper_sources", None)
    files: dict[str, str] = {}
    if callable(provided):
        for name, text in provided().items():
            # relative to the code dir (kaudit/shipper/x.py); bare names are the package's own files
            files[name if "/" in name else f"kaudit/shipper/{name}"] = text
    else:
        root = resources.files("kaudit.shipper")

        def walk(node, prefix: str) -> None:
            for child in node.iterdir():
                if child.is_dir():
                    if child.name != "__pycache__":
                        walk(child, f"{prefix}{child.name}/")
                elif child.name.endswith(".py"):
                    files[f"kaudit/shipper/{prefix}{child.name}"] = child.read_text(encoding="utf-8")

        walk(root, "")
    if "kaudit/shipper/__main__.py" not in files:
        raise KauditError(
            "this kaudit has no runnable shipper (kaudit/shipper/__main__.py is missing)",
            "choose --collector promtail or --collector alloy, or install a kaudit release that includes the shipper",
        )
    files.setdefault("kaudit/__init__.py", _PACKAGE_STUB)
    return files


def shipper_manifest(ctx: UpContext, s: render.CollectorSettings, namespace: str) -> str:
    import posixpath

    base = s.loki_url[: -len(render.PUSH_PATH)] if s.loki_url.endswith(render.PUSH_PATH) else s.loki_url
    deploy = ShipperDeploy(
        sources=tuple(sorted(shipper_sources().items())),
        namespace=namespace,
        image=str(option(ctx, "shipper_image", DEFAULT_SHIPPER_IMAGE)),
        log_path=s.log_path,
        loki_url=base,
        structured_metadata=s.structured_metadata,
        job=s.job,
        labels=s.labels,
        tenant=s.tenant,
        # a scalable Loki sized to take whole RequestResponse events (kaudit.engine.phases.stack)
        max_line_bytes=ctx.facts.get("loki_max_line_bytes"),
        cluster=s.cluster,
        auth=s.auth,
        **_webhook_settings(ctx),
    )
    assert posixpath.isabs(deploy.log_path)
    return render_shipper_manifest(deploy)


def _webhook_settings(ctx: UpContext) -> dict:
    """--mode webhook|both: the DaemonSet also runs the receiver (webhook phase: its TLS files)."""
    mode = getattr(getattr(ctx.options, "spec", None), "mode", "log")
    if mode == "log":
        return {}
    from kaudit.core.webhook_tls import TLS_DIR
    from kaudit.engine.phases.webhook import listen_address

    return {"tail_log": mode == "both", "webhook_listen": listen_address(), "webhook_tls_dir": TLS_DIR}


def namespace_object(namespace: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}


def run(ctx: UpContext) -> Outcome:
    collector = str(option(ctx, "collector", "promtail"))
    if collector not in COLLECTORS:
        raise UsageError(f"--collector: unknown collector {collector!r}", f"choose one of: {', '.join(COLLECTORS)}")
    if collector == "none":
        return Outcome.skipped("--collector none: the audit log is shipped by something else")
    stack = stack_name(ctx)
    namespace = str(option(ctx, "namespace", charts.NAMESPACE))
    timeout = parse_timeout(option(ctx, "helm_timeout", None))
    s = settings(ctx, stack, namespace)
    workload, selector = WORKLOADS[collector]
    ctx.facts.update(collector=collector, collector_workload=workload, collector_selector=selector, collector_namespace=namespace)
    where = ctx.facts.get("cluster_name_source", "")
    ctx.ui.detail(f"cluster label: {s.cluster} ({where})")
    if option(ctx, "loki_url", None) and "kubeadm's default" in where:
        ctx.ui.warn(f"the cluster label is kubeadm's default {s.cluster!r}: other clusters shipping to the same Loki may carry it too; name this one with --cluster-name")
    secret = auth_secret(ctx, namespace)
    if secret:
        creds = option(ctx, "loki_auth", None)
        ctx.ui.detail(f"Loki credentials: {creds.describe()}, in secret/{secret[0]['metadata']['name']}")

    if collector == "shipper":
        docs = render.parse_yaml_documents(shipper_manifest(ctx, s, namespace), "shipper manifest")
        objects = [namespace_object(namespace), *secret, *docs]
        if ctx.dry_run:
            names = ", ".join(f"{o['kind'].lower()}/{o['metadata']['name']}" for o in objects)
            ctx.ui.info(f"would apply with kubectl: {names} (image {option(ctx, 'shipper_image', DEFAULT_SHIPPER_IMAGE)})")
            return Outcome.planned(f"shipper DaemonSet in namespace {namespace}")
        with ctx.ui.step(f"shipper: DaemonSet {charts.SHIPPER_NAME} in namespace {namespace}"):
            done = Kubectl(ctx.local, kubeconfig=ctx.kubeconfig).apply(objects, "the shipper")
        return _outcome(done, "shipper")

    chart = charts.COLLECTOR_CHARTS[collector]
    text = render.render_collector_config("helm-values", s) if collector == "promtail" else render.alloy_chart_values(s)
    values = render.parse_yaml(text, f"{collector} values")
    if chart.deprecated:
        ctx.ui.warn(f"{chart.app_version.split()[0]} reached end of life on 2026-03-02; --collector alloy is its successor")
    if ctx.dry_run:
        if secret:
            ctx.ui.info(f"would apply with kubectl: secret/{secret[0]['metadata']['name']} (the Loki credentials)")
        ctx.ui.info(f"would run: {display_command(upgrade_install_argv(chart, namespace, timeout, ctx.kubeconfig))}")
        ctx.ui.detail(text)
        return Outcome.planned(f"{collector}: {chart.ref}")
    helm = Helm(ctx.local, kubeconfig=ctx.kubeconfig, timeout=timeout)
    helm.require()
    done = []
    if secret:  # before the chart: its pods mount the Secret
        done += Kubectl(ctx.local, kubeconfig=ctx.kubeconfig).apply([namespace_object(namespace), *secret], "the Loki credentials")[1:]
    done.append(helm.ensure(chart, namespace, values, ctx.ui, rollout_watch(ctx, namespace)))
    return _outcome(done, collector)


def _outcome(done: list[Applied], what: str) -> Outcome:
    summary = ", ".join(f"{a.name} {a.action}" for a in done)
    if any(a.changed for a in done):
        return Outcome.changed(summary)
    return Outcome.unchanged(f"{what} already deployed: {summary}")

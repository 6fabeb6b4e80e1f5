"""`kaudit up` phase stack: Loki and Grafana with Helm, plus the audit dashboard.

--stack loki-stack (default, as the seed): grafana/loki-stack with Grafana and its Loki
datasource, Promtail disabled (the collector phase installs one). Deprecated, Loki 2.6.1.
--stack loki: the community Loki chart (monolithic, filesystem, schema v13, structured
metadata) and the Grafana chart with a Loki datasource.
"""

from __future__ import annotations

from typing import Any, Optional

from kaudit import charts
from kaudit.core import render
from kaudit.errors import UsageError
from kaudit.helm import Applied, Helm, Kubectl, parse_timeout, upgrade_install_argv
from kaudit.hosts.base import display_command
from kaudit.phases import detect as detect_phase
from kaudit.rollout_watch import DEFAULT_INTERVAL, RolloutWatch
from kaudit.workflow import Outcome, UpContext


def option(ctx: UpContext, name: str, default: Any) -> Any:
    value = getattr(ctx.options, name, None)
    return default if value is None else value


def stack_name(ctx: UpContext) -> str:
    stack = str(option(ctx, "stack", "loki-stack"))
    if stack not in charts.STACKS:
        raise UsageError(f"--stack: unknown stack {stack!r}", f"choose one of: {', '.join(charts.STACKS)}")
    return stack


def record_facts(ctx: UpContext, stack: str, namespace: str) -> None:
    """What later phases (collector, verify) need to know about the stack."""
    version, sm = charts.LOKI_VERSIONS[stack]
    access = charts.GRAFANA_ACCESS[stack]
    ctx.facts.update(
        stack=stack,
        namespace=namespace,
        loki_service=charts.LOKI_SERVICE,
        loki_port=charts.LOKI_PORT,
        loki_url=charts.loki_base_url(namespace),
        loki_version=version,
        loki_structured_metadata=sm,
        grafana_service=access.service,
        grafana_port=access.port,
        grafana_secret=access.secret,
    )


def access_lines(ctx: UpContext, stack: str, namespace: str) -> list[str]:
    access = charts.GRAFANA_ACCESS[stack]
    kc = f" --kubeconfig {ctx.kubeconfig}" if ctx.kubeconfig else ""
    return [
        "Grafana: http://localhost:3000 (dashboard \"Kubernetes audit\") once this runs:",
        f"  kubectl{kc} -n {namespace} port-forward svc/{access.service} 3000:{access.port}",
        "Log in as admin; the password is:",
        f"  kubectl{kc} -n {namespace} get secret {access.secret} -o jsonpath='{{.data.{access.secret_key}}}' | base64 -d; echo",
    ]


def storage_line(storage: Optional[render.LokiStorage]) -> str:
    if storage is None:
        return "Loki keeps its data in an emptyDir: it lives as long as the Loki pod (--loki-storage-class NAME keeps it on a volume)."
    where = f"StorageClass {storage.storage_class}" if storage.storage_class else "the cluster's default StorageClass"
    return f"Loki keeps its data on a {storage.size} PersistentVolumeClaim of {where}."


def rollout_watch(ctx: UpContext, namespace: str) -> RolloutWatch:
    interval = option(ctx, "watch_interval", None)
    return RolloutWatch(ctx.local, namespace, kubeconfig=ctx.kubeconfig, ui=ctx.ui, interval=float(interval or DEFAULT_INTERVAL))


def run(ctx: UpContext) -> Outcome:
    stack = stack_name(ctx)
    namespace = str(option(ctx, "namespace", charts.NAMESPACE))
    timeout = parse_timeout(option(ctx, "helm_timeout", None))
    releases = charts.STACKS[stack]
    # render everything first: a template problem stops the phase before anything runs
    storage = option(ctx, "loki_storage", None)
    values_text = render.stack_values(stack, namespace, storage)
    values = {rel: render.parse_yaml(text, f"{rel} values") for rel, text in values_text.items()}
    values = detect_phase.with_ruler(ctx, stack, values)  # the Loki ruler, unless --no-detect
    dashboard = render.parse_yaml(render.render_dashboard_configmap(namespace), "dashboard ConfigMap")
    record_facts(ctx, stack, namespace)

    if stack == "loki-stack":
        ctx.ui.warn(
            "grafana/loki-stack is deprecated and runs Loki 2.6.1 (no structured metadata); "
            "--stack loki installs Loki 3 from the community chart"
        )

    if ctx.dry_run:
        for chart in releases:
            ctx.ui.info(f"would run: {display_command(upgrade_install_argv(chart, namespace, timeout, ctx.kubeconfig))}")
            ctx.ui.detail(values_text[chart.release])
        ctx.ui.info(storage_line(storage))
        ctx.ui.info(f"would apply: configmap/{charts.DASHBOARD_CONFIGMAP} (Grafana dashboard) in namespace {namespace}")
        return Outcome.planned(f"{stack}: " + ", ".join(c.ref for c in releases))

    helm = Helm(ctx.local, kubeconfig=ctx.kubeconfig, timeout=timeout)
    version = helm.require()
    ctx.ui.detail(f"helm {version}")
    watch = rollout_watch(ctx, namespace)
    done: list[Applied] = []
    for chart in releases:
        done.append(helm.ensure(chart, namespace, values[chart.release], ctx.ui, watch))
    done += Kubectl(ctx.local, kubeconfig=ctx.kubeconfig).apply([dashboard], "the Grafana dashboard")

    # printed by the up runner after its summary, where the user looks last
    ctx.facts["grafana_access"] = access_lines(ctx, stack, namespace) + [storage_line(storage)]
    summary = ", ".join(f"{a.name} {a.action}" for a in done)
    if any(a.changed for a in done):
        return Outcome.changed(summary)
    return Outcome.unchanged(f"{stack} already installed ({', '.join(c.ref for c in releases)}); dashboard unchanged")

"""`kaudit up` phase stack: Loki and Grafana with Helm, plus the audit dashboard.

--stack loki-stack (default, as the seed): grafana/loki-stack with Grafana and its Loki
datasource, Promtail disabled (the collector phase installs one). Deprecated, Loki 2.6.1.
--stack loki: the community Loki chart (monolithic, filesystem, schema v13, structured
metadata) and the Grafana chart with a Loki datasource.
"""

from __future__ import annotations

from typing import Any, Optional

from kaudit.core import charts
from kaudit.core import render
from kaudit.core import stack_values
from kaudit.core.errors import UsageError
from kaudit.adapters.helm import Applied, Helm, Kubectl, parse_timeout, upgrade_install_argv
from kaudit.adapters.hosts.base import display_command
from kaudit.engine.phases import detect as detect_phase
from kaudit.adapters.rollout_watch import DEFAULT_INTERVAL, RolloutWatch
from kaudit.engine.workflow import Outcome, UpContext


def option(ctx: UpContext, name: str, default: Any) -> Any:
    value = getattr(ctx.options, name, None)
    return default if value is None else value


def stack_name(ctx: UpContext) -> str:
    stack = str(option(ctx, "stack", "loki-stack"))
    if stack not in charts.STACKS:
        raise UsageError(f"--stack: unknown stack {stack!r}", f"choose one of: {', '.join(charts.STACKS)}")
    return stack


def record_facts(ctx: UpContext, stack: str, namespace: str, scalable: Any = None) -> None:
    """What later phases (collector, verify) need to know about the stack."""
    version, sm = charts.LOKI_VERSIONS[stack]
    access = charts.GRAFANA_ACCESS[stack]
    # a scalable Loki is reached through the chart's gateway
    service, port = (charts.LOKI_GATEWAY_SERVICE, charts.LOKI_GATEWAY_PORT) if scalable else (charts.LOKI_SERVICE, charts.LOKI_PORT)
    ctx.facts.update(
        stack=stack,
        namespace=namespace,
        loki_service=service,
        loki_port=port,
        loki_url=f"http://{service}.{namespace}.svc:{port}",
        loki_version=version,
        loki_structured_metadata=sm,
        grafana_service=access.service,
        grafana_port=access.port,
        grafana_secret=access.secret,
    )
    if scalable is not None:
        # the shipper cuts events at Loki's line limit: tell it the sized one
        ctx.facts["loki_max_line_bytes"] = scalable.sizing.max_line_size_kb * 1024


def access_lines(ctx: UpContext, stack: str, namespace: str) -> list[str]:
    access = charts.GRAFANA_ACCESS[stack]
    kc = f" --kubeconfig {ctx.kubeconfig}" if ctx.kubeconfig else ""
    return [
        "Grafana: http://localhost:3000 (dashboard \"Kubernetes audit\") once this runs:",
        f"  kubectl{kc} -n {namespace} port-forward svc/{access.service} 3000:{access.port}",
        "Log in as admin; the password is:",
        f"  kubectl{kc} -n {namespace} get secret {access.secret} -o jsonpath='{{.data.{access.secret_key}}}' | base64 -d; echo",
    ]


def storage_line(storage: Optional[stack_values.LokiStorage]) -> str:
    if storage is None:
        return "Loki keeps its data in an emptyDir: it lives as long as the Loki pod (--loki-storage-class NAME keeps it on a volume)."
    where = f"StorageClass {storage.storage_class}" if storage.storage_class else "the cluster's default StorageClass"
    return f"Loki keeps its data on a {storage.size} PersistentVolumeClaim of {where}."


def rollout_watch(ctx: UpContext, namespace: str) -> RolloutWatch:
    interval = option(ctx, "watch_interval", None)
    return RolloutWatch(ctx.local, namespace, kubeconfig=ctx.kubeconfig, ui=ctx.ui, interval=float(interval or DEFAULT_INTERVAL))


def run(ctx: UpContext) -> Outcome:
    external = option(ctx, "loki_url", None)
    if external:
        return Outcome.skipped(f"--loki-url: the collector ships to the Loki at {external}; no stack installed")
    stack = stack_name(ctx)
    namespace = str(option(ctx, "namespace", charts.NAMESPACE))
    timeout = parse_timeout(option(ctx, "helm_timeout", None))
    releases = charts.STACKS[stack]
    # render everything first: a template problem stops the phase before anything runs
    storage = option(ctx, "loki_storage", None)
    scalable = option(ctx, "loki_scalable", None)
    values_text = stack_values.stack_values(stack, namespace, storage, scalable)
    values = {rel: render.parse_yaml(text, f"{rel} values") for rel, text in values_text.items()}
    values = detect_phase.with_ruler(ctx, stack, values)  # the Loki ruler, unless --no-detect
    dashboard = render.parse_yaml(stack_values.render_dashboard_configmap(namespace), "dashboard ConfigMap")
    credentials = option(ctx, "storage_credentials", None)
    secret = scalable_secret(scalable, credentials, namespace)
    record_facts(ctx, stack, namespace, scalable)
    if scalable is not None:
        for line in scalable_lines(scalable, credentials):
            ctx.ui.info(line)
        for w in scalable.sizing.warnings:
            ctx.ui.warn(w)

    if stack == "loki-stack":
        ctx.ui.warn(
            "grafana/loki-stack is deprecated and runs Loki 2.6.1 (no structured metadata); "
            "--stack loki installs Loki 3 from the community chart"
        )

    if ctx.dry_run:
        if secret is not None:
            # the keys, never the values
            ctx.ui.info(f"would apply: secret/{secret['metadata']['name']} in namespace {namespace} (keys {', '.join(sorted(secret['data']))})")
        for chart in releases:
            ctx.ui.info(f"would run: {display_command(upgrade_install_argv(chart, namespace, timeout, ctx.kubeconfig))}")
            ctx.ui.detail(values_text[chart.release])
        ctx.ui.info(storage_line(storage) if scalable is None else object_storage_line(scalable))
        ctx.ui.info(f"would apply: configmap/{charts.DASHBOARD_CONFIGMAP} (Grafana dashboard) in namespace {namespace}")
        return Outcome.planned(f"{stack}: " + ", ".join(c.ref for c in releases))

    helm = Helm(ctx.local, kubeconfig=ctx.kubeconfig, timeout=timeout)
    version = helm.require()
    ctx.ui.detail(f"helm {version}")
    watch = rollout_watch(ctx, namespace)
    done: list[Applied] = []
    if secret is not None:
        # before the chart: Loki's pods read their credentials from it when they start
        done += Kubectl(ctx.local, kubeconfig=ctx.kubeconfig).apply([namespace_manifest(namespace), secret], "the object storage Secret")
    for chart in releases:
        done.append(helm.ensure(chart, namespace, values[chart.release], ctx.ui, watch))
    done += Kubectl(ctx.local, kubeconfig=ctx.kubeconfig).apply([dashboard], "the Grafana dashboard")

    # printed by the up runner after its summary, where the user looks last
    ctx.facts["grafana_access"] = access_lines(ctx, stack, namespace) + [storage_line(storage) if scalable is None else object_storage_line(scalable)]
    summary = ", ".join(f"{a.name} {a.action}" for a in done)
    if any(a.changed for a in done):
        return Outcome.changed(summary)
    return Outcome.unchanged(f"{stack} already installed ({', '.join(c.ref for c in releases)}); dashboard unchanged")


# -- simple-scalable / distributed (kaudit.core.loki_scalable) ----------------------------


def namespace_manifest(namespace: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}


def scalable_secret(scalable: Any, credentials: Any, namespace: str) -> Optional[dict]:
    """The Secret kaudit applies for the object storage credentials (None: the user's own, or none)."""
    from kaudit.core import loki_scalable

    if scalable is None or credentials is None:
        return None
    return loki_scalable.secret_manifest(scalable.storage.secret, namespace, credentials.data, charts.MANAGED_BY_LABEL)


def scalable_lines(scalable: Any, credentials: Any) -> list[str]:
    """What the user should know before a scalable Loki is installed: the sizing and its arithmetic."""
    s = scalable.storage
    lines = [f"Loki {scalable.mode} sizing (docs/scale.md explains each figure):"]
    lines += [f"  {line}" for line in scalable.sizing.explain]
    if s.kind == "minio":
        lines.append(
            "MinIO: the loki chart's MinIO subchart is deprecated, announced for removal on 2026-10-31 (its templates/validate.yaml); "
            "kaudit sets ignoreMinioDeprecation to install it from the pinned chart, and a later chart may not have it. "
            "Fine for a laptop; use --object-storage s3|gcs for anything you keep."
        )
    if credentials is not None:
        lines.append(f"object storage credentials: from {credentials.source}, into secret/{s.secret} (keys {', '.join(credentials.keys())})")
    elif s.secret:
        lines.append(f"object storage credentials: from your secret/{s.secret}")
    else:
        lines.append("object storage credentials: none given: Loki uses its pods' own identity (IRSA, Workload Identity)")
    if scalable.sizing.replicas.get("write", scalable.sizing.replicas.get("ingester", 1)) > 1:
        lines.append("the chart keeps replicas of a target on different nodes: on a one-node VM add --loki-replicas 1")
    return lines


def object_storage_line(scalable: Any) -> str:
    s = scalable.storage
    where = "the chart's MinIO" if s.kind == "minio" else f"{s.kind.upper()} bucket {s.bucket_chunks}" + ("" if s.bucket_ruler == s.bucket_chunks else f" (ruler: {s.bucket_ruler})")
    tail = "" if scalable.persistence else "; write-ahead logs on emptyDir (--loki-storage-class keeps them on claims)"
    return f"Loki ({scalable.mode}) keeps its chunks and index in {where}{tail}."

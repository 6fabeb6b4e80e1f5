"""`kaudit render-promtail`: print the config that collects the audit log (stdout = the config)."""

from __future__ import annotations

from typing import Optional

import typer

FORMAT_HELP = (
    "scrape-config (promtail scrape_configs list), promtail-config (a whole promtail.yaml), "
    "helm-values (grafana/promtail chart values), alloy (Grafana Alloy config)."
)


def render_promtail(
    ctx: typer.Context,
    format: str = typer.Option("scrape-config", "--format", "-f", help=FORMAT_HELP),
    log_path: Optional[str] = typer.Option(
        None, "--log-path", help="The exact active audit log file, never a glob (default: the path `kaudit up` configures)."
    ),
    loki_url: str = typer.Option("http://loki.kaudit.svc:3100", "--loki-url", help="Loki base URL or push URL; the config always gets the push URL."),
    job: str = typer.Option("kubernetes-audit", "--job", help="Value of the job label."),
    labels: Optional[str] = typer.Option(None, "--labels", help="Extra static labels: k=v,k2=v2."),
    dynamic_labels: Optional[str] = typer.Option(
        None, "--dynamic-labels", help="Event fields used as labels (bounded ones only). Default: audit_level,verb,stage."
    ),
    tenant: Optional[str] = typer.Option(None, "--tenant", help="Loki tenant (X-Scope-OrgID)."),
    node: Optional[str] = typer.Option(None, "--node", help="Literal node label value (default: the collector pod's node, from $HOSTNAME)."),
    style: str = typer.Option("dotted", "--style", help="dotted: one json stage with dotted paths; seed: nested `source:` stages."),
    structured_metadata: str = typer.Option(
        "off", "--structured-metadata", help="on: send high-cardinality fields as structured metadata (Loki 3+ only); off: Loki 2.x."
    ),
    nest_under_promtail: bool = typer.Option(False, "--nest-under-promtail", help="helm-values: nest under `promtail:` for loki-stack."),
    cluster: Optional[str] = typer.Option(None, "--cluster", metavar="NAME", help="Value of the cluster label (as kaudit up --cluster-name sets it)."),
) -> None:
    """Render the configuration that ships the audit log to Loki.

    \b
    Examples:
      kaudit render-promtail
      kaudit render-promtail --format helm-values --loki-url http://loki:3100
      kaudit render-promtail --format alloy --cluster prod-eu
    """
    from kaudit.core import render
    from kaudit.core.errors import UsageError
    from kaudit.shipper import fields

    if structured_metadata not in ("on", "off"):
        raise UsageError(f"--structured-metadata: {structured_metadata!r} is not on or off")
    if nest_under_promtail and format != "helm-values":
        raise UsageError("--nest-under-promtail applies only to --format helm-values")
    dyn = tuple(x.strip() for x in dynamic_labels.split(",") if x.strip()) if dynamic_labels else fields.DEFAULT_LABELS
    settings = render.CollectorSettings(
        log_path=log_path or render.DEFAULT_LOG_PATH,
        loki_url=loki_url,
        job=job,
        labels=render.parse_label_pairs(labels),
        dynamic_labels=dyn,
        tenant=tenant,
        style=style,
        structured_metadata=structured_metadata == "on",
        nest_under_promtail=nest_under_promtail,
        node=node,
        cluster=cluster,
    )
    typer.echo(render.render_collector_config(format, settings), nl=False)


def register(app: typer.Typer) -> None:
    app.command("render-promtail")(render_promtail)

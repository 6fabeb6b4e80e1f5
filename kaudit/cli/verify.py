"""`kaudit verify` (prove the pipeline end to end) and `kaudit query` (who did what)."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from kaudit.cli.audit_options import (
    AuditFlagOpt,
    ModeOpt,
    AuditLogPathOpt,
    MaxAgeOpt,
    MaxBackupOpt,
    MaxSizeOpt,
    PolicyPathOpt,
)
from kaudit.core.audit_settings import (
    DEFAULT_LOG_PATH,
    DEFAULT_MAXAGE,
    DEFAULT_MAXBACKUP,
    DEFAULT_MAXSIZE,
    DEFAULT_POLICY_PATH,
)
from kaudit.cli.loki_options import (
    ClusterOpt,
    LokiCaFileOpt,
    LokiPasswordFileOpt,
    LokiTenantOpt,
    LokiTokenFileOpt,
    LokiUsernameOpt,
)
from kaudit.cli.options import AcceptNewHostKeyOpt, HostOpt, KnownHostsOpt, RootfsOpt, SshKeyOpt
from kaudit.engine.targets import HostOptions
from kaudit.core.errors import UsageError

POLICY_PROFILES = ("gce", "gce-modern")  # kaudit.core.policy.PROFILES, without importing ruamel here


class Output(str, Enum):
    table = "table"
    json = "json"


class Collector(str, Enum):
    auto = "auto"
    promtail = "promtail"
    shipper = "shipper"
    alloy = "alloy"
    none = "none"


class Decision(str, Enum):
    allow = "allow"
    forbid = "forbid"


LokiUrlOpt = Annotated[
    Optional[str],
    typer.Option(
        "--loki-url",
        envvar="KAUDIT_LOKI_URL",
        help="Loki's base URL. Default: a port-forward to svc/loki in namespace kaudit that kaudit opens and closes.",
        show_default=False,
    ),
]
KubeconfigOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--kubeconfig",
        help="Run kubectl on this machine with this kubeconfig. Default: kubectl on the node with /etc/kubernetes/admin.conf.",
        show_default=False,
    ),
]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table (rich on a terminal, plain text elsewhere) or json.")]
JobOpt = Annotated[str, typer.Option("--job", help="The job label the collector gives audit streams.")]
LabelOpt = Annotated[
    Optional[List[str]],
    typer.Option(
        "--label",
        help="A field the collector sets as a stream label (repeatable). Default: audit_level, verb, stage.",
        show_default=False,
    ),
]


def _labels(label: Optional[List[str]]) -> tuple[str, ...]:
    from kaudit.shipper import fields as F

    labels = tuple(label) if label else F.DEFAULT_LABELS
    try:
        F.check_label_names(list(labels))
    except ValueError as e:
        raise UsageError(f"--label: {e}") from None
    return labels


def _validate_url(url: Optional[str]) -> None:
    if url is not None and not url.startswith(("http://", "https://")):
        raise UsageError(f"--loki-url {url!r} is not an http(s) URL", "write it like http://127.0.0.1:3100")


def verify(
    ctx: typer.Context,
    host: HostOpt = None,
    rootfs: RootfsOpt = None,
    ssh_key: SshKeyOpt = None,
    ssh_accept_new_host_key: AcceptNewHostKeyOpt = False,
    ssh_known_hosts: KnownHostsOpt = None,
    loki_url: LokiUrlOpt = None,
    loki_tenant: LokiTenantOpt = None,
    loki_username: LokiUsernameOpt = None,
    loki_password_file: LokiPasswordFileOpt = None,
    loki_token_file: LokiTokenFileOpt = None,
    loki_ca_file: LokiCaFileOpt = None,
    cluster: Annotated[
        Optional[str], typer.Option("--cluster", metavar="NAME", help="The cluster label the probe's event must carry (kaudit up --cluster-name).", show_default=False)
    ] = None,
    inventory: Annotated[
        Optional[Path], typer.Option("--file", "-f", metavar="FILE", help="Verify every cluster of an inventory (docs/inventory.md).", show_default=False)
    ] = None,
    parallel: Annotated[int, typer.Option("--parallel", min=1, help="With -f: how many clusters at once.")] = 4,
    kubeconfig: KubeconfigOpt = None,
    audit_log: Annotated[
        Optional[str],
        typer.Option("--audit-log", help="The audit log file to check. Default: the running apiserver's --audit-log-path.", show_default=False),
    ] = None,
    policy_profile: Annotated[
        Optional[str], typer.Option("--policy-profile", help="The policy profile the node should carry: gce or gce-modern.", show_default="gce")
    ] = None,
    policy_file: Annotated[
        Optional[Path], typer.Option("--policy-file", help="Your own policy file (on this machine) the node should carry.", show_default=False)
    ] = None,
    collector: Annotated[
        Collector, typer.Option("--collector", help="The collector to find on every control-plane node; auto finds whichever runs; none skips.")
    ] = Collector.auto,
    timeout: Annotated[str, typer.Option("--timeout", help="How long the probe waits for its event in Loki.")] = "60s",
    output: OutputOpt = Output.table,
    job: JobOpt = "kubernetes-audit",
    label: LabelOpt = None,
    max_streams: Annotated[
        int, typer.Option("--max-streams", min=1, help="More audit streams than this in the last hour fail the labels check.")
    ] = 1000,
    print_schema: Annotated[bool, typer.Option("--print-schema", help="Print the JSON Schema of --output json and exit.")] = False,
    audit_log_path: AuditLogPathOpt = DEFAULT_LOG_PATH,
    policy_path: PolicyPathOpt = DEFAULT_POLICY_PATH,
    audit_log_maxsize: MaxSizeOpt = DEFAULT_MAXSIZE,
    audit_log_maxbackup: MaxBackupOpt = DEFAULT_MAXBACKUP,
    audit_log_maxage: MaxAgeOpt = DEFAULT_MAXAGE,
    audit_flag: AuditFlagOpt = None,
    mode: ModeOpt = "log",
) -> int:
    """Prove the audit pipeline end to end: node, manifest, policy, apiserver, log, collector, Loki, a probe, labels.

    Exits 0 when no check failed, 4 otherwise. The audit flag options say what the
    node should carry (the same options as `kaudit up`).

    \b
    Examples:
      kaudit verify
      kaudit verify --host ssh://root@cp1 --loki-url http://cp1:3100 -o json
      kaudit verify -f clusters.yaml
    """
    import json

    from kaudit.cli import state
    from kaudit.core.audit_settings import audit_spec_from_options
    from kaudit.core.units import parse_duration
    from kaudit.engine.verify import session

    if print_schema:
        from kaudit.engine.verify.schema import SCHEMA

        print(json.dumps(SCHEMA, indent=2))
        return 0
    ui = state(ctx).ui
    if policy_profile is not None and policy_file is not None:
        raise UsageError("--policy-profile and --policy-file exclude each other", "pass the one the node should carry")
    if policy_profile is not None and policy_profile not in POLICY_PROFILES:
        raise UsageError(f"--policy-profile {policy_profile!r} is not a profile", f"choose one of: {', '.join(POLICY_PROFILES)}")
    if policy_file is not None and not policy_file.is_file():
        raise UsageError(f"--policy-file {policy_file}: " + ("is a directory" if policy_file.is_dir() else "no such file"), "pass the policy file you installed with kaudit up --policy-file")
    if kubeconfig is not None and not kubeconfig.is_file():
        raise UsageError(f"--kubeconfig {kubeconfig}: no such file")
    _validate_url(loki_url)
    from kaudit.cli import loki_options

    wait = parse_duration(timeout, field="--timeout")
    spec = audit_spec_from_options(audit_log_path, policy_path, audit_log_maxsize, audit_log_maxbackup, audit_log_maxage, audit_flag, mode)
    creds = loki_options.credentials(loki_username, loki_password_file, loki_token_file, loki_ca_file)
    cluster = loki_options.cluster(cluster)
    if inventory is not None:
        from kaudit.engine.fleet import verify_inventory

        if host or rootfs or cluster:
            raise UsageError("-f takes the hosts and cluster names from the inventory", "leave out --host, --rootfs and --cluster")
        base = session.Settings(
            spec=spec, policy_profile=policy_profile, policy_file=policy_file, audit_log=audit_log, kubeconfig=kubeconfig,
            loki_url=loki_url, loki_tenant=loki_tenant, loki_auth=creds, collector=collector.value, timeout=wait,
            job=job, labels=_labels(label), max_streams=max_streams,
        )
        return verify_inventory(ui, inventory, base, parallel=parallel, as_json=output is Output.json)
    hosts = HostOptions.build(host, rootfs, ssh_key, ssh_accept_new_host_key, ssh_known_hosts)
    for spec_name in hosts.hosts:
        if rootfs is not None and spec_name != "local":
            raise UsageError(f"--rootfs works only with --host local, not {spec_name!r}")
        hosts.open(spec_name).close()  # a bad --host or --rootfs is a usage error, not a failed check; nothing connects yet

    settings = session.Settings(
        spec=spec,
        policy_profile=policy_profile,
        policy_file=policy_file,
        audit_log=audit_log,
        kubeconfig=kubeconfig,
        loki_url=loki_url,
        loki_tenant=loki_tenant,
        loki_auth=creds,
        cluster=cluster,
        collector=collector.value,
        timeout=wait,
        job=job,
        labels=_labels(label),
        max_streams=max_streams,
    )
    nodes = [session.Node(name, lambda name=name: hosts.open(name)) for name in hosts.hosts]
    results, doc = session.verify(settings, nodes, ui=ui, stream=sys.stdout, as_json=output is Output.json)
    return doc["exit_code"]


def query(
    ctx: typer.Context,
    user: Annotated[Optional[str], typer.Option("--user", help="user.username, exactly.", show_default=False)] = None,
    verb: Annotated[Optional[str], typer.Option("--verb", help="get, list, watch, create, update, patch, delete…", show_default=False)] = None,
    resource: Annotated[Optional[str], typer.Option("--resource", help="objectRef.resource, e.g. secrets.", show_default=False)] = None,
    namespace: Annotated[Optional[str], typer.Option("--namespace", "-n", help="objectRef.namespace.", show_default=False)] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="objectRef.name.", show_default=False)] = None,
    decision: Annotated[Optional[Decision], typer.Option("--decision", help="The authorizer's decision.", show_default=False)] = None,
    code: Annotated[Optional[int], typer.Option("--code", help="responseStatus.code, e.g. 403.", min=100, max=599, show_default=False)] = None,
    since: Annotated[str, typer.Option("--since", help="How far back to look.")] = "1h",
    limit: Annotated[int, typer.Option("--limit", help="At most this many events (newest first).", min=1, max=5000)] = 100,
    cluster: ClusterOpt = None,
    loki_url: LokiUrlOpt = None,
    loki_tenant: LokiTenantOpt = None,
    loki_username: LokiUsernameOpt = None,
    loki_password_file: LokiPasswordFileOpt = None,
    loki_token_file: LokiTokenFileOpt = None,
    loki_ca_file: LokiCaFileOpt = None,
    kubeconfig: KubeconfigOpt = None,
    job: JobOpt = "kubernetes-audit",
    label: LabelOpt = None,
    output: OutputOpt = Output.table,
    logql: Annotated[bool, typer.Option("--logql", help="Print the LogQL query and exit.")] = False,
) -> int:
    """Who did what: audit events from Loki, filtered, as a table (time, user, verb, resource, namespace/name, code, decision).

    \b
    Examples:
      kaudit query --resource secrets --verb get --since 24h
      kaudit query --user system:anonymous --decision allow
      kaudit query --cluster prod-eu --verb delete --logql
    """
    from kaudit.cli import state
    from kaudit.core.query import Filters, build_logql
    from kaudit.core.units import parse_duration

    ui = state(ctx).ui
    labels = _labels(label)
    filters = Filters(
        user=user, verb=verb, resource=resource, namespace=namespace, name=name,
        decision=decision.value if decision else None, code=code,
    )
    from kaudit.cli import loki_options

    plan = build_logql(filters, job=job, labels=labels, cluster=loki_options.cluster(cluster))
    if logql:
        print(plan.logql)
        return 0
    window = parse_duration(since, field="--since")
    if window <= 0:
        raise UsageError(f"--since {since!r} must be longer than zero")
    _validate_url(loki_url)
    creds = loki_options.credentials(loki_username, loki_password_file, loki_token_file, loki_ca_file)

    from kaudit.engine.verify import session

    rows, skipped = session.query_rows(plan.logql, window, limit, loki_url=loki_url, tenant=loki_tenant, kubeconfig=kubeconfig, ui=ui, auth=creds)
    session.render_rows(rows, plan.logql, sys.stdout, as_json=output is Output.json)
    ui.info(f"{len(rows)} event(s) in the last {since}" + (f"; {skipped} line(s) were not audit events" if skipped else ""))
    return 0


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
    app.command("query")(query)

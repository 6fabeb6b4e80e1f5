"""`kaudit detect`: threat detection rules over audit logs on disk, or over Loki."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from kaudit.cli.loki_options import (
    LokiCaFileOpt,
    LokiPasswordFileOpt,
    LokiTenantOpt,
    LokiTokenFileOpt,
    LokiUsernameOpt,
)
from kaudit.core.errors import UsageError


class DetectOutput(str, Enum):
    text = "text"
    json = "json"
    sarif = "sarif"


def _policy(profile: Optional[str], policy_file: Optional[Path], ui):
    """(source, policy_eval.Policy), loaded as kaudit policy simulate loads it."""
    from kaudit.cli.simulate import PROFILE_NAMES, load_policies

    if profile is not None and policy_file is not None:
        raise UsageError("--profile and --policy exclude each other", "give the packaged profile or your own policy file")
    if policy_file is not None and not policy_file.is_file():
        raise UsageError(f"--policy {policy_file}: no such file", "give the audit policy file the apiserver uses")
    name = profile or "gce"
    if policy_file is None and name not in PROFILE_NAMES:
        raise UsageError(f"--profile {name!r} is not a profile", f"choose one of: {', '.join(PROFILE_NAMES)}")
    warnings: list[str] = []
    ((pol, source),) = load_policies([] if policy_file else [name], [str(policy_file)] if policy_file else [], warnings)
    for w in warnings:
        ui.warn(w)
    return source, pol


def _list(rules, policy_name: str, policy, output: DetectOutput, logql: bool, cluster: Optional[str]) -> int:
    import json

    from kaudit.core.detect.logql import compile_rule
    from kaudit.core.detect.policy_check import never_fires
    from kaudit.core.detect.report import rule_dict

    rows = []
    for r in rules:
        c = compile_rule(r, cluster=cluster)
        rows.append((r, never_fires(r, policy), c))
    if output is DetectOutput.json:
        doc = {"policy": policy_name, "cluster": cluster, "rules": [
            {**rule_dict(r), "never_fires": why, "logql": c.query, "alert": c.expr, "logql_approximations": c.approximations}
            for r, why, c in rows
        ]}
        print(json.dumps(doc, indent=2))
        return 0
    if output is DetectOutput.sarif:
        raise UsageError("--list prints text or json, not sarif")
    width = max(len(r.id) for r, _, _ in rows)
    for r, why, c in rows:
        flag = "" if why is None else "  NEVER FIRES"
        print(f"{r.id:<{width}}  {r.severity:<8} {r.level:<15} {r.mitre:<9} {r.title}{flag}")
        if why:
            print(f"{'':<{width}}  under {policy_name}: {why}")
        if logql:
            print(f"{'':<{width}}  logql: {c.query}")
            print(f"{'':<{width}}  alert: {c.expr}")
        if logql and c.approximations:
            print(f"{'':<{width}}  approximated: {'; '.join(c.approximations)}")
    never = [r.id for r, why, _ in rows if why]
    print(f"{len(rows)} rule(s); under {policy_name} {len(never)} can never fire" + (f": {', '.join(never)}" if never else ""),
          file=sys.stderr)
    return 0


def detect(
    ctx: typer.Context,
    log: Annotated[
        Optional[List[str]],
        typer.Option("--log", help="An audit log file, a directory of them (rotated and .gz included), or - for stdin. Repeatable.", show_default=False),
    ] = None,
    loki_url: Annotated[
        Optional[str], typer.Option("--loki-url", envvar="KAUDIT_LOKI_URL", help="Run the rules as LogQL over this Loki instead (a retro-hunt).", show_default=False)
    ] = None,
    since: Annotated[str, typer.Option("--since", help="With --loki-url: how far back to look.")] = "24h",
    list_rules: Annotated[bool, typer.Option("--list", help="List the rules, and which ones the audit policy can never fire.")] = False,
    logql: Annotated[bool, typer.Option("--logql", help="With --list: also print each rule's LogQL and alert expression.")] = False,
    output: Annotated[DetectOutput, typer.Option("--output", "-o", help="text, json or sarif (SARIF 2.1.0).")] = DetectOutput.text,
    rules_files: Annotated[
        Optional[List[Path]], typer.Option("--rules", help="A YAML file of your own rules (same schema). Repeatable; a rule with a packaged id replaces it.", show_default=False)
    ] = None,
    disable: Annotated[
        Optional[List[str]], typer.Option("--disable", help="Rule ids to leave out (repeatable, or comma-separated).", show_default=False)
    ] = None,
    profile: Annotated[
        Optional[str], typer.Option("--profile", help="With --list: the policy profile installed, gce (default) or gce-modern.", show_default=False)
    ] = None,
    policy_file: Annotated[
        Optional[Path], typer.Option("--policy", help="With --list: your own audit policy file instead of a profile.", show_default=False)
    ] = None,
    cluster: Annotated[
        Optional[str], typer.Option("--cluster", metavar="NAME", show_default=False,
                                    help="With --loki-url, or --list --logql: only this cluster's events (the cluster label kaudit up sets).")
    ] = None,
    loki_tenant: LokiTenantOpt = None,
    loki_username: LokiUsernameOpt = None,
    loki_password_file: LokiPasswordFileOpt = None,
    loki_token_file: LokiTokenFileOpt = None,
    loki_ca_file: LokiCaFileOpt = None,
    job: Annotated[str, typer.Option("--job", help="The job label the collector gives audit streams.")] = "kubernetes-audit",
    limit: Annotated[int, typer.Option("--limit", help="With --loki-url: at most this many lines per rule.", min=1, max=5000)] = 1000,
) -> int:
    """Run kaudit's detection rules over audit logs or Loki and print what they found.

    Did anything suspicious happen? Findings are grouped by rule, newest first.
    Exit 0: nothing fired; 3: something did.

    \b
    Examples:
      kaudit detect --log /var/log/kubernetes-audit/
      kaudit detect --loki-url http://loki:3100 --since 24h --cluster lab -o sarif
      kaudit detect --list --profile gce-modern
    """
    from kaudit.cli import loki_options, state
    from kaudit.engine.offline_detect import load_rules, print_report

    ui = state(ctx).ui
    cluster = loki_options.cluster(cluster)
    rules = load_rules([str(p) for p in rules_files or []], disable or [])
    if list_rules:
        name, pol = _policy(profile, policy_file, ui)
        return _list(rules, name, pol, output, logql, cluster)
    if profile is not None or policy_file is not None:
        raise UsageError("--profile and --policy go with --list", "kaudit detect --list --profile gce-modern")
    if bool(log) == bool(loki_url):
        raise UsageError("give --log FILE|DIR|- or --loki-url URL (one of them)", "kaudit detect --log /var/log/kubernetes-audit/audit.log")
    if not rules:
        raise UsageError("every rule is disabled", "drop some --disable ids")

    if log:
        given = [f for f, v in (("--cluster", cluster), ("--loki-tenant", loki_tenant), ("--loki-username", loki_username),
                                ("--loki-password-file", loki_password_file), ("--loki-token-file", loki_token_file),
                                ("--loki-ca-file", loki_ca_file)) if v is not None]
        if given:
            raise UsageError(f"{given[0]} goes with --loki-url: a log file has no Loki labels or credentials",
                             "leave it out, or run the rules over Loki: kaudit detect --loki-url URL " + given[0] + " ...")
        from kaudit.engine.offline_detect import detect_logs

        findings, events = detect_logs(rules, log)
        sources = ", ".join(log)
    else:
        from kaudit.engine.hunt import hunt
        from kaudit.core.units import parse_duration

        if not loki_url.startswith(("http://", "https://")):
            raise UsageError(f"--loki-url {loki_url!r} is not an http(s) URL", "write it like http://127.0.0.1:3100")
        window = parse_duration(since, field="--since")
        if window <= 0:
            raise UsageError(f"--since {since!r} must be longer than zero")
        creds = loki_options.credentials(loki_username, loki_password_file, loki_token_file, loki_ca_file)
        findings = hunt(loki_url, rules, window_s=window, limit=limit, job=job, tenant=loki_tenant, cluster=cluster, auth=creds)
        events = -1
        sources = f"{loki_url}{f' cluster {cluster}' if cluster else ''} (last {since})"

    return print_report(findings, events=events, rules=rules, sources=sources, output=output.value, ui=ui)


def register(app: typer.Typer) -> None:
    app.command("detect")(detect)

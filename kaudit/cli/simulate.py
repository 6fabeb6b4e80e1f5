"""`kaudit policy simulate`: what candidate audit policies would write for a recorded log."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, List, Optional, TextIO

import typer

from kaudit.core.errors import ExitCode, KauditError, UsageError

PROFILE_NAMES = ("gce", "gce-modern")


class Output(str, Enum):
    table = "table"
    json = "json"


def simulate(
    ctx: typer.Context,
    log: Annotated[List[str], typer.Option("--log", "-l", metavar="FILE|DIR|-", show_default=False,
                                           help="Recorded audit log: a file (.gz too), a directory of rotated logs, or - for stdin. Repeatable.")],
    policy: Annotated[Optional[List[str]], typer.Option("--policy", metavar="FILE", show_default=False,
                                                        help="A candidate policy file. Repeatable.")] = None,
    profile: Annotated[Optional[List[str]], typer.Option("--profile", "-p", metavar="NAME", show_default=False,
                                                         help=f"A packaged policy: {' or '.join(PROFILE_NAMES)}. Repeatable. Profiles come before --policy files; the first policy is the baseline the others are compared with. Default (neither given): gce and gce-modern.")] = None,
    output: Annotated[Output, typer.Option("--output", "-o", help="table (rich on a terminal, plain text elsewhere) or json (schema: docs/simulate.md).")] = Output.table,
    html: Annotated[Optional[str], typer.Option("--html", metavar="FILE", show_default=False,
                                                help="Also write a self-contained HTML report with a bar chart per policy.")] = None,
) -> int:
    """Simulate audit policies on a recorded audit log: events and bytes each would write.

    Each event is evaluated as kube-apiserver evaluates its policy (first matching
    rule wins) and re-encoded at the level the policy gives it. Events recorded at a
    lower level than a rule asks for are counted apart as unjudged.

    \b
    Examples:
      kaudit policy simulate --log /var/log/kubernetes/audit/
      kaudit policy simulate --log audit.log --profile gce --policy mine.yaml
      kaudit policy simulate --log audit.log.gz -o json --html report.html
    """
    from kaudit.cli import state

    ui = state(ctx).ui
    for name in profile or ():
        if name not in PROFILE_NAMES:
            raise UsageError(f"--profile {name!r} is not a profile; choose one of: {', '.join(PROFILE_NAMES)}",
                             "kaudit policy simulate --help lists the options")
    for path in log:
        if path != "-" and not Path(path).exists():
            raise UsageError(f"--log {path}: no such file or directory",
                             "give an audit log file, a directory of rotated logs, or - for stdin")
    if log.count("-") > 1:
        raise UsageError("--log - (stdin) given twice", "read stdin once")
    warnings: list[str] = []
    policies = load_policies(profile or [], policy or [], warnings)
    for w in warnings:
        ui.warn(w)

    from kaudit.adapters.audit_files import read_lines
    from kaudit.core.simulate import Simulation

    sim = Simulation(policies)
    with ui.step(f"simulating {len(policies)} polic{'y' if len(policies) == 1 else 'ies'} on {', '.join(log)}"):
        sim.add_lines(read_lines(log))
    if sim.events == 0:
        what = f"{sim.skipped} lines, none an audit Event" if sim.skipped else "it is empty"
        raise KauditError(f"{', '.join(log)}: no audit events to simulate ({what})",
                          "give the log kube-apiserver writes with --audit-log-path (one JSON Event per line)")
    if sim.skipped:
        ui.warn(f"skipped {sim.skipped} line(s) that are not audit events, first: {sim.first_skips[0]}")
    doc = sim.report(list(log))
    _add_blind_detections(doc, [pol for pol, _source in policies])
    if html:
        from kaudit.cli.manifest import _write_local
        from kaudit.core.simulate_html import render_html

        _write_local(html, render_html(doc))
        ui.ok(f"wrote the HTML report to {html}")
    if output == Output.json:
        import json

        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        render_tables(doc, sys.stdout)
    sys.stdout.flush()
    return ExitCode.OK


def _add_blind_detections(doc: dict, policies: list) -> None:
    """Each policy's detection rules that can never fire: the answer `kaudit detect --list` gives."""
    from kaudit.adapters.rule_cache import packaged_rules
    from kaudit.core.detect.policy_check import never_firing

    rules = packaged_rules()
    for entry, pol in zip(doc["policies"], policies):
        entry["detections_never_fire"] = [{"id": r.id, "title": r.title, "level": r.level, "reason": why}
                                          for r, why in never_firing(rules, pol)]


def load_policies(profiles: list[str], files: list[str], warnings: list[str]) -> list:
    """(policy_eval.Policy, source) for each profile, then each file, named uniquely; a policy
    kube-apiserver would refuse raises the validator's error (also for kaudit detect --list)."""
    from kaudit.core.policy import policy_text
    from kaudit.core.policy_eval import load_policy

    if not profiles and not files:
        profiles = list(PROFILE_NAMES)
    out, names = [], set()
    sources = [(p, f"profile {p}", None) for p in profiles] + [(Path(f).stem, f, f) for f in files]
    for name, source, path in sources:
        if path is None:
            text = policy_text(name)
        else:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except UnicodeDecodeError as e:
                raise KauditError(f"{path}: not UTF-8 text (byte {e.start})", "give an audit Policy YAML file (kaudit policy prints one)") from None
            except OSError as e:
                raise UsageError(f"--policy {path}: {e.strerror}", "give an audit Policy YAML file (kaudit policy prints one)") from None
        unique, n = name, 2
        while unique in names:
            unique, n = f"{name}#{n}", n + 1
        names.add(unique)
        out.append((load_policy(text, path or f"<profile {name}>", unique, warnings), source))
    return out


# ---------------------------------------------------------------- tables


def render_tables(doc: dict, stream: TextIO) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from kaudit.core.simulate_html import events_bytes as _cell
    from kaudit.core.simulate_html import human_bytes as _size

    tty = hasattr(stream, "isatty") and stream.isatty()
    console = Console(file=stream, width=None if tty else 160, no_color=not tty, highlight=False)
    pols = doc["policies"]
    inp = doc["input"]
    console.print(f"{inp['events']:,} recorded events, {_size(inp['bytes'])}"
                  + (f" over {inp['seconds']:,.0f} s ({inp['first']} .. {inp['last']})" if inp["seconds"] else "")
                  + f"; recorded levels: {', '.join(f'{k} {v:,}' for k, v in inp['levels'].items())}")

    summary = Table(title="What each policy would write (events · bytes)", header_style="bold", title_justify="left")
    summary.add_column("")
    for p in pols:
        summary.add_column(escape(p["name"]), justify="right")
    summary.add_row("written", *(_cell(p["written"]) for p in pols))
    summary.add_row("bytes per day", *(_size(p["bytes_per_day"]) for p in pols))
    for stage in sorted({s for p in pols for s in p["stages"]}):
        summary.add_row(f"  stage {stage}", *(_cell(p["stages"].get(stage)) for p in pols))
    for level in ("Metadata", "Request", "RequestResponse"):
        if any(level in p["levels"] for p in pols):
            summary.add_row(f"  level {level}", *(_cell(p["levels"].get(level)) for p in pols))
    summary.add_row("inferred RequestReceived (in the above)", *(_cell(p["inferred_request_received"]) for p in pols))
    summary.add_row("unjudged: recorded below the level asked", *(
        f"{p['unjudged']['events']:,} · ≥{_size(p['unjudged']['bytes_at_least'])}" if p["unjudged"]["events"] else "-" for p in pols))
    console.print(summary)

    for p in pols:
        rules = Table(title=f"{escape(p['name'])}: rules ({escape(p['source'])})", header_style="bold", title_justify="left")
        for col, just in (("rule", "right"), ("level", "left"), ("selects", "left"), ("matched", "right"),
                          ("written", "right"), ("bytes", "right"), ("unjudged", "right")):
            rules.add_column(col, justify=just, overflow="fold")
        for r in p["rules"]:
            if r["index"] is None and not r["matched"]:
                continue
            dim = "" if r["matched"] else "[dim]"
            rules.add_row(f"{dim}{'-' if r['index'] is None else r['index']}", f"{dim}{r['level']}", f"{dim}{escape(r['description'])}",
                          f"{r['matched']:,}", f"{r['written']:,}", _size(r["bytes"]), f"{r['unjudged']:,}" if r["unjudged"] else "")
        console.print(rules)

    blind = Table(title="Detections that can never fire", header_style="bold", title_justify="left")
    blind.add_column("policy")
    blind.add_column("rule", overflow="fold")
    blind.add_column("why (policy rules counted from 1)", overflow="fold")
    for p in pols:
        for r in p.get("detections_never_fire", ()):
            blind.add_row(escape(p["name"]), escape(r["id"]), escape(r["reason"]))
        if not p.get("detections_never_fire"):
            blind.add_row(escape(p["name"]), "(none)", "every rule can fire")
    console.print(blind)

    for key, title in (("top_resources", "resource"), ("top_users", "user")):
        top = Table(title=f"Top {title}s by bytes written", header_style="bold", title_justify="left")
        top.add_column("#", justify="right")
        for p in pols:
            top.add_column(escape(p["name"]), overflow="fold")
        depth = max((len(p[key]) for p in pols), default=0)
        for i in range(depth):
            top.add_row(str(i + 1), *(
                f"{escape(p[key][i][title])} ({_size(p[key][i]['bytes'])})" if i < len(p[key]) else "" for p in pols))
        console.print(top)

    for d in doc["diffs"]:
        a = next(p for p in pols if p["name"] == d["from"])
        b = next(p for p in pols if p["name"] == d["to"])
        both = d["kept_by_both"]
        console.print(f"[bold]{escape(d['to'])} vs {escape(d['from'])}[/bold]: drops {_cell(d['dropped'])} that "
                      f"{escape(d['from'])} kept"
                      + (f"; adds {_cell(d['added'])}" if d["added"]["events"] else "")
                      + (f"; the {both['events']:,} events both keep take {_size(both['bytes_to'])} instead of "
                         f"{_size(both['bytes_from'])}" if both["events"] else "")
                      + (f"; {d['not_compared_unjudged']:,} events unjudged under one of them" if d["not_compared_unjudged"] else ""))
        if d["dropped_by_rule"]:
            t = Table(header_style="bold")
            t.add_column(f"kept by {escape(d['from'])} rule", overflow="fold")
            t.add_column(f"dropped by {escape(d['to'])} rule", overflow="fold")
            t.add_column("events", justify="right")
            t.add_column("bytes", justify="right")
            for row in d["dropped_by_rule"][:15]:
                t.add_row(_rule_name(a, row["from_rule"]), _rule_name(b, row["to_rule"]), f"{row['events']:,}", _size(row["bytes"]))
            console.print(t)


def _rule_name(policy: dict, index: Optional[int]) -> str:
    from rich.markup import escape

    rule = next(r for r in policy["rules"] if r["index"] == index)
    return escape(f"{'-' if index is None else index} {rule['level']}: {rule['description']}")


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)

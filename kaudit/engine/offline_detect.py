"""`kaudit detect --log`: the rule pack over audit log files, and the report it prints.

One implementation for both ways in: the Typer command (kaudit.cli.detect) and the console
script's fast path (kaudit.launch), which runs the common `kaudit detect --log ...` without
loading Typer and pydantic. Those two imports cost about four times what matching the 6 MB
v1.36 corpus does, and detect --log is the command people loop over files in CI.
"""

from __future__ import annotations

import sys
from typing import Sequence

from kaudit.core.detect import report
from kaudit.core.detect.findings import Finding
from kaudit.core.detect.model import Rule, rule_pack
from kaudit.core.errors import UsageError
from kaudit.engine.ui import UI

#: like a linter: something fired
EXIT_FINDINGS = 3

#: the report formats (the Typer command's DetectOutput has the same three)
OUTPUTS = ("text", "json", "sarif")


def read_rule_files(paths: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """(name, text) of each --rules file, with a one-line error for a missing or unreadable one."""
    from pathlib import Path

    out = []
    for name in paths:
        p = Path(name)
        if not p.is_file():
            raise UsageError(f"--rules {p}: {'is a directory' if p.is_dir() else 'no such file'}", "give a YAML file with a rules: list")
        try:
            out.append((str(p), p.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--rules {p}: cannot read: {e}") from None
    return tuple(out)


def split_ids(values: Sequence[str]) -> tuple[str, ...]:
    """--disable a,b --disable c -> (a, b, c)."""
    return tuple(p.strip() for v in values for p in v.split(",") if p.strip())


def load_rules(rule_files: Sequence[str], disable: Sequence[str]) -> list[Rule]:
    from kaudit.adapters.rule_cache import packaged_rules

    return rule_pack(read_rule_files(rule_files), split_ids(disable), packaged=packaged_rules())


def detect_logs(rules: list[Rule], logs: Sequence[str]) -> tuple[list[Finding], int]:
    from kaudit.adapters.audit_files import read_lines
    from kaudit.core.detect.match import detect

    return detect(rules, read_lines(list(logs)))


def print_report(findings: list[Finding], *, events: int, rules: list[Rule], sources: str, output: str, ui: UI) -> int:
    """The report on stdout (the text report's summary line on stderr); the exit code."""
    if output == "json":
        sys.stdout.write(report.render_json(findings, events=events, rules=len(rules), sources=sources))
    elif output == "sarif":
        sys.stdout.write(report.render_sarif(findings, events=events, rules=rules, sources=sources))
    else:
        text = report.render_text(findings, events=events, rules=len(rules), sources=sources)
        body, _, summary = text.rstrip("\n").rpartition("\n")
        if body:
            sys.stdout.write(body + "\n")
        ui.info(summary.replace("over -1 event(s) in", "in"))
    return EXIT_FINDINGS if findings else 0


def run_offline(logs: Sequence[str], *, output: str = "text", rule_files: Sequence[str] = (), disable: Sequence[str] = (),
                ui: UI | None = None) -> int:
    """The whole of `kaudit detect --log ...`; raises KauditError for bad input."""
    rules = load_rules(rule_files, disable)
    if not rules:
        raise UsageError("every rule is disabled", "drop some --disable ids")
    findings, events = detect_logs(rules, logs)
    return print_report(findings, events=events, rules=rules, sources=", ".join(logs), output=output, ui=ui or UI())

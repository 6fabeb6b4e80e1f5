"""Showing verify's results: a rich table on a terminal, aligned plain text elsewhere, or JSON."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Optional, TextIO

from kaudit.engine.verify.checks import FAIL, PASS, SKIP, WARN, CheckResult
from kaudit.engine.verify.schema import SCHEMA_ID

_MARK = {PASS: "PASS", FAIL: "FAIL", WARN: "WARN", SKIP: "SKIP"}
_STYLE = {PASS: "green", FAIL: "bold red", WARN: "yellow", SKIP: "dim"}


def summary(results: list[CheckResult]) -> dict[str, int]:
    out = {PASS: 0, FAIL: 0, WARN: 0, SKIP: 0}
    for r in results:
        out[r.status] += 1
    return out


def to_document(results: list[CheckResult], *, started: float, elapsed: float, loki_url: Optional[str]) -> dict:
    counts = summary(results)
    return {
        "schema": SCHEMA_ID,
        "ok": counts[FAIL] == 0,
        "exit_code": 0 if counts[FAIL] == 0 else 4,
        "started_at": datetime.fromtimestamp(started, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "elapsed_s": round(elapsed, 3),
        "loki_url": loki_url,
        "summary": counts,
        "checks": [r.as_dict() for r in results],
    }


def render_json(doc: dict, stream: TextIO) -> None:
    json.dump(doc, stream, indent=2, sort_keys=False, default=str)
    stream.write("\n")


def summary_line(results: list[CheckResult], elapsed: float) -> str:
    c = summary(results)
    verdict = "verify passed" if c[FAIL] == 0 else "verify FAILED"
    return f"{verdict}: {c[PASS]} passed, {c[FAIL]} failed, {c[WARN]} warnings, {c[SKIP]} skipped ({elapsed:.1f}s)"


def _label(r: CheckResult, multi_node: bool) -> str:
    return f"{r.name} [{r.node}]" if multi_node and r.node else r.name


def render_table(results: list[CheckResult], stream: TextIO, *, elapsed: float) -> None:
    multi = len({r.node for r in results if r.node}) > 1
    if hasattr(stream, "isatty") and stream.isatty():
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        table = Table(show_lines=False, header_style="bold")
        for col in ("check", "status", "time", "detail"):
            table.add_column(col, overflow="fold", justify="right" if col == "time" else "left")
        for r in results:
            detail = escape(r.detail) + (f"\n[dim]hint: {escape(r.hint)}[/dim]" if r.hint else "")
            table.add_row(escape(_label(r, multi)), f"[{_STYLE[r.status]}]{_MARK[r.status]}[/]", f"{r.elapsed_s:.2f}s", detail)
        console = Console(file=stream)
        console.print(table)
        console.print(summary_line(results, elapsed))
        return
    width = max(len(_label(r, multi)) for r in results) if results else 0
    for r in results:
        stream.write(f"{_MARK[r.status]}  {_label(r, multi):<{width}}  {r.elapsed_s:6.2f}s  {r.detail}\n")
        if r.hint:
            stream.write(f"{'':4}  {'':<{width}}  {'':7}  hint: {r.hint}\n")
    stream.write(summary_line(results, elapsed) + "\n")

"""One verify run or one query, as the CLI and the `up` phase start them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional, TextIO

from kaudit.adapters.hosts.local import LocalHost
from kaudit.engine.ui import UI
from kaudit.engine.verify.checks import CheckResult, Node, Settings, VerifyContext
from kaudit.engine.verify.report import render_json, render_table, to_document
from kaudit.engine.verify.runner import run_checks

__all__ = ["Node", "Settings", "verify", "query_rows", "render_rows"]


def verify(
    settings: Settings,
    nodes: list[Node],
    *,
    ui: UI,
    stream: Optional[TextIO],
    as_json: bool = False,
    facts: Optional[dict] = None,
) -> tuple[list[CheckResult], dict]:
    """Run every check, print the table or JSON document on stream, and return both."""
    ctx = VerifyContext(settings, nodes, LocalHost(), facts=dict(facts or {}))
    started, t0 = time.time(), time.monotonic()

    status = None
    current = {"name": "", "since": time.monotonic()}

    def on_start(name: str, node: Optional[str]) -> None:
        current.update(name=name + (f" on {node}" if node else ""), since=time.monotonic())
        if status is not None:
            status.update(f"verify: {current['name']}")
        ui.detail(f"... {current['name']}")

    def on_result(r: CheckResult) -> None:
        ui.detail(f"{r.status} {r.name}: {r.detail}")

    def progress(msg: str) -> None:
        if status is not None:
            status.update(f"verify: {current['name']}: {msg}")

    ctx.progress = progress
    if ui.is_tty and not ui.quiet:
        # a live status line on a terminal; it disappears before the table is printed
        from rich.console import Console

        with Console(file=ui.stream).status("verify") as status:
            results = run_checks(ctx, on_start=on_start, on_result=on_result)
    else:
        results = run_checks(ctx, on_start=on_start, on_result=on_result)
    elapsed = time.monotonic() - t0
    doc = to_document(results, started=started, elapsed=elapsed, loki_url=ctx.loki_url)
    if stream is not None:
        if as_json:
            render_json(doc, stream)
        else:
            render_table(results, stream, elapsed=elapsed)
    return results, doc


def query_rows(
    logql: str,
    window_s: float,
    limit: int,
    *,
    loki_url: Optional[str],
    tenant: Optional[str],
    kubeconfig: Optional[Path],
    ui: UI,
    namespace: str = "kaudit",
    service: str = "loki",
    port: int = 3100,
    auth=None,
):
    """Run the query against Loki (through a port-forward when no URL is given)."""
    from kaudit.adapters.loki import LokiClient, stream_entries
    from kaudit.core.query import rows_from_entries
    from kaudit.engine.verify.kube import PortForward

    pf = None
    try:
        if not loki_url:
            pf = PortForward(str(kubeconfig) if kubeconfig else None, namespace, service, port)
            loki_url = pf.start()
            ui.detail(f"port-forward to {pf.target} on {loki_url}")
        client = LokiClient(loki_url, timeout=30.0, tenant=tenant, auth=auth)
        try:
            end = time.time_ns()
            data = client.query_range(logql, start_ns=end - int(window_s * 1e9), end_ns=end, limit=limit)
        finally:
            client.close()
    finally:
        if pf is not None:
            pf.stop()
    return rows_from_entries(stream_entries(data), limit)


def render_rows(rows, logql: str, stream: TextIO, *, as_json: bool) -> None:
    from kaudit.core.query import Row

    if as_json:
        json.dump({"query": logql, "count": len(rows), "events": [r.as_dict() for r in rows]}, stream, indent=2)
        stream.write("\n")
        return
    if hasattr(stream, "isatty") and stream.isatty():
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        table = Table(header_style="bold")
        for col in Row.COLUMNS:
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(*(escape(c) for c in r.cells()))
        Console(file=stream).print(table)
        return
    cells = [Row.COLUMNS] + [r.cells() for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(Row.COLUMNS))]
    for c in cells:
        stream.write("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip() + "\n")

"""The `kaudit policy simulate --html` report: one self-contained page, no script, no network.

Pure: the simulation document in, HTML text out. Each policy gets an inline SVG
bar chart of the bytes it would write per rule, coloured by the rule's level, beside
the same figures as tables; the page opens from a file on a machine with no
network, and prints.
"""

from __future__ import annotations

from html import escape
from typing import Optional

LEVEL_COLOURS = {"Metadata": "#4e79a7", "Request": "#f28e2b", "RequestResponse": "#e15759", "None": "#bab0ac"}
_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#222;max-width:1200px}
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:2rem}h3{font-size:1rem}
table{border-collapse:collapse;margin:.5rem 0 1rem}th,td{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child,td.l{text-align:left}th{background:#f4f4f4}
.policies{display:flex;flex-wrap:wrap;gap:2rem}.policy{flex:1 1 520px}
.legend span{display:inline-block;margin-right:1rem}.legend i{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem}
.note{color:#666}svg text{font:11px system-ui,sans-serif}
"""


def human_bytes(n: Optional[float]) -> str:
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return ""


def events_bytes(c: Optional[dict]) -> str:
    return "-" if not c or not c["events"] else f"{c['events']:,} · {human_bytes(c['bytes'])}"


def rule_chart(policy: dict, scale: int) -> str:
    """A horizontal bar per rule that wrote anything, its length the bytes written
    (one scale for every policy, so the charts compare), coloured by the rule's level."""
    rows = [r for r in policy["rules"] if r["bytes"]]
    if not rows:
        return '<p class="note">This policy writes nothing for this log.</p>'
    bar_w, label_w, row_h = 360, 250, 22
    height = row_h * len(rows) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 110}" height="{height}" '
             f'role="img" aria-label="bytes written per rule by {escape(policy["name"])}">']
    for i, r in enumerate(rows):
        y = 5 + i * row_h
        w = max(1, round(bar_w * r["bytes"] / scale)) if scale else 1
        label = f"{'-' if r['index'] is None else r['index']} {r['description']}"
        label = label if len(label) <= 40 else label[:39] + "…"
        parts.append(f'<text x="0" y="{y + 14}">{escape(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 2}" width="{w}" height="{row_h - 6}" fill="{LEVEL_COLOURS.get(r["level"], "#999")}">'
                     f'<title>{escape(r["description"])}: {r["written"]:,} events, {r["bytes"]:,} bytes</title></rect>')
        parts.append(f'<text x="{label_w + w + 6}" y="{y + 14}">{human_bytes(r["bytes"])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(doc: dict) -> str:
    pols, inp = doc["policies"], doc["input"]
    scale = max((r["bytes"] for p in pols for r in p["rules"]), default=0)
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           "<title>kaudit policy simulate</title>", f"<style>{_CSS}</style></head><body>",
           "<h1>What each audit policy would write</h1>",
           f'<p>{inp["events"]:,} recorded events ({human_bytes(inp["bytes"])}) from {escape(", ".join(inp["sources"]))}'
           + (f', {escape(str(inp["first"]))} to {escape(str(inp["last"]))} ({inp["seconds"]:,.0f} s)' if inp["seconds"] else "")
           + ". Bytes are the events re-encoded as kube-apiserver writes them at each policy's level.</p>"]
    out.append("<h2>Summary</h2><table><tr><th></th>" + "".join(f"<th>{escape(p['name'])}</th>" for p in pols) + "</tr>")

    def row(label: str, cells: list[str]) -> None:
        out.append(f"<tr><td>{escape(label)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")

    row("written (events · bytes)", [events_bytes(p["written"]) for p in pols])
    row("bytes per day at the observed rate", [human_bytes(p["bytes_per_day"]) for p in pols])
    for stage in sorted({s for p in pols for s in p["stages"]}):
        row(f"stage {stage}", [events_bytes(p["stages"].get(stage)) for p in pols])
    for level in ("Metadata", "Request", "RequestResponse"):
        if any(level in p["levels"] for p in pols):
            row(f"level {level}", [events_bytes(p["levels"].get(level)) for p in pols])
    row("inferred RequestReceived (included above)", [events_bytes(p["inferred_request_received"]) for p in pols])
    row("unjudged: recorded below the level asked (not included)",
        [f"{p['unjudged']['events']:,} · ≥{human_bytes(p['unjudged']['bytes_at_least'])}" if p["unjudged"]["events"] else "-" for p in pols])
    out.append("</table>")

    out.append('<h2>Bytes per rule</h2><p class="legend">' + "".join(
        f'<span><i style="background:{c}"></i>{lvl}</span>' for lvl, c in LEVEL_COLOURS.items() if lvl != "None") + "</p>")
    out.append('<div class="policies">')
    for p in pols:
        out.append(f'<div class="policy"><h3>{escape(p["name"])} <span class="note">({escape(p["source"])})</span></h3>')
        out.append(rule_chart(p, scale))
        out.append("<table><tr><th>rule</th><th>level</th><th>selects</th><th>matched</th><th>written</th><th>bytes</th><th>unjudged</th></tr>")
        for r in p["rules"]:
            if r["index"] is None and not r["matched"]:
                continue
            out.append(f"<tr><td>{'-' if r['index'] is None else r['index']}</td><td class=l>{r['level']}</td>"
                       f"<td class=l>{escape(r['description'])}</td><td>{r['matched']:,}</td><td>{r['written']:,}</td>"
                       f"<td>{human_bytes(r['bytes'])}</td><td>{r['unjudged'] or ''}</td></tr>")
        out.append("</table>")
        for key, title in (("top_resources", "resource"), ("top_users", "user")):
            out.append(f"<table><tr><th>top {title}s</th><th>events</th><th>bytes</th></tr>")
            for t in p[key]:
                out.append(f"<tr><td>{escape(t[title])}</td><td>{t['events']:,}</td><td>{human_bytes(t['bytes'])}</td></tr>")
            out.append("</table>")
        out.append("</div>")
    out.append("</div>")

    out.append("<h2>Detection rules each policy can never fire</h2>"
               "<table><tr><th>policy</th><th>rule</th><th>needs</th><th>why (policy rules counted from 1)</th></tr>")
    for p in pols:
        blind = p.get("detections_never_fire", [])
        for r in blind:
            out.append(f"<tr><td class=l>{escape(p['name'])}</td><td class=l>{escape(r['id'])}</td>"
                       f"<td class=l>{escape(r['level'])}</td><td class=l>{escape(r['reason'])}</td></tr>")
        if not blind:
            out.append(f"<tr><td class=l>{escape(p['name'])}</td><td class=l>(none)</td><td></td><td class=l>every rule can fire</td></tr>")
    out.append("</table>")

    for d in doc["diffs"]:
        out.append(f"<h2>{escape(d['to'])} compared with {escape(d['from'])}</h2>")
        both = d["kept_by_both"]
        out.append(f"<p>Drops {events_bytes(d['dropped'])} that {escape(d['from'])} kept; adds {events_bytes(d['added'])}; "
                   f"the {both['events']:,} events both keep take {human_bytes(both['bytes_to'])} instead of "
                   f"{human_bytes(both['bytes_from'])}.</p>")
        if d["dropped_by_rule"]:
            out.append(f"<table><tr><th>kept by {escape(d['from'])} rule</th><th>dropped by {escape(d['to'])} rule</th>"
                       "<th>events</th><th>bytes</th></tr>")
            for r in d["dropped_by_rule"]:
                out.append(f"<tr><td>{'-' if r['from_rule'] is None else r['from_rule']}</td>"
                           f"<td class=l>{'-' if r['to_rule'] is None else r['to_rule']}</td>"
                           f"<td>{r['events']:,}</td><td>{human_bytes(r['bytes'])}</td></tr>")
            out.append("</table>")
    out.append('<p class="note">Made by kaudit policy simulate. Unjudged events are counted apart: their bodies were '
               "never recorded, so their size at the level asked is unknown.</p></body></html>")
    return "\n".join(out) + "\n"

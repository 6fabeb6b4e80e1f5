"""Findings as text, JSON or SARIF 2.1.0 (pure: findings in, text out).

Findings are grouped by rule; groups are ordered by severity, then by their newest
finding, and the findings inside a group newest first.
"""

from __future__ import annotations

import json
from typing import Iterable, Optional

from kaudit import __version__
from kaudit.core.detect.findings import Finding, Hit
from kaudit.core.detect.model import SEVERITIES, Rule

_RANK = {s: i for i, s in enumerate(SEVERITIES)}
SARIF_LEVEL = {"low": "note", "medium": "warning", "high": "error", "critical": "error"}
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
#: at most this many auditIDs / hits printed per aggregate finding in text
TEXT_IDS = 10


def grouped(findings: Iterable[Finding]) -> list[tuple[Rule, list[Finding]]]:
    groups: dict[str, tuple[Rule, list[Finding]]] = {}
    for f in findings:
        groups.setdefault(f.rule.id, (f.rule, []))[1].append(f)
    out = []
    for rule, items in groups.values():
        items.sort(key=lambda f: f.time, reverse=True)
        out.append((rule, items))
    out.sort(key=lambda g: (-_RANK[g[0].severity], _neg(g[1][0].time), g[0].id))
    return out


def _neg(text: str) -> tuple:
    """Sort key putting later RFC3339 times first."""
    return tuple(-ord(ch) for ch in text)


def _who(h: Hit) -> str:
    who = h.user or "(no user)"
    if h.impersonated:
        who += f" as {h.impersonated}"
    return who


def _line(h: Hit) -> str:
    parts = [h.time or "(no time)", _who(h), h.what]
    if h.where:
        parts.append(h.where)
    if h.source_ips:
        parts.append("from " + ",".join(h.source_ips))
    if h.code is not None:
        parts.append(f"code {h.code}")
    parts.append(f"auditID {h.audit_id}" if h.audit_id else "no auditID")
    return "  ".join(parts)


def render_text(findings: list[Finding], *, events: int, rules: int, sources: str) -> str:
    out: list[str] = []
    groups = grouped(findings)
    for rule, items in groups:
        out.append(f"{rule.severity.upper():8} {rule.id}: {rule.title} [{rule.mitre}] - {len(items)} finding(s)")
        for f in items:
            if f.rule.aggregate:
                key = ", ".join(f"{p.text}={v or '(none)'}" for p, v in zip(f.rule.aggregate.by, f.key))
                first = min(h.time for h in f.hits)
                out.append(f"  {f.time}  {key}: {f.count} request(s) from {first} to {f.time}")
                ids = f.audit_ids
                shown = ", ".join(ids[:TEXT_IDS]) + (f" (+{len(ids) - TEXT_IDS} more)" if len(ids) > TEXT_IDS else "")
                out.append(f"      auditIDs {shown}")
                if f.hits[0].location:
                    out.append(f"      at {f.hits[0].location}")
            else:
                h = f.hits[0]
                out.append("  " + _line(h))
                if h.location:
                    out.append(f"      at {h.location}")
        out.append(f"  runbook: {rule.runbook}")
        out.append("")
    fired = len(groups)
    out.append(f"{len(findings)} finding(s) from {fired} of {rules} rule(s) over {events} event(s) in {sources}")
    return "\n".join(out) + "\n"


def _hit_dict(h: Hit) -> dict:
    return {
        "time": h.time or None,
        "auditID": h.audit_id or None,
        "user": h.user or None,
        "impersonatedUser": h.impersonated or None,
        "sourceIPs": list(h.source_ips),
        "userAgent": h.user_agent or None,
        "verb": h.verb or None,
        "resource": h.resource or None,
        "namespace": h.namespace or None,
        "name": h.name or None,
        "requestURI": h.uri or None,
        "code": h.code,
        "decision": h.decision or None,
        "stages": [s for s in h.stages if s],
        "location": h.location or None,
    }


def rule_dict(rule: Rule) -> dict:
    return {
        "id": rule.id, "title": rule.title, "severity": rule.severity, "mitre": rule.mitre,
        "level": rule.level, "stages": list(rule.stages), "description": rule.description,
        "runbook": rule.runbook, "false_positives": rule.false_positives,
        "aggregate": None if rule.aggregate is None else {
            "by": [p.text for p in rule.aggregate.by], "window": rule.aggregate.window, "threshold": rule.aggregate.threshold,
        },
        "source": rule.source,
    }


def render_json(findings: list[Finding], *, events: int, rules: int, sources: str) -> str:
    groups = []
    for rule, items in grouped(findings):
        groups.append({
            "rule": rule_dict(rule),
            "findings": [
                {
                    "time": f.time or None,
                    "count": f.count,
                    "key": None if f.rule.aggregate is None else {p.text: v for p, v in zip(f.rule.aggregate.by, f.key)},
                    "auditIDs": f.audit_ids,
                    "events": [_hit_dict(h) for h in f.hits],
                }
                for f in items
            ],
        })
    doc = {"kaudit": __version__, "source": sources, "events": events, "rules": rules,
           "findings": len(findings), "groups": groups}
    return json.dumps(doc, ensure_ascii=False) + "\n"  # one line: the C encoder (indent would be 10x slower)


def _location(h: Hit) -> Optional[dict]:
    if not h.location or ":" not in h.location:
        return None
    uri, _, line = h.location.rpartition(":")
    if not line.isdigit():
        return None
    return {"physicalLocation": {"artifactLocation": {"uri": uri}, "region": {"startLine": int(line)}}}


def render_sarif(findings: list[Finding], *, events: int, rules: list[Rule], sources: str) -> str:
    """SARIF 2.1.0: one run, the rules as reportingDescriptors, one result per finding."""
    index = {r.id: i for i, r in enumerate(rules)}
    descriptors = [
        {
            "id": r.id,
            "name": r.title,
            "shortDescription": {"text": r.title},
            "fullDescription": {"text": r.description},
            "help": {"text": f"Runbook: {r.runbook}\nFalse positives: {r.false_positives}\nNeeds audit level {r.level}."},
            "defaultConfiguration": {"level": SARIF_LEVEL[r.severity]},
            "properties": {"severity": r.severity, "mitre-attack": r.mitre, "audit-level": r.level,
                           "tags": ["security", f"mitre-attack/{r.mitre}"]},
        }
        for r in rules
    ]
    results = []
    for rule, items in grouped(findings):
        for f in items:
            h = f.hits[-1] if f.rule.aggregate else f.hits[0]
            if f.rule.aggregate:
                key = ", ".join(f"{p.text}={v or '(none)'}" for p, v in zip(f.rule.aggregate.by, f.key))
                text = f"{rule.title}: {key}, {f.count} request(s) up to {f.time}"
            else:
                text = f"{rule.title}: {_line(h)}"
            result = {
                "ruleId": rule.id,
                "level": SARIF_LEVEL[rule.severity],
                "message": {"text": text},
                "partialFingerprints": {"auditID": f.audit_ids[0] if f.audit_ids else ""},
                "properties": {"time": f.time, "auditIDs": f.audit_ids, "count": f.count},
            }
            if rule.id in index:
                result["ruleIndex"] = index[rule.id]
            loc = _location(f.hits[0])
            if loc:
                result["locations"] = [loc]
            results.append(result)
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "kaudit detect", "version": __version__, "rules": descriptors}},
            "results": results,
            "properties": {"events": events, "source": sources},
        }],
    }
    return json.dumps(doc, ensure_ascii=False) + "\n"  # one line: the C encoder (indent would be 10x slower)

"""Retro-hunt: the compiled LogQL of every rule run over Loki (kaudit detect --loki-url).

Single-event rules run as log queries (query_range, streams): every line Loki returns is a
finding, so the LogQL approximations show here exactly as they would in the ruler.
Aggregate rules run their alert expression as a range query (matrix); a finding is a
series that crossed the threshold, with its labels and the highest count.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from kaudit.core.detect.logql import compile_rule, label_name
from kaudit.core.detect.findings import Finding, Hit, hit_from_event
from kaudit.core.detect.model import Rule
from kaudit.adapters.loki import LokiClient, stream_entries

NS = 1_000_000_000


def _rfc3339(ts_s: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts_s, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def hunt_rule(client: LokiClient, rule: Rule, *, start_ns: int, end_ns: int, limit: int, job: str,
              cluster: Optional[str] = None) -> list[Finding]:
    c = compile_rule(rule, job=job, cluster=cluster)
    if rule.aggregate is None:
        data = client.query_range(c.query, start_ns=start_ns, end_ns=end_ns, limit=limit)
        seen: dict[str, Finding] = {}
        for ts, line, _labels in stream_entries(data):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            hit = hit_from_event(event, f"loki:{ts}")
            key = hit.audit_id or f"#{ts}"
            if key in seen:
                stages = seen[key].hits[0].stages
                if hit.stages[0] not in stages:
                    stages.append(hit.stages[0])
                continue
            seen[key] = Finding(rule, [hit])
        return list(seen.values())
    step_s = max(15, min(300, rule.aggregate.window_s // 5))
    data = client.query_range(c.expr, start_ns=start_ns, end_ns=end_ns, limit=limit, step=f"{step_s}s")
    out = []
    names = [label_name(p) for p in rule.aggregate.by]
    for series in data.get("result") or []:
        metric = series.get("metric") or {}
        values = series.get("values") or []
        if not values:
            continue
        peak = max(values, key=lambda v: float(v[1]))
        first = values[0]
        key = tuple(str(metric.get(n, "")) for n in names)
        hit = Hit(time=_rfc3339(float(first[0])), audit_id="", user=metric.get("user_username", ""), impersonated="",
                  source_ips=(), user_agent="", verb="", resource="", namespace="", name="", uri="", code=None, decision="")
        last = Hit(**{**hit.__dict__, "time": _rfc3339(float(values[-1][0])), "stages": []})
        out.append(Finding(rule, [hit, last], key=key, count=int(float(peak[1]))))
    return out


def hunt(url: str, rules: list[Rule], *, window_s: float, limit: int, job: str, tenant: Optional[str] = None,
         end_ns: Optional[int] = None, cluster: Optional[str] = None, auth: Any = None) -> list[Finding]:
    """Every rule over Loki; ``cluster`` keeps to one cluster's streams; ``auth`` is
    kaudit.core.loki_auth.LokiCredentials (basic auth, bearer token, CA), as for kaudit query."""
    import time

    client = LokiClient(url, timeout=60.0, tenant=tenant, auth=auth)
    try:
        end = end_ns if end_ns is not None else time.time_ns()
        start = end - int(window_s * NS)
        findings: list[Finding] = []
        for rule in rules:
            findings.extend(hunt_rule(client, rule, start_ns=start, end_ns=end, limit=limit, job=job, cluster=cluster))
        return findings
    finally:
        client.close()

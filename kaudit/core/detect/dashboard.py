"""The Grafana "Kubernetes audit: detections" dashboard, generated from the rule pack (pure).

Two panels: an alert list of the Loki ruler's kaudit alerts (data-source managed alerts
of the Loki data source), and "Findings by rule", one series per rule counting the lines
its LogQL query selects. It ships as its own dashboard, beside "Kubernetes audit", so it
follows the rule pack (custom rules included) and `kaudit down` can remove it alone.
"""

from __future__ import annotations

import json
from typing import Iterable

from kaudit.core.detect.logql import compile_rule
from kaudit.core.detect.model import Rule

TITLE = "Kubernetes audit: detections"
UID = "kaudit-detections"
FILE = "kubernetes-audit-detections.json"


def dashboard(rules: Iterable[Rule], *, job: str = "kubernetes-audit") -> dict:
    rules = list(rules)
    ds = {"type": "loki", "uid": "${ds}"}
    targets = []
    for i, r in enumerate(rules):
        c = compile_rule(r, job=job)
        targets.append({
            "refId": f"R{i}",
            "datasource": ds,
            "expr": f"sum(count_over_time({c.query} [$__interval]))",
            "legendFormat": r.id,
            "queryType": "range",
        })
    return {
        "title": TITLE,
        "uid": UID,
        "description": "kaudit detect: alerts of the Loki ruler and findings per rule (docs/detect.md).",
        "tags": ["kubernetes", "audit", "kaudit", "security"],
        "timezone": "browser",
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "1m",
        "time": {"from": "now-24h", "to": "now"},
        "templating": {"list": [{"name": "ds", "label": "Loki", "type": "datasource", "query": "loki",
                                 "current": {}, "hide": 0, "refresh": 1}]},
        "annotations": {"list": []},
        "panels": [
            {
                "id": 1,
                "title": "Detection alerts",
                "description": "Alerts the Loki ruler raises from kaudit's rules (alert names KauditDetect_*).",
                "type": "alertlist",
                "gridPos": {"h": 10, "w": 24, "x": 0, "y": 0},
                "options": {
                    "viewMode": "list", "groupMode": "default", "groupBy": [], "maxItems": 50, "sortOrder": 1,
                    "dashboardAlerts": False, "alertName": "KauditDetect", "alertInstanceLabelFilter": "",
                    "datasource": "Loki",
                    "stateFilter": {"firing": True, "pending": True, "noData": False, "normal": False, "error": True},
                },
            },
            {
                "id": 2,
                "title": "Findings by rule",
                "description": "Audit events each kaudit rule's LogQL selects (array conditions approximated: see kaudit detect --list --logql).",
                "type": "timeseries",
                "datasource": ds,
                "gridPos": {"h": 12, "w": 24, "x": 0, "y": 10},
                "fieldConfig": {"defaults": {"custom": {"drawStyle": "bars", "stacking": {"mode": "normal"}}, "unit": "short"},
                                "overrides": []},
                "options": {"legend": {"displayMode": "table", "placement": "right", "calcs": ["sum"]}},
                "targets": targets,
            },
        ],
    }


def dashboard_json(rules: Iterable[Rule], *, job: str = "kubernetes-audit") -> str:
    return json.dumps(dashboard(rules, job=job), indent=2, ensure_ascii=False) + "\n"

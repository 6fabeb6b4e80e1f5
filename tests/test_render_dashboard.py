"""The Grafana dashboard: valid JSON, the panels the issue asks for, and LogQL that uses
only labels every collector sets and field paths from fields.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from kaudit.core import render
from kaudit.core import stack_values
from kaudit.core.resources import read_resource
from kaudit.shipper import fields as F

DASHBOARD = json.loads(read_resource("templates", "dashboards/kubernetes-audit.json"))
EVENTS = [json.loads(x) for x in (Path(__file__).parent / "data" / "render" / "events.jsonl").read_text().splitlines() if x]
#: the labels on every stream, whichever collector shipped it
COLLECTOR_LABELS = set(render.build_pipeline(render.CollectorSettings(cluster="lab")).stream_label_names())
STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


def targets():
    return [(p["title"], t["expr"]) for p in DASHBOARD["panels"] for t in p["targets"]]


def strip_strings(expr: str) -> tuple[str, list[str]]:
    """Replace LogQL string literals by \\0<n>\\0 placeholders (so braces in them are not selectors)."""
    found: list[str] = []

    def keep(m: re.Match) -> str:
        found.append(json.loads('"' + m.group(1) + '"'))
        return f"\0{len(found) - 1}\0"

    return STRING.sub(keep, expr), found


def analyse(expr: str) -> dict:
    code, strings = strip_strings(expr)
    value = lambda token: strings[int(token.strip("\0"))]  # noqa: E731
    selectors = re.findall(r"\{([^{}]*)\}", code)
    matchers = [re.fullmatch(r"\s*(\w+)\s*(=~|!~|!=|=)\s*(\0\d+\0)\s*", m) for s in selectors for m in s.split(",")]
    assert all(matchers), expr
    json_params = []
    for clause in re.findall(r"\|\s*json\s+([^|\[]+)", code):
        for name, tok in re.findall(r"(\w+)\s*=\s*(\0\d+\0)", clause):
            json_params.append((name, value(tok)))
    extracted = {n for n, _ in json_params}
    filters = re.findall(r"(?:\||\bor\b)\s*(\w+)\s*(=~|!~|!=|=)\s*(\0\d+\0)", code)
    filters = [(n, op, value(v)) for n, op, v in filters if n != "json"]
    by = [x.strip() for group in re.findall(r"\bby\s*\(([^)]*)\)", code) for x in group.split(",") if x.strip()]
    fmt = [value(t) for t in re.findall(r"line_format\s*(\0\d+\0)", code)]
    return {
        "matchers": [(m.group(1), m.group(2), value(m.group(3))) for m in matchers],
        "json": json_params,
        "extracted": extracted,
        "filters": [f for f in filters if f[0] not in {m.group(1) for m in matchers} or f[0] in extracted],
        "by": by,
        "line_format_refs": [r for f in fmt for r in re.findall(r"\{\{\s*\.(\w+)\s*\}\}", f)],
    }


def test_dashboard_is_valid_and_has_the_panels():
    assert DASHBOARD["title"] == "Kubernetes audit" and DASHBOARD["uid"]
    titles = {p["title"] for p in DASHBOARD["panels"]}
    assert {"Events by verb", "Top users", "Denied requests", "Reads of secrets", "Deletions", "Audit events"} <= titles
    assert any(p["type"] == "logs" for p in DASHBOARD["panels"])
    assert [v["name"] for v in DASHBOARD["templating"]["list"]] == ["ds", "cluster"]
    for p in DASHBOARD["panels"]:
        assert p["datasource"] == {"type": "loki", "uid": "${ds}"}
        assert p["targets"], p["title"]


@pytest.mark.parametrize("title,expr", targets(), ids=[t for t, _ in targets()])
def test_queries_use_only_labels_collectors_set(title, expr):
    a = analyse(expr)
    assert a["matchers"], "every query selects streams"
    assert ("job", "=", F.DEFAULT_JOB) in a["matchers"]
    assert (F.CLUSTER_LABEL, "=~", "$cluster") in a["matchers"], f"{title}: every panel follows the cluster selector"
    for name, _, _ in a["matchers"]:
        assert name in COLLECTOR_LABELS, f"{title}: stream selector uses {name!r}, which no collector sets"
    for name, path in a["json"]:
        assert name in F.BY_NAME, f"{title}: | json {name} is not a field of fields.py"
        assert path == render.logql_json_param(F.BY_NAME[name]), f"{title}: {name} path {path!r}"
    known = COLLECTOR_LABELS | a["extracted"]
    for name in a["by"] + a["line_format_refs"] + [f[0] for f in a["filters"]]:
        assert name in known, f"{title}: {name!r} is neither a collector label nor extracted with | json"


def test_logql_json_param_forms():
    assert render.logql_json_param(F.BY_NAME["user"]) == "user.username"
    assert render.logql_json_param(F.BY_NAME["decision"]) == 'annotations["authorization.k8s.io/decision"]'


def _field_values(event: dict, params: list[tuple[str, str]]) -> dict[str, str]:
    out = {}
    for name, _ in params:
        v = F.extract(event, F.BY_NAME[name])
        out[name] = "" if v is None else str(v)
    return out


def _matches(values: dict[str, str], filters: list[tuple[str, str, str]]) -> bool:
    """A chain of `a="x" or b=~"re"` filters (the only form the dashboard uses after | json)."""
    for name, op, want in filters:
        got = values.get(name, "")
        ok = got == want if op == "=" else re.fullmatch(want, got) is not None if op == "=~" else None
        assert ok is not None, op
        if ok:
            return True
    return False


def test_denied_panel_selects_forbidden_and_401_403_events():
    [expr] = [e for t, e in targets() if t == "Denied requests"]
    a = analyse(expr)
    picked = [e for e in EVENTS if _matches(_field_values(e, a["json"]), a["filters"])]
    want = [
        e for e in EVENTS
        if (e.get("annotations") or {}).get(F.DECISION_ANNOTATION) == "forbid" or (e.get("responseStatus") or {}).get("code") in (401, 403)
    ]
    assert picked == want and len(want) >= 2


def test_secrets_panel_selects_secret_reads():
    [expr] = [e for t, e in targets() if t == "Reads of secrets"]
    a = analyse(expr)
    verbs = [m for m in a["matchers"] if m[0] == "verb"][0]
    picked = [
        e for e in EVENTS
        if re.fullmatch(verbs[2], e["verb"]) and _matches(_field_values(e, a["json"]), a["filters"]) and e["stage"] == "ResponseComplete"
    ]
    assert picked and all(e["objectRef"]["resource"] == "secrets" and e["verb"] in ("get", "list", "watch") for e in picked)


def test_dashboard_configmap_is_labelled_for_the_sidecar():
    cm = YAML(typ="safe", pure=True).load(stack_values.render_dashboard_configmap("kaudit"))
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["namespace"] == "kaudit"
    assert cm["metadata"]["labels"][stack_values.DASHBOARD_LABEL] == "1"
    assert json.loads(cm["data"]["kubernetes-audit.json"]) == DASHBOARD


@pytest.mark.parametrize("stack", ["loki-stack", "loki"])
def test_stack_grafana_watches_that_label(stack):
    values = {rel: YAML(typ="safe", pure=True).load(t) for rel, t in stack_values.stack_values(stack, "kaudit").items()}
    grafana = values["loki"]["grafana"] if stack == "loki-stack" else values["grafana"]
    assert grafana["sidecar"]["dashboards"] == {"enabled": True, "label": stack_values.DASHBOARD_LABEL, "labelValue": "1"}


def test_cluster_variable_lists_the_cluster_label_of_audit_streams():
    [var] = [v for v in DASHBOARD["templating"]["list"] if v["name"] == "cluster"]
    assert var["type"] == "query" and var["datasource"] == {"type": "loki", "uid": "${ds}"}
    assert var["query"]["label"] == F.CLUSTER_LABEL and var["query"]["type"] == 1  # Loki label values
    assert analyse(var["query"]["stream"])["matchers"] == [("job", "=", F.DEFAULT_JOB)]
    # All matches every stream, also those of collectors set up before the cluster label existed
    assert var["includeAll"] and var["multi"] and var["allValue"] == ".*"

"""kaudit render-promtail: golden renders of every format, their structure, and agreement
with the shipper on real events (labels, structured metadata, timestamps)."""

from __future__ import annotations

import calendar
import json
import os
import posixpath
import re
from datetime import datetime
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from kaudit import __version__
from kaudit.core import render
from kaudit.core import stack_values
from kaudit.core.render import CollectorSettings, render_collector_config
from kaudit.core.errors import KauditError, UsageError
from kaudit.shipper import fields as F
from kaudit.shipper.payload import Encoder
from render_support import PipelineDef, alloy_pipeline, go_tpl, parse_alloy, promtail_pipeline, run_pipeline

DATA = Path(__file__).parent / "data" / "render"
EVENTS = [line for line in (DATA / "events.jsonl").read_text(encoding="utf-8").splitlines() if line]
UPDATE = os.environ.get("KAUDIT_UPDATE_GOLDEN") == "1"


def load_yaml(text: str):
    return YAML(typ="safe", pure=True).load(text)


def normalise(text: str) -> str:
    """Golden files do not change with kaudit's version number."""
    return text.replace(f"kaudit {__version__}", "kaudit VERSION")


GOLDEN = [
    ("scrape-config.yaml", "scrape-config", {}),
    ("promtail-config.yaml", "promtail-config", {"tenant": "lab"}),
    ("helm-values.yaml", "helm-values", {}),
    ("helm-values-loki-stack.yaml", "helm-values", {"nest_under_promtail": True}),
    ("alloy.alloy", "alloy", {}),
    ("scrape-config-seed-sm.yaml", "scrape-config", {"style": "seed", "structured_metadata": True}),
    ("alloy-seed-sm.alloy", "alloy", {"style": "seed", "structured_metadata": True, "tenant": "lab", "labels": (("cluster", "lab"),)}),
]


@pytest.mark.parametrize("golden,fmt,kw", GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden(golden, fmt, kw):
    got = normalise(render_collector_config(fmt, CollectorSettings(**kw)))
    path = DATA / golden
    if UPDATE:
        path.write_text(got, encoding="utf-8")
    assert got == path.read_text(encoding="utf-8"), f"{golden} differs; rerun with KAUDIT_UPDATE_GOLDEN=1 after checking the diff"


def test_render_is_deterministic():
    s = CollectorSettings(style="seed", structured_metadata=True)
    assert all(render_collector_config(f, s) == render_collector_config(f, s) for f in render.FORMATS)


# -- structure -----------------------------------------------------------------------


def test_scrape_config_structure_reads_the_exact_active_file():
    doc = load_yaml(render_collector_config("scrape-config", CollectorSettings()))
    assert isinstance(doc, list) and len(doc) == 1
    job = doc[0]
    assert job["job_name"] == F.DEFAULT_JOB
    labels = job["static_configs"][0]["labels"]
    assert labels["__path__"] == render.DEFAULT_LOG_PATH
    assert not any(c in labels["__path__"] for c in "*?[")
    assert labels["job"] == F.DEFAULT_JOB and labels["node"] == "${HOSTNAME}"
    kinds = [next(iter(s)) for s in job["pipeline_stages"]]
    assert kinds == ["json", "labels", "timestamp", "timestamp", "labeldrop"]
    ts = [s["timestamp"] for s in job["pipeline_stages"] if "timestamp" in s]
    # the preferred source runs last: a missing stageTimestamp falls back to requestReceivedTimestamp
    assert ts == [
        {"source": "request_received_timestamp", "format": "RFC3339Nano", "action_on_failure": "skip"},
        {"source": "ts", "format": "RFC3339Nano", "action_on_failure": "skip"},
    ]
    exprs = job["pipeline_stages"][0]["json"]["expressions"]
    assert exprs["ts"] == "stageTimestamp" and exprs["request_received_timestamp"] == "requestReceivedTimestamp"
    assert exprs["decision"] == 'annotations."authorization.k8s.io/decision"'
    assert exprs["user"] == "user.username" and exprs["code"] == "responseStatus.code"
    assert exprs["resource"] == "objectRef.resource"


def test_promtail_config_is_complete_and_uses_the_push_url():
    doc = load_yaml(render_collector_config("promtail-config", CollectorSettings(loki_url="http://loki:3100/", tenant="t1")))
    assert set(doc) == {"server", "positions", "clients", "scrape_configs"}
    assert doc["clients"] == [{"url": "http://loki:3100/loki/api/v1/push", "tenant_id": "t1"}]
    assert doc["positions"]["filename"].endswith("positions.yaml")
    assert doc["scrape_configs"] == load_yaml(render_collector_config("scrape-config", CollectorSettings()))


@pytest.mark.parametrize("given", ["http://loki:3100", "http://loki:3100/", "http://loki:3100/loki/api/v1/push", "http://loki:3100/loki/api/v1/push/"])
def test_client_url_is_always_the_push_url(given):
    assert render.push_url(given) == "http://loki:3100/loki/api/v1/push"
    alloy = alloy_pipeline(parse_alloy(render_collector_config("alloy", CollectorSettings(loki_url=given))))
    assert alloy.push_url == "http://loki:3100/loki/api/v1/push"


def test_helm_values_structure():
    s = CollectorSettings(log_path="/var/log/audit/kube/audit.log")
    values = load_yaml(render_collector_config("helm-values", s))
    assert values["nodeSelector"] == {"node-role.kubernetes.io/control-plane": ""}
    assert {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"} in values["tolerations"]
    [vol] = values["extraVolumes"]
    [mount] = values["extraVolumeMounts"]
    assert vol["hostPath"]["path"] == "/var/log/audit/kube" == mount["mountPath"]
    assert mount["readOnly"] is True and mount["name"] == vol["name"]
    assert "-config.expand-env=true" in values["extraArgs"]
    assert values["config"]["clients"] == [{"url": render.push_url(render.DEFAULT_LOKI_URL)}]
    snippets = values["config"]["snippets"]
    assert snippets["scrapeConfigs"] == ""
    assert isinstance(snippets["extraScrapeConfigs"], str)
    # what the chart's tpl makes of the string is exactly the scrape config
    assert load_yaml(go_tpl(snippets["extraScrapeConfigs"])) == load_yaml(render_collector_config("scrape-config", s))


def test_helm_values_nested_under_promtail_for_loki_stack():
    flat = load_yaml(render_collector_config("helm-values", CollectorSettings()))
    nested = load_yaml(render_collector_config("helm-values", CollectorSettings(nest_under_promtail=True)))
    assert nested == {"promtail": flat}


# -- Helm tpl escaping ----------------------------------------------------------------


def test_go_tpl_emulation_rejects_template_actions():
    """The round-trip checks below would be empty if the emulator accepted anything."""
    with pytest.raises(ValueError):
        go_tpl("job: {{ .Release.Name }}")
    with pytest.raises(ValueError):
        go_tpl('{{- "x" }}')
    assert go_tpl('a {{ "{{" }} b }} c') == "a {{ b }} c"


def test_tpl_escape_round_trips():
    import random

    rng = random.Random(1234)
    atoms = ["{", "}", "{{", "}}", "{{-", "-}}", "{{/*", "a", " ", '"', "\\", "\n", "$", "x: y"]
    cases = ["", "{{", "}}", "{{{", "}}}", "{{ .Values.x }}", 'a "{{" b', "{{-x-}}"]
    cases += ["".join(rng.choice(atoms) for _ in range(rng.randint(1, 12))) for _ in range(500)]
    for text in cases:
        escaped = render.tpl_escape(text)
        assert go_tpl(escaped) == text, text
        # the only {{ in the escaped text are kaudit's escapes
        assert "{{" not in escaped.replace('{{ "{{" }}', "\0"), text


def test_values_with_braces_survive_tpl():
    s = CollectorSettings(labels=(("team", "{{ ops }}"),), tenant="t{{1}}")
    values = load_yaml(render_collector_config("helm-values", s))
    scrape = values["config"]["snippets"]["extraScrapeConfigs"]
    assert '{{ "{{" }} ops }}' in scrape
    job = load_yaml(go_tpl(scrape))[0]
    assert job["static_configs"][0]["labels"]["team"] == "{{ ops }}"
    assert go_tpl(values["config"]["clients"][0]["tenant_id"]) == "t{{1}}"
    alloy_values = load_yaml(render.alloy_chart_values(s))
    content = go_tpl(alloy_values["alloy"]["configMap"]["content"])
    assert alloy_pipeline(parse_alloy(content)).static["team"] == "{{ ops }}"


# -- one definition: fields.py -> every format -> same as the shipper -------------------


def pipelines(s: CollectorSettings) -> dict[str, PipelineDef]:
    push = render.push_url(s.loki_url)
    out = {
        "scrape-config": promtail_pipeline(load_yaml(render_collector_config("scrape-config", s)), push, s.tenant),
        "alloy": alloy_pipeline(parse_alloy(render_collector_config("alloy", s))),
    }
    cfg = load_yaml(render_collector_config("promtail-config", s))
    out["promtail-config"] = promtail_pipeline(cfg["scrape_configs"], cfg["clients"][0]["url"], cfg["clients"][0].get("tenant_id"))
    values = load_yaml(render_collector_config("helm-values", s))
    client = values["config"]["clients"][0]
    out["helm-values"] = promtail_pipeline(load_yaml(go_tpl(values["config"]["snippets"]["extraScrapeConfigs"])), client["url"], client.get("tenant_id"))
    av = load_yaml(render.alloy_chart_values(s))
    out["alloy-chart-values"] = alloy_pipeline(parse_alloy(go_tpl(av["alloy"]["configMap"]["content"])))
    return out


@pytest.mark.parametrize("style", render.STYLES)
@pytest.mark.parametrize("sm", [False, True], ids=["loki2", "loki3"])
def test_label_set_and_fields_come_from_fields_py(style, sm):
    for fmt, p in pipelines(CollectorSettings(style=style, structured_metadata=sm)).items():
        assert p.labels == list(F.DEFAULT_LABELS), fmt
        assert set(p.static) == {F.JOB_LABEL, F.NODE_LABEL}, fmt
        assert p.structured_metadata == ([n for n in F.STRUCTURED_METADATA if n not in F.DEFAULT_LABELS] if sm else []), fmt
        assert not set(p.labels) & set(F.HIGH_CARDINALITY), fmt
        extracted = {name for _, exprs in p.json_stages for name in exprs}
        assert {f.name for f in F.FIELDS} <= extracted, fmt
        assert p.ts_format == "RFC3339Nano", fmt
        assert p.ts_sources == [f.name for f in reversed(render.timestamp_fields())], fmt
        assert [f.path for f in render.timestamp_fields()] == [(k,) for k in F.TIMESTAMP_FIELDS]
        assert p.drop == ["filename"] and p.path == render.DEFAULT_LOG_PATH, fmt
        assert p.push_url == render.push_url(render.DEFAULT_LOKI_URL), fmt


def rfc3339_ns(text: str) -> int:
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z", text)
    assert m, text
    secs = calendar.timegm(datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").timetuple())
    return secs * 10**9 + int((m.group(2) or "0").ljust(9, "0"))


@pytest.mark.parametrize("style", render.STYLES)
@pytest.mark.parametrize("sm", [False, True], ids=["loki2", "loki3"])
@pytest.mark.parametrize("dynamic", [F.DEFAULT_LABELS, ("verb", "resource", "namespace")], ids=["default-labels", "custom-labels"])
def test_every_format_extracts_what_the_shipper_sends(style, sm, dynamic):
    """On real events, each rendered pipeline yields the shipper's stream labels,
    structured metadata and timestamp, also when a metadata field is made a label."""
    s = CollectorSettings(style=style, structured_metadata=sm, node="cp-1", labels=(("cluster", "lab"),), dynamic_labels=dynamic)
    encoder = Encoder(labels=dynamic, static={F.JOB_LABEL: F.DEFAULT_JOB, F.NODE_LABEL: "cp-1", "cluster": "lab"}, structured_metadata=sm)
    defs = pipelines(s)
    for line in EVENTS:
        read_ns = 1_700_000_000_123_456_789
        entry = encoder.encode(line.encode(), read_ns=read_ns)
        want_labels = encoder.stream_labels(entry.stream)
        md_json = encoder.metadata_json(entry.md) if entry.md else b""
        want_md = json.loads(md_json) if md_json else {}
        for fmt, p in defs.items():
            labels, md, ts = run_pipeline(p, line)
            assert labels == want_labels, (fmt, line[:120])
            assert md == want_md, (fmt, line[:120])
            # no timestamp field at all: both keep the time the line was read
            assert (rfc3339_ns(ts) if ts else read_ns) == entry.ts, (fmt, line[:120])


def test_denied_event_fields_flattened():
    """The decision annotation key (dots and a slash) is read correctly in both styles."""
    forbid = next(line for line in EVENTS if '"forbid"' in line)
    for style in render.STYLES:
        p = pipelines(CollectorSettings(style=style, structured_metadata=True))["scrape-config"]
        _, md, _ = run_pipeline(p, forbid)
        assert md["decision"] == "forbid" and md["code"] == "403"


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw,needle",
    [
        ({"log_path": "/var/log/kubernetes-audit/*.log"}, "glob"),
        ({"log_path": "audit.log"}, "absolute"),
        ({"dynamic_labels": ("audit_level", "user")}, "cannot be a label"),
        ({"dynamic_labels": ("colour",)}, "not a known audit field"),
        ({"labels": (("job", "x"),)}, "already set"),
        ({"labels": (("bad-name", "x"),)}, "not a valid Loki label name"),
        ({"labels": (("user", "x"),)}, "audit field"),
        ({"loki_url": "loki:3100"}, "not an http(s) URL"),
        ({"style": "nested"}, "unknown style"),
    ],
)
def test_bad_settings_are_usage_errors(kw, needle):
    with pytest.raises(UsageError) as e:
        render_collector_config("scrape-config", CollectorSettings(**kw))
    assert needle in e.value.message


def test_template_errors_cite_template_and_line(tmp_path, monkeypatch):
    import jinja2

    (tmp_path / "broken.j2").write_text("a: 1\nb: {{ p.path }}\nc: {{ missing }}\n")
    (tmp_path / "syntax.j2").write_text("a: 1\n{% if x %}\n")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(tmp_path)), undefined=jinja2.StrictUndefined)
    monkeypatch.setattr(render, "_env", env)
    with pytest.raises(KauditError) as e:
        render.render_template("broken.j2", p={"path": "/x"})
    assert e.value.message.startswith("template broken.j2:3:") and "missing" in e.value.message
    with pytest.raises(KauditError) as e:
        render.render_template("syntax.j2", x=1)
    assert e.value.message.startswith("template syntax.j2:2:")


# -- the command ----------------------------------------------------------------------------


def test_cli_default_is_the_scrape_config(cli):
    r = cli(["render-promtail"])
    assert r.code == 0 and r.err == ""
    assert r.out == render_collector_config("scrape-config", CollectorSettings())


def test_cli_options_reach_the_render(cli):
    r = cli([
        "render-promtail", "--format", "alloy", "--log-path", "/var/log/k/audit.log", "--loki-url", "https://loki.example:3100/",
        "--job", "audit", "--labels", "cluster=lab,env=dev", "--tenant", "team-a", "--style", "seed", "--structured-metadata", "on",
    ])
    assert r.code == 0, r.err
    p = alloy_pipeline(parse_alloy(r.out))
    assert p.path == "/var/log/k/audit.log" and p.push_url == "https://loki.example:3100/loki/api/v1/push"
    assert p.static == {"job": "audit", "cluster": "lab", "env": "dev", "node": 'sys.env("HOSTNAME")'}
    assert p.tenant == "team-a" and p.structured_metadata and len(p.json_stages) > 1


def test_cli_nested_values(cli):
    r = cli(["render-promtail", "--format", "helm-values", "--nest-under-promtail"])
    assert r.code == 0 and list(load_yaml(r.out)) == ["promtail"]


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--log-path", "/var/log/kubernetes-audit/audit*.log"], "--log-path"),
        (["--dynamic-labels", "audit_level,user"], "'user' cannot be a label"),
        (["--format", "fluentd"], "unknown format"),
        (["--labels", "novalue"], "NAME=VALUE"),
        (["--structured-metadata", "maybe"], "--structured-metadata"),
        (["--nest-under-promtail"], "only to --format helm-values"),
    ],
)
def test_cli_bad_input_is_one_clear_line(cli, argv, needle):
    r = cli(["render-promtail", *argv])
    assert r.code == 2
    assert r.out == ""
    assert r.err.startswith("error: ") and needle in r.err.splitlines()[0]
    assert "Traceback" not in r.err


def test_log_dir_of_path():
    assert render.log_dir(render.DEFAULT_LOG_PATH) == posixpath.dirname(render.DEFAULT_LOG_PATH)


STACK_GOLDEN = [("values-loki-stack.yaml", "loki-stack", "loki"), ("values-loki.yaml", "loki", "loki"), ("values-grafana.yaml", "loki", "grafana")]


@pytest.mark.parametrize("golden,stack,release", STACK_GOLDEN, ids=[g[0] for g in STACK_GOLDEN])
def test_stack_values_golden(golden, stack, release):
    got = normalise(stack_values.stack_values(stack, "kaudit")[release])
    path = DATA / golden
    if UPDATE:
        path.write_text(got, encoding="utf-8")
    assert got == path.read_text(encoding="utf-8")


def test_alloy_chart_values_golden():
    got = normalise(render.alloy_chart_values(CollectorSettings(structured_metadata=True)))
    path = DATA / "values-alloy.yaml"
    if UPDATE:
        path.write_text(got, encoding="utf-8")
    assert got == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("value", ["true", "null", "1.5", "a: b", "#x", "it's", "tab\there", "new\nline", "- item", "ünï"])
def test_awkward_values_read_back_exactly(value):
    s = CollectorSettings(labels=(("team", value),), tenant=value)
    for fmt, p in pipelines(s).items():
        assert p.static["team"] == value, fmt
        assert p.tenant == value, fmt

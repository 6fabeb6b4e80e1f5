"""The detect phase of `kaudit up` and `kaudit down`, with the stack phase, against the
helm and kubectl doubles: the ruler values each chart gets, the rules and dashboard
ConfigMaps, a second run, --no-detect, --alertmanager-url, and down. The overlay's keys are
checked against the pinned charts' values.yaml (tests/data/charts), and with a real helm
and the chart sources (as for test_helm_template) the charts render the ruler.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from ruamel.yaml import YAML

from doubles.logql import MetricQuery
from kaudit.core import charts
from kaudit.core.detect.model import rule_pack
from kaudit.engine.phases import detect, stack
from kaudit.engine.workflow import PHASE_NAMES, Status
from cluster_doubles import Cluster


def yaml(text):
    return YAML(typ="safe", pure=True).load(text)


@pytest.fixture
def cluster(tmp_path):
    return Cluster.make(tmp_path)


def opts(**kw):
    return SimpleNamespace(**{"stack": "loki-stack", "namespace": "kaudit", "detect": True, **kw})


def loki_values(cluster) -> dict:
    return json.loads(next(u for u in cluster.upgrades() if u["argv"][3] == "loki")["stdin"])


def test_detect_runs_after_stack_and_before_collector():
    assert PHASE_NAMES.index("stack") < PHASE_NAMES.index("detect") < PHASE_NAMES.index("collector")


def test_loki_stack_ruler_reads_local_rules_from_the_mounted_configmap(cluster):
    assert stack.run(cluster.context(opts())).status is Status.CHANGED
    loki = loki_values(cluster)["loki"]
    ruler = loki["config"]["ruler"]
    assert ruler["storage"] == {"type": "local", "local": {"directory": "/rules"}}
    assert ruler["enable_api"] is True and ruler["ring"]["kvstore"]["store"] == "inmemory"
    assert ruler["rule_path"].startswith("/tmp/") and ruler["wal"]["dir"].startswith("/data/")
    assert "alertmanager_url" not in ruler
    [vol] = loki["extraVolumes"]
    assert vol["configMap"] == {"name": "kaudit-loki-rules", "optional": True}
    [mount] = loki["extraVolumeMounts"]
    assert mount == {"name": vol["name"], "mountPath": "/rules/fake", "readOnly": True}
    # the stack's own settings are still there
    assert loki["enabled"] is True and loki_values(cluster)["promtail"]["enabled"] is False


def test_community_loki_ruler_settings(cluster):
    stack.run(cluster.context(opts(stack="loki", alertmanager_url="http://am.monitoring.svc:9093")))
    values = loki_values(cluster)
    assert values["ruler"]["enabled"] is True
    rc = values["loki"]["rulerConfig"]
    assert rc["storage"] == {"type": "local", "local": {"directory": "/etc/loki/rules"}}
    assert rc["alertmanager_url"] == "http://am.monitoring.svc:9093" and rc["rule_path"].startswith("/var/loki/")
    assert values["singleBinary"]["extraVolumeMounts"][0]["mountPath"] == "/etc/loki/rules/fake"
    assert values["singleBinary"]["replicas"] == 1 and values["deploymentMode"] == "Monolithic"


def test_alertmanager_v2_on_loki_2_6(cluster):
    stack.run(cluster.context(opts(alertmanager_url="http://am:9093")))
    ruler = loki_values(cluster)["loki"]["config"]["ruler"]
    assert ruler["alertmanager_url"] == "http://am:9093" and ruler["enable_alertmanager_v2"] is True


def test_no_detect_leaves_the_stack_values_alone(cluster):
    stack.run(cluster.context(opts(detect=False)))
    assert "config" not in loki_values(cluster)["loki"]


def test_detect_phase_applies_rules_and_dashboard_then_nothing_the_second_time(cluster):
    stack.run(cluster.context(opts()))  # creates the namespace, as in `kaudit up`
    first = detect.run(cluster.context(opts()))
    assert first.status is Status.CHANGED and f"{len(rule_pack())} rules in the Loki ruler" in first.message
    objs = cluster.objects()
    rules_cm = next(o for o in objs.values() if o["metadata"]["name"] == "kaudit-loki-rules")
    doc = yaml(rules_cm["data"]["kaudit-detect.yaml"])
    (group,) = doc["groups"]
    assert len(group["rules"]) == len(rule_pack())
    for r in group["rules"]:
        MetricQuery.of(r["expr"])
        assert r["alert"].startswith("KauditDetect_")
    dash_cm = next(o for o in objs.values() if o["metadata"]["name"] == "kaudit-detect-dashboard")
    assert dash_cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dash = json.loads(dash_cm["data"]["kubernetes-audit-detections.json"])
    kinds = [p["type"] for p in dash["panels"]]
    assert kinds == ["alertlist", "timeseries"] and dash["panels"][1]["title"] == "Findings by rule"
    assert len(dash["panels"][1]["targets"]) == len(rule_pack())

    second = detect.run(cluster.context(opts()))
    assert second.status is Status.UNCHANGED and "already in the Loki ruler" in second.message


def test_no_detect_removes_what_an_earlier_run_installed(cluster):
    stack.run(cluster.context(opts()))
    detect.run(cluster.context(opts()))
    gone = detect.run(cluster.context(opts(detect=False)))
    assert gone.status is Status.CHANGED and "kaudit-loki-rules" in gone.message
    names = {o["metadata"]["name"] for o in cluster.objects().values()}
    assert not names & {"kaudit-loki-rules", "kaudit-detect-dashboard"}
    assert detect.run(cluster.context(opts(detect=False))).status is Status.SKIPPED


def test_down_deletes_the_rules_and_dashboard(cluster):
    stack.run(cluster.context(opts()))
    detect.run(cluster.context(opts()))
    out = detect.run_down(cluster.context(opts()))
    assert out.status is Status.CHANGED and "kaudit-detect-dashboard" in out.message
    assert detect.run_down(cluster.context(opts())).status is Status.UNCHANGED


def test_dry_run_changes_nothing(cluster):
    out = detect.run(cluster.context(opts(), dry_run=True))
    assert out.status is Status.PLANNED
    assert cluster.kubectl_calls() == []


def test_external_loki_is_left_alone(cluster):
    out = detect.run(cluster.context(opts(loki_url="http://loki.example:3100")))
    assert out.status is Status.SKIPPED and cluster.kubectl_calls() == []


def test_up_cli_options(cli):
    r = cli(["up", "--no-detect", "--alertmanager-url", "http://am:9093"])
    assert r.code == 2 and "--alertmanager-url goes with detection" in r.err
    r = cli(["up", "--alertmanager-url", "am:9093"])
    assert r.code == 2 and "is not an http(s) URL" in r.err
    assert "--no-detect" in cli(["up", "--help"]).out


# -- against the charts' own values.yaml ----------------------------------------------------
#: the pinned charts' values.yaml, vendored by tests/data/charts (SOURCES.md there)
CHARTS_DATA = Path(__file__).parent / "data" / "charts"


def _chart_values(name: str, version: str) -> dict:
    path = CHARTS_DATA / f"{name}-{version}" / "values.yaml"
    assert path.is_file(), f"tests/data/charts has no {name}-{version}"
    return yaml(path.read_text())


def _paths(doc: dict, prefix=()):
    for k, v in doc.items():
        yield prefix + (k,)
        if isinstance(v, dict):
            yield from _paths(v, prefix + (k,))


#: maps whose content is Loki's own config (free-form in the chart's values)
OPEN = {("config",), ("loki", "rulerConfig")}


@pytest.mark.parametrize("stack_name,chart,version,under", [
    ("loki-stack", "loki", "2.16.0", ("loki",)),  # loki-stack's Loki subchart
    ("loki", "loki", charts.LOKI.version, ()),
])
def test_overlay_keys_exist_in_the_chart_values(stack_name, chart, version, under):
    values = _chart_values(chart, version)
    overlay = yaml(detect.ruler_values_text(stack_name, "http://am:9093"))
    for key in under:
        overlay = overlay[key]
    for path in _paths(overlay):
        if any(path[: len(o)] == o and len(path) > len(o) for o in OPEN):
            continue
        cur = values
        for k in path:
            assert isinstance(cur, dict) and k in cur, f"{'.'.join(path)} is not a key of {chart} {version} values.yaml"
            cur = cur[k]


@pytest.mark.parametrize("stack_name", ["loki-stack", "loki"])
def test_real_helm_renders_the_ruler_and_the_rules_mount(stack_name, tmp_path):
    """helm template of the pinned chart (helm and chart sources as for test_helm_template:
    KAUDIT_HELM, KAUDIT_CHARTS_DIR) with exactly the values kaudit installs: the ruler
    config reaches Loki's config and the rules ConfigMap is mounted, optional, in the
    tenant directory."""
    import base64

    from kaudit.core import stack_values
    from test_helm_template import template

    values = {rel: yaml(t) for rel, t in stack_values.stack_values(stack_name, "kaudit").items()}
    merged = detect.with_ruler(SimpleNamespace(options=opts(stack=stack_name)), stack_name, values)["loki"]
    docs = template(charts.STACKS[stack_name][0], merged, tmp_path)
    (sts,) = [d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "loki"]
    pod = sts["spec"]["template"]["spec"]
    (vol,) = [v for v in pod["volumes"] if v["name"] == "kaudit-rules"]
    assert vol["configMap"] == {"name": detect.RULES_CONFIGMAP, "optional": True}
    loki = next(c for c in pod["containers"] if c["name"] == "loki")
    (mount,) = [m for m in loki["volumeMounts"] if m["name"] == "kaudit-rules"]
    rules_dir = detect.RULES_DIR[stack_name]
    assert mount["mountPath"] == f"{rules_dir}/{detect.TENANT}"
    if stack_name == "loki-stack":
        secret = next(d for d in docs if d["kind"] == "Secret" and "loki.yaml" in d.get("data", {}))
        config = yaml(base64.b64decode(secret["data"]["loki.yaml"]).decode())
    else:
        cm = next(d for d in docs if d["kind"] == "ConfigMap" and "config.yaml" in d.get("data", {}))
        config = yaml(cm["data"]["config.yaml"])
    assert config["ruler"]["storage"] == {"type": "local", "local": {"directory": rules_dir}}
    assert config["ruler"]["enable_api"] is True

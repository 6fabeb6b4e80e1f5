"""Every chart kaudit pins is published, and kaudit's values fit that chart key by key.

The charts' own Chart.yaml/values.yaml and the published repository indexes are vendored
under tests/data/charts (SOURCES.md). A pinned version missing from its repository's index
fails here (helm would fail with "chart not found"); so does a key kaudit sets that the
chart does not have (helm would silently ignore it), and a PersistentVolumeClaim in a
default install (it stays Pending on a cluster without a volume provisioner).
"""

from __future__ import annotations

import re
import pytest

from chart_keys import COMMENTED, DATA, chart_dir, chart_values, deep_merge, load, unknown_keys
from kaudit.core import charts
from kaudit.core import render
from kaudit.core import shipper_manifest
from kaudit.core import stack_values

INDEXES = {"https://grafana.github.io/helm-charts": "grafana", "https://grafana-community.github.io/helm-charts": "grafana-community"}
PINNED = sorted({c for stack in charts.STACKS.values() for c in stack} | set(charts.COLLECTOR_CHARTS.values()), key=lambda c: c.chart)



def index(repo: str) -> dict:
    return load(DATA / "index" / f"{INDEXES[repo]}.yaml")


# -- published ---------------------------------------------------------------------


@pytest.mark.parametrize("chart", PINNED, ids=[c.chart for c in PINNED])
def test_pinned_version_is_published_in_its_repository(chart):
    idx = index(chart.repo)
    published = idx["published_versions"].get(chart.chart, [])
    assert chart.version in published, f"{chart.chart} {chart.version} is not in {chart.repo}/index.yaml; published: {published[:5]}"
    [entry] = [e for e in idx["entries"][chart.chart] if e["version"] == chart.version]
    meta = load(chart_dir(chart.chart, chart.version) / "Chart.yaml")
    assert (meta["name"], str(meta["version"])) == (chart.chart, chart.version)
    # what kaudit tells the user the chart runs is what the published chart says
    assert str(entry["appVersion"]).lstrip("v") in chart.app_version or chart is charts.LOKI_STACK
    assert bool(entry.get("deprecated", False)) == chart.deprecated


def test_community_pins_are_current():
    # "prefer a current one": nothing newer of the same major is published than what kaudit pins
    for chart in (charts.LOKI, charts.GRAFANA):
        versions = index(chart.repo)["published_versions"][chart.chart]
        newest = max(versions, key=lambda v: tuple(int(x) for x in re.findall(r"\d+", v)[:3]))
        assert chart.version == newest, f"{chart.chart}: pinned {chart.version}, newest published {newest}"


def _caret_tilde_match(spec: str, version: str) -> bool:
    want = tuple(int(x) for x in spec[1:].split("."))
    have = tuple(int(x) for x in version.split("."))
    if spec[0] == "^":
        return have[0] == want[0] and have >= want
    return have[:2] == want[:2] and have >= want


def test_loki_stack_subcharts_resolve_to_the_vendored_versions_and_loki_2_6_1():
    # loki-stack ships ranges, not a lock: the highest published version in range is what helm fetches
    reqs = load(chart_dir("loki-stack", "2.10.3") / "requirements.yaml")["dependencies"]
    published = index(charts.GRAFANA_REPO)["published_versions"]
    resolved = {}
    for dep in reqs:
        if dep["name"] in ("loki", "grafana"):
            candidates = [v for v in published[dep["name"]] if re.fullmatch(r"\d+\.\d+\.\d+", v) and _caret_tilde_match(dep["version"], v)]
            resolved[dep["name"]] = max(candidates, key=lambda v: tuple(int(x) for x in v.split(".")))
    assert resolved == {"loki": "2.16.0", "grafana": "6.43.5"}
    loki = chart_values("loki", "2.16.0")
    assert loki["image"]["tag"] == charts.LOKI_VERSIONS["loki-stack"][0]


# -- key by key --------------------------------------------------------------------

def test_keys_documented_only_in_comments_are_in_the_comments():
    for (_, _), (d, line) in COMMENTED.items():
        assert line in (DATA / d / "values.yaml").read_text().splitlines()


def loki_stack_values() -> dict:
    """loki-stack's values with each enabled subchart's own values under its name, as helm merges them."""
    merged = chart_values("loki-stack", "2.10.3")
    for sub, version in (("loki", "2.16.0"), ("grafana", "6.43.5")):
        merged[sub] = deep_merge(chart_values(sub, version), merged[sub])
    return merged


STORAGE = [None, stack_values.LokiStorage("local-path", "20Gi"), stack_values.LokiStorage(None, "5Gi")]


@pytest.mark.parametrize("storage", STORAGE, ids=["emptydir", "class", "default-class"])
@pytest.mark.parametrize("stack_name", list(charts.STACKS))
def test_stack_values_use_only_keys_the_chart_has(stack_name, storage):
    for chart in charts.STACKS[stack_name]:
        ours = render.parse_yaml(stack_values.stack_values(stack_name, "kaudit", storage)[chart.release], chart.chart)
        theirs = loki_stack_values() if chart is charts.LOKI_STACK else chart_values(chart.chart, chart.version)
        assert unknown_keys(ours, theirs, chart.chart) == [], f"{chart.chart} {chart.version}"


COLLECTOR_SETTINGS = [
    render.CollectorSettings(),
    render.CollectorSettings(tenant="team-a", structured_metadata=True, labels=(("cluster", "lab"),)),
]


@pytest.mark.parametrize("settings", COLLECTOR_SETTINGS, ids=["default", "tenant-sm-labels"])
@pytest.mark.parametrize("collector", list(charts.COLLECTOR_CHARTS))
def test_collector_values_use_only_keys_the_chart_has(collector, settings):
    chart = charts.COLLECTOR_CHARTS[collector]
    s = settings.checked()
    text = render.render_collector_config("helm-values", s) if collector == "promtail" else render.alloy_chart_values(s)
    ours = render.parse_yaml(text, collector)
    assert unknown_keys(ours, chart_values(chart.chart, chart.version), chart.chart) == []


def test_the_key_check_catches_a_key_the_chart_does_not_have():
    theirs = chart_values("loki", charts.LOKI.version)
    assert unknown_keys({"singleBinary": {"persistance": {"enabled": False}}}, theirs, "loki") == ["singleBinary.persistance"]
    assert unknown_keys({"monolithic": {"replicas": 1}}, theirs, "loki") == ["monolithic"]
    assert unknown_keys({"loki": {"storage": "filesystem"}}, theirs, "loki") == ["loki.storage: the chart has a map here, kaudit sets a str"]


# -- no claim by default ---------------------------------------------------------------


def test_default_stacks_create_no_persistent_volume_claim():
    loki = deep_merge(chart_values("loki", charts.LOKI.version), render.parse_yaml(stack_values.stack_values("loki", "k")["loki"], "loki"))
    assert chart_values("loki", charts.LOKI.version)["singleBinary"]["persistence"]["enabled"] is True, "the chart's own default is a PVC"
    assert loki["singleBinary"]["persistence"]["enabled"] is False
    assert loki["minio"]["enabled"] is False  # MinIO would bring its own claim
    grafana = deep_merge(chart_values("grafana", charts.GRAFANA.version), render.parse_yaml(stack_values.stack_values("loki", "k")["grafana"], "g"))
    assert grafana["persistence"]["enabled"] is False
    stack = deep_merge(loki_stack_values(), render.parse_yaml(stack_values.stack_values("loki-stack", "k")["loki"], "loki-stack"))
    assert stack["loki"]["persistence"]["enabled"] is False and stack["grafana"]["persistence"]["enabled"] is False


def test_persistence_flags_turn_a_claim_on_in_each_chart_s_own_keys():
    s = stack_values.LokiStorage.from_flags("local-path", "20Gi")
    loki = render.parse_yaml(stack_values.stack_values("loki", "k", s)["loki"], "loki")["singleBinary"]["persistence"]
    assert loki == {"enabled": True, "size": "20Gi", "storageClass": "local-path"}
    old = render.parse_yaml(stack_values.stack_values("loki-stack", "k", s)["loki"], "loki-stack")["loki"]["persistence"]
    assert old == {"enabled": True, "size": "20Gi", "storageClassName": "local-path"}
    # --loki-size alone: the default StorageClass, so no class key at all
    d = render.parse_yaml(stack_values.stack_values("loki", "k", stack_values.LokiStorage.from_flags(None, "5Gi"))["loki"], "loki")
    assert d["singleBinary"]["persistence"] == {"enabled": True, "size": "5Gi"}


@pytest.mark.parametrize("flags,error", [
    (("Fast_SSD", None), "--loki-storage-class: 'Fast_SSD' is not a StorageClass name"),
    ((None, "10GB"), "--loki-size: '10GB' is not a size such as 10Gi or 500Mi"),
    ((None, "0Gi"), "--loki-size: '0Gi' is not a size"),
])
def test_bad_persistence_flags_are_usage_errors(flags, error):
    from kaudit.core.errors import UsageError

    with pytest.raises(UsageError) as e:
        stack_values.LokiStorage.from_flags(*flags)
    assert e.value.message.startswith(error)


# -- Grafana's datasource sidecar in loki-stack ---------------------------------------------


def test_loki_stack_datasource_sidecar_selects_only_kaudit_s_label():
    values = render.parse_yaml(stack_values.stack_values("loki-stack", "kaudit")["loki"], "loki-stack")
    sidecar = deep_merge(loki_stack_values(), values)["grafana"]["sidecar"]["datasources"]
    assert chart_values("loki-stack", "2.10.3")["grafana"]["sidecar"]["datasources"]["label"] == "", "the chart's own: any label"
    assert (sidecar["label"], sidecar["labelValue"]) == stack_values.DATASOURCE_LABEL
    assert sidecar["resource"] == "configmap"
    # the chart labels its datasource ConfigMap with exactly the sidecar's label and value
    tmpl = (chart_dir("loki-stack", "2.10.3") / "templates" / "datasources.yaml").read_text()
    assert "{{ .Values.grafana.sidecar.datasources.label }}: {{ .Values.grafana.sidecar.datasources.labelValue | quote }}" in tmpl


# -- positions survive a reboot ---------------------------------------------------------------


def test_every_collector_keeps_positions_on_a_host_path_under_var_lib():
    s = render.CollectorSettings().checked()
    promtail = render.parse_yaml(render.render_collector_config("helm-values", s), "promtail")
    assert promtail["config"]["positions"]["filename"] == "/var/lib/promtail/positions.yaml"
    vols = {v["name"]: v for v in promtail["defaultVolumes"]}
    mounts = {m["mountPath"]: m["name"] for m in promtail["defaultVolumeMounts"]}
    host = vols[mounts["/var/lib/promtail"]]["hostPath"]["path"]
    assert host.startswith("/var/lib/") and "/run" not in {v["hostPath"]["path"] for v in vols.values()}

    alloy = render.parse_yaml(render.alloy_chart_values(s), "alloy")
    path = alloy["alloy"]["storagePath"]
    mount = next(m for m in alloy["alloy"]["mounts"]["extra"] if m["mountPath"] == path)
    vol = next(v for v in alloy["controller"]["volumes"]["extra"] if v["name"] == mount["name"])
    assert vol["hostPath"]["path"].startswith("/var/lib/")

    docs = render.parse_yaml_documents(shipper_manifest.render_shipper_manifest(shipper_manifest.ShipperDeploy(sources=(("kaudit/shipper/__main__.py", ""),))), "s")
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
    positions = args[args.index("--positions") + 1]
    vol = next(v for v in ds["spec"]["template"]["spec"]["volumes"] if v["name"] == "positions")
    assert positions.startswith(vol["hostPath"]["path"]) and vol["hostPath"]["path"].startswith("/var/lib/")

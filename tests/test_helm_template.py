"""The real helm renders every stack and collector from kaudit's values, and (where a real
kube-apiserver runs) the API server accepts what it rendered.

helm cannot reach chart repositories here, so the pinned charts come from local copies:
$KAUDIT_CHARTS_DIR/<chart>-<version>/ (loki-stack with its subcharts under charts/). The
tests skip with one line when helm or the charts are absent; .ci/run sets
KAUDIT_REQUIRE_HELM_TEMPLATE=1 when helm is on PATH, and then a missing chart fails.
helm built without release flags assumes Kubernetes v1.20: --kube-version says 1.36.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from kaudit.core import charts
from kaudit.core import render
from kaudit.core import shipper_manifest
from kaudit.core import stack_values

KUBE_VERSION = "1.36.0"
NAMESPACE = "kaudit"


def helm_bin() -> str:
    path = os.environ.get("KAUDIT_HELM") or shutil.which("helm")
    if not path:
        pytest.skip("helm is not on PATH (KAUDIT_HELM names another)")
    return path


def chart_path(chart: charts.Chart) -> Path:
    root = os.environ.get("KAUDIT_CHARTS_DIR")
    d = Path(root) / f"{chart.chart}-{chart.version}" if root else None
    if d is None or not (d / "Chart.yaml").is_file():
        msg = f"no local copy of chart {chart.chart} {chart.version}: set KAUDIT_CHARTS_DIR to a folder holding {chart.chart}-{chart.version}/"
        if os.environ.get("KAUDIT_REQUIRE_HELM_TEMPLATE") == "1":
            pytest.fail(msg + " (helm is on PATH, so these tests must run)")
        pytest.skip(msg)
    return d


def template(chart: charts.Chart, values: dict, tmp_path: Path) -> list[dict]:
    helm = helm_bin()
    path = chart_path(chart)
    vfile = tmp_path / f"{chart.release}-values.json"
    vfile.write_text(json.dumps(values))
    r = subprocess.run(
        [helm, "template", chart.release, str(path), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION, "-f", str(vfile)],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, f"helm template {chart.chart} {chart.version} failed: {r.stderr[-2000:]}"
    return [d for d in YAML(typ="safe", pure=True).load_all(r.stdout) if d]


def stack_objects(stack: str, tmp_path: Path, storage=None) -> list[dict]:
    texts = stack_values.stack_values(stack, NAMESPACE, storage)
    out = []
    for chart in charts.STACKS[stack]:
        out += template(chart, render.parse_yaml(texts[chart.release], chart.chart), tmp_path)
    return out


def collector_objects(collector: str, tmp_path: Path) -> list[dict]:
    s = render.CollectorSettings(loki_url=charts.loki_base_url(NAMESPACE)).checked()
    text = render.render_collector_config("helm-values", s) if collector == "promtail" else render.alloy_chart_values(s)
    return template(charts.COLLECTOR_CHARTS[collector], render.parse_yaml(text, collector), tmp_path)


def of_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o.get("kind") == kind]


def claims(objs: list[dict]) -> list[str]:
    """Every PersistentVolumeClaim the objects would create, stand-alone or from a template."""
    names = [o["metadata"]["name"] for o in of_kind(objs, "PersistentVolumeClaim")]
    for sts in of_kind(objs, "StatefulSet"):
        names += [t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates") or []]
    return names


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def host_paths(obj: dict) -> dict[str, str]:
    """mountPath -> hostPath path for every hostPath volume of the workload's first container."""
    vols = {v["name"]: v["hostPath"]["path"] for v in pod_spec(obj).get("volumes") or [] if "hostPath" in v}
    out = {}
    for c in pod_spec(obj)["containers"]:
        for m in c.get("volumeMounts") or []:
            if m["name"] in vols:
                out[m["mountPath"]] = vols[m["name"]]
    return out


# -- stacks ---------------------------------------------------------------------------


@pytest.mark.parametrize("stack", list(charts.STACKS))
def test_default_stack_renders_without_any_claim_and_serves_loki_where_kaudit_looks(stack, tmp_path):
    objs = stack_objects(stack, tmp_path)
    assert claims(objs) == []
    services = {s["metadata"]["name"]: [p["port"] for p in s["spec"]["ports"]] for s in of_kind(objs, "Service")}
    assert charts.LOKI_PORT in services[charts.LOKI_SERVICE], services
    access = charts.GRAFANA_ACCESS[stack]
    assert access.port in services[access.service]
    secrets = {s["metadata"]["name"]: s for s in of_kind(objs, "Secret")}
    assert access.secret_key in (secrets[access.secret].get("data") or {}) | (secrets[access.secret].get("stringData") or {})


@pytest.mark.parametrize("stack", list(charts.STACKS))
def test_storage_class_flag_renders_a_claim_of_that_class(stack, tmp_path):
    objs = stack_objects(stack, tmp_path, stack_values.LokiStorage("local-path", "20Gi"))
    templates = [t for s in of_kind(objs, "StatefulSet") for t in s["spec"].get("volumeClaimTemplates") or []]
    pvcs = templates + of_kind(objs, "PersistentVolumeClaim")
    assert len(pvcs) == 1, claims(objs)
    assert pvcs[0]["spec"]["storageClassName"] == "local-path"
    assert pvcs[0]["spec"]["resources"]["requests"]["storage"] == "20Gi"


def test_community_loki_config_has_filesystem_storage_v13_and_structured_metadata(tmp_path):
    objs = stack_objects("loki", tmp_path)
    configs = [o for o in of_kind(objs, "ConfigMap") + of_kind(objs, "Secret") if "config.yaml" in (o.get("data") or {})]
    assert configs, "the chart renders Loki's config.yaml"
    config = YAML(typ="safe", pure=True).load(configs[0]["data"]["config.yaml"])
    [schema] = config["schema_config"]["configs"]
    assert (schema["store"], schema["schema"], schema["object_store"]) == ("tsdb", "v13", "filesystem")
    assert config["limits_config"]["allow_structured_metadata"] is True
    assert config["common"]["replication_factor"] == 1
    kinds = {o["kind"] for o in objs}
    assert "Deployment" not in kinds or all("gateway" not in o["metadata"]["name"] for o in of_kind(objs, "Deployment"))


def test_loki_stack_grafana_provisions_only_kaudit_s_datasource(tmp_path):
    objs = stack_objects("loki-stack", tmp_path)
    key, value = stack_values.DATASOURCE_LABEL
    labelled = [o for o in of_kind(objs, "ConfigMap") if (o["metadata"].get("labels") or {}).get(key) == value]
    assert len(labelled) == 1 and "type: loki" in next(iter(labelled[0]["data"].values()))
    [grafana] = [d for d in of_kind(objs, "Deployment") if "grafana" in d["metadata"]["name"]]
    sidecars = [c for c in pod_spec(grafana).get("containers", []) + pod_spec(grafana).get("initContainers", [])
                if any(e.get("name") == "FOLDER" and "datasources" in str(e.get("value")) for e in c.get("env") or [])]
    assert sidecars, "a datasource sidecar runs"
    for c in sidecars:
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert (env["LABEL"], env.get("LABEL_VALUE")) == (key, value)


# -- collectors --------------------------------------------------------------------------


def test_promtail_keeps_positions_on_var_lib_not_run(tmp_path):
    objs = collector_objects("promtail", tmp_path)
    [ds] = of_kind(objs, "DaemonSet")
    paths = host_paths(ds)
    assert paths["/var/lib/promtail"] == render.STATE_DIRS["promtail"]
    assert "/run/promtail" not in paths and "/run/promtail" not in paths.values()
    assert paths[render.log_dir(render.DEFAULT_LOG_PATH)] == render.log_dir(render.DEFAULT_LOG_PATH)
    [secret] = [s for s in of_kind(objs, "Secret") if "promtail.yaml" in (s.get("stringData") or s.get("data") or {})]
    text = (secret.get("stringData") or {}).get("promtail.yaml")
    if text is None:
        import base64

        text = base64.b64decode(secret["data"]["promtail.yaml"]).decode()
    config = YAML(typ="safe", pure=True).load(text)
    assert config["positions"]["filename"] == "/var/lib/promtail/positions.yaml"
    [job] = config["scrape_configs"]  # audit only: the chart's kubernetes-pods job is off
    [target] = job["static_configs"]
    assert target["labels"]["__path__"] == render.DEFAULT_LOG_PATH
    tolerated = {t["key"] for t in pod_spec(ds).get("tolerations") or []}
    assert "node-role.kubernetes.io/control-plane" in tolerated
    assert claims(objs) == []


def test_alloy_keeps_its_data_on_var_lib_and_runs_on_control_planes(tmp_path):
    objs = collector_objects("alloy", tmp_path)
    [ds] = of_kind(objs, "DaemonSet")
    paths = host_paths(ds)
    assert paths["/var/lib/alloy/data"] == render.STATE_DIRS["alloy"]
    args = " ".join(pod_spec(ds)["containers"][0].get("args") or [])
    assert "--storage.path=/var/lib/alloy/data" in args
    assert "node-role.kubernetes.io/control-plane" in {t["key"] for t in pod_spec(ds).get("tolerations") or []}
    assert claims(objs) == []


# -- a real v1.36 API server accepts every rendered object ---------------------------------


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory):
    from real_apiserver import start

    api = start(tmp_path_factory.mktemp("apiserver"))
    yield api
    api.stop()


def test_a_real_apiserver_accepts_every_rendered_object(apiserver, tmp_path):
    apiserver.kubectl("create", "namespace", NAMESPACE)
    # kube-controller-manager creates every namespace's default ServiceAccount; none runs here
    apiserver.kubectl("create", "serviceaccount", "default", "-n", NAMESPACE)
    from kaudit.core.detect.model import rule_pack
    from kaudit.engine.phases import detect

    everything = []
    for stack in charts.STACKS:
        everything += stack_objects(stack, tmp_path)
        # what a default `kaudit up` installs: the Loki release with the ruler turned on
        texts = stack_values.stack_values(stack, NAMESPACE, None)
        chart = charts.STACKS[stack][0]
        values = detect.merge(render.parse_yaml(texts[chart.release], chart.chart),
                              render.parse_yaml(detect.ruler_values_text(stack, "http://alertmanager:9093"), "ruler"))
        everything += template(chart, values, tmp_path)
    everything += detect.objects(NAMESPACE, rule_pack())
    for collector in charts.COLLECTOR_CHARTS:
        everything += collector_objects(collector, tmp_path)
    dashboard = render.parse_yaml(stack_values.render_dashboard_configmap(NAMESPACE), "dashboard")
    shipper = render.parse_yaml_documents(shipper_manifest.render_shipper_manifest(shipper_manifest.ShipperDeploy(sources=(("kaudit/shipper/__main__.py", "print(1)\n"),))), "s")
    everything += [dashboard, *shipper]
    # CRD instances need their CRDs, which nothing here installs; everything else must pass
    # `helm test` hooks are not installed by helm upgrade --install, which is what kaudit runs
    installed = [o for o in everything if "test" not in (o.get("metadata", {}).get("annotations") or {}).get("helm.sh/hook", "")]
    plain = [o for o in installed if o.get("apiVersion", "").split("/")[0] in
             ("v1", "apps", "rbac.authorization.k8s.io", "policy", "batch", "networking.k8s.io", "autoscaling")]
    for o in plain:
        if o["kind"] not in ("ClusterRole", "ClusterRoleBinding", "Namespace"):
            o["metadata"].setdefault("namespace", NAMESPACE)  # helm template leaves some without one
    r = apiserver.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": plain}).encode(), check=False)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    assert r.stdout.decode().count("(server dry run)") == len(plain)

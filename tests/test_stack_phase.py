"""The stack phase of `kaudit up` against the helm and kubectl doubles."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from ruamel.yaml import YAML

from kaudit.core import charts
from kaudit.core import stack_values
from kaudit.core.errors import KauditError, PhaseError
from kaudit.engine.phases import stack
from kaudit.engine.workflow import PHASES, Status, run_phase
from cluster_doubles import Cluster, argv_option, out

STACK_PHASE = next(p for p in PHASES if p.name == "stack")


def yaml(text):
    return YAML(typ="safe", pure=True).load(text)


@pytest.fixture
def cluster(tmp_path):
    return Cluster.make(tmp_path)


def test_loki_stack_installs_with_grafana_and_without_promtail(cluster):
    ctx = cluster.context(SimpleNamespace(stack="loki-stack", namespace="kaudit", helm_timeout="10m"))
    outcome = run_phase(STACK_PHASE, ctx)
    assert outcome.status is Status.CHANGED

    calls = [c["argv"] for c in cluster.helm_calls()]
    assert calls[0] == ["helm", "version", "--short"]
    [up] = cluster.upgrades()
    kc = str(cluster.root / "kubeconfig")
    assert up["argv"] == [
        "helm", "upgrade", "--install", "loki", "loki-stack", "--repo", "https://grafana.github.io/helm-charts",
        "--version", "2.10.3", "--namespace", "kaudit", "--create-namespace", "--wait", "--timeout", "10m0s",
        "-f", "-", "--kubeconfig", kc,
    ]
    values = json.loads(up["stdin"])
    assert values == yaml(stack_values.stack_values("loki-stack", "kaudit")["loki"])
    assert values["promtail"]["enabled"] is False
    assert values["grafana"]["enabled"] is True and values["grafana"]["sidecar"]["datasources"]["enabled"] is True
    assert values["loki"]["enabled"] is True

    [apply] = cluster.kubectl_calls()
    assert apply["argv"] == ["kubectl", "--kubeconfig", kc, "apply", "-f", "-"]
    [cm] = json.loads(apply["stdin"])["items"]
    assert cm["metadata"]["name"] == charts.DASHBOARD_CONFIGMAP and cm["metadata"]["labels"]["grafana_dashboard"] == "1"

    assert "deprecated and runs Loki 2.6.1" in out(ctx)
    text = "\n".join(ctx.facts["grafana_access"])  # the up runner prints these after its summary
    assert f"kubectl --kubeconfig {kc} -n kaudit port-forward svc/loki-grafana 3000:80" in text
    assert "get secret loki-grafana -o jsonpath='{.data.admin-password}' | base64 -d" in text
    assert "http://localhost:3000" in text
    assert ctx.facts["loki_version"] == "2.6.1" and ctx.facts["loki_structured_metadata"] is False
    assert ctx.facts["loki_service"] == "loki" and ctx.facts["loki_port"] == 3100
    assert ctx.facts["loki_url"] == "http://loki.kaudit.svc:3100"


def test_second_run_changes_nothing_and_says_so(cluster):
    opts = SimpleNamespace(stack="loki-stack")
    assert stack.run(cluster.context(opts)).status is Status.CHANGED
    before = cluster.helm_state()
    n_calls = len(cluster.helm_calls())
    outcome = stack.run(cluster.context(opts))
    assert outcome.status is Status.UNCHANGED and "already installed" in outcome.message
    second = [c["argv"][1:3] for c in cluster.helm_calls()[n_calls:]]
    assert ["upgrade", "--install"] not in second
    assert ["list", "--namespace"] in second and ["get", "values"] in second
    assert cluster.helm_state() == before
    assert cluster.kubectl_calls()[-1]["argv"][-3:] == ["apply", "-f", "-"]


def test_drifted_release_is_upgraded(cluster):
    opts = SimpleNamespace(stack="loki-stack")
    stack.run(cluster.context(opts))
    state = cluster.helm_state()
    state["releases"]["kaudit/loki"]["values"]["grafana"]["enabled"] = False  # someone changed it by hand
    cluster.set_helm_state(state)
    outcome = stack.run(cluster.context(opts))
    assert outcome.status is Status.CHANGED and "loki upgraded" in outcome.message
    assert len(cluster.upgrades()) == 2
    assert cluster.helm_state()["releases"]["kaudit/loki"]["row"]["revision"] == "2"

    state = cluster.helm_state()
    state["releases"]["kaudit/loki"]["row"]["chart"] = "loki-stack-2.9.0"  # an older chart version
    cluster.set_helm_state(state)
    assert stack.run(cluster.context(opts)).status is Status.CHANGED
    assert cluster.helm_state()["releases"]["kaudit/loki"]["row"]["chart"] == "loki-stack-2.10.3"


def test_loki_stack_option_installs_community_loki_and_grafana(cluster):
    ctx = cluster.context(SimpleNamespace(stack="loki", namespace="audit"))
    assert stack.run(ctx).status is Status.CHANGED
    ups = cluster.upgrades()
    assert [(u["argv"][3], u["argv"][4], argv_option(u["argv"], "--version"), argv_option(u["argv"], "--repo")) for u in ups] == [
        ("loki", "loki", "18.11.0", "https://grafana-community.github.io/helm-charts"),
        ("grafana", "grafana", charts.GRAFANA.version, "https://grafana-community.github.io/helm-charts"),
    ]
    assert all(argv_option(u["argv"], "--namespace") == "audit" for u in ups)
    loki = json.loads(ups[0]["stdin"])
    assert loki["deploymentMode"] == "Monolithic"
    assert loki["loki"]["commonConfig"]["replication_factor"] == 1
    assert loki["loki"]["storage"]["type"] == "filesystem"
    [schema] = loki["loki"]["schemaConfig"]["configs"]
    assert schema["schema"] == "v13" and schema["store"] == "tsdb"
    assert loki["loki"]["limits_config"]["allow_structured_metadata"] is True
    assert loki["singleBinary"]["replicas"] == 1
    assert all(loki[t]["replicas"] == 0 for t in ("read", "write", "backend"))
    grafana = json.loads(ups[1]["stdin"])
    [ds] = grafana["datasources"]["datasources.yaml"]["datasources"]
    assert ds["type"] == "loki" and ds["url"] == "http://loki.audit.svc:3100"
    assert "deprecated" not in out(ctx)
    access = "\n".join(ctx.facts["grafana_access"])
    assert "svc/grafana 3000:80" in access and "get secret grafana " in access
    assert ctx.facts["loki_structured_metadata"] is True and ctx.facts["loki_version"].startswith("3.")
    assert stack.run(cluster.context(SimpleNamespace(stack="loki", namespace="audit"))).status is Status.UNCHANGED


def test_helm_missing_is_a_clear_error(tmp_path):
    cluster = Cluster.make(tmp_path, helm=False)
    with pytest.raises(PhaseError) as e:
        run_phase(STACK_PHASE, cluster.context())
    assert e.value.message == "[stack] helm is not installed on local"
    assert "https://helm.sh/docs/intro/install/" in e.value.hint
    assert cluster.kubectl_calls() == []


def test_helm_2_is_refused(cluster):
    with pytest.raises(KauditError, match="helm v2.17.0 is too old"):
        stack.run(cluster.context(HELM_DOUBLE_VERSION='Client: &version.Version{SemVer:"v2.17.0", GitCommit:"a690bad"}'))
    assert cluster.upgrades() == []


def test_failed_upgrade_surfaces_helms_stderr_and_is_retried(cluster):
    with pytest.raises(PhaseError) as e:
        run_phase(STACK_PHASE, cluster.context(HELM_DOUBLE_FAIL="loki"))
    assert "Error: INSTALLATION FAILED: context deadline exceeded" in e.value.message
    assert "helm status loki -n kaudit" in e.value.hint
    assert [c for c in cluster.kubectl_calls() if "apply" in c["argv"]] == [], "nothing is applied after a failed install"
    # the release is recorded as failed, so the next run upgrades instead of calling it done
    assert stack.run(cluster.context()).status is Status.CHANGED
    assert len(cluster.upgrades()) == 2
    with pytest.raises(KauditError, match="Error: UPGRADE FAILED: context deadline exceeded"):
        state = cluster.helm_state()
        state["releases"]["kaudit/loki"]["values"] = {}
        cluster.set_helm_state(state)
        stack.run(cluster.context(HELM_DOUBLE_FAIL="loki"))


def test_unreachable_cluster_is_reported(cluster):
    ctx = cluster.context()
    ctx.kubeconfig = cluster.root / "missing-kubeconfig"
    with pytest.raises(KauditError) as e:
        stack.run(ctx)
    assert "cannot list Helm releases in namespace kaudit" in e.value.message
    assert "missing-kubeconfig" in e.value.message + e.value.hint


def test_dry_run_prints_the_plan_and_runs_nothing(cluster):
    ctx = cluster.context(SimpleNamespace(stack="loki"), dry_run=True)
    outcome = stack.run(ctx)
    assert outcome.status is Status.PLANNED
    assert cluster.helm_calls() == [] and cluster.kubectl_calls() == []
    text = out(ctx)
    assert "would run: helm upgrade --install loki loki --repo https://grafana-community.github.io/helm-charts --version 18.11.0" in text
    assert "would run: helm upgrade --install grafana grafana" in text
    assert "would apply: configmap/kaudit-dashboards" in text


def test_without_kubeconfig_helm_uses_its_default(cluster):
    stack.run(cluster.context(kubeconfig=False))
    assert all("--kubeconfig" not in c["argv"] for c in cluster.helm_calls())


def test_unknown_stack_is_a_usage_error(cluster):
    with pytest.raises(KauditError, match="unknown stack"):
        stack.run(cluster.context(SimpleNamespace(stack="elk")))


def test_switching_stacks_over_an_existing_release_is_refused(cluster):
    stack.run(cluster.context(SimpleNamespace(stack="loki-stack")))
    with pytest.raises(KauditError) as e:
        stack.run(cluster.context(SimpleNamespace(stack="loki")))
    assert e.value.message == "release loki in namespace kaudit runs chart loki-stack-2.10.3, not loki"
    assert "helm uninstall loki -n kaudit" in e.value.hint
    assert len(cluster.upgrades()) == 1


def test_chart_name_of_a_helm_list_row():
    from kaudit.adapters.helm import chart_name, go_duration

    assert chart_name("loki-stack-2.10.3") == "loki-stack"
    assert chart_name("loki-18.11.0") == "loki"
    assert chart_name("alloy-1.11.1-rc.1") == "alloy"
    assert [go_duration(s) for s in (300, 600, 45, 3725)] == ["5m0s", "10m0s", "45s", "1h2m5s"]


def test_loki_values_pass_the_community_charts_own_checks():
    """The fail conditions of grafana-community/helm-charts charts/loki/templates/validate.yaml
    that these values could hit, restated; helm itself cannot run here."""
    v = yaml(stack_values.stack_values("loki", "kaudit")["loki"])
    get = lambda path, default=None: _dig(v, path, default)  # noqa: E731
    assert "config" not in v, "top-level config is refused by the chart"
    assert not (get("test.enabled", True) and not get("lokiCanary.enabled", True)), "helm test needs the canary"
    assert not (get("minio.enabled", False) and not get("ignoreMinioDeprecation", False))
    assert get("loki.storage.type") == "filesystem" and get("singleBinary.replicas") == 1
    scalable = any(get(f"{t}.replicas", 0) for t in ("read", "write", "backend"))
    assert not scalable, "monolithic plus scalable replicas needs a transitional deploymentMode"
    assert get("deploymentMode") in ("SingleBinary", "Monolithic")
    assert get("loki.schemaConfig.configs") and not get("loki.useTestSchema", False)
    assert get("loki.commonConfig.replication_factor") == 1


def _dig(d, path, default=None):
    for key in path.split("."):
        if not isinstance(d, dict) or key not in d:
            return default
        d = d[key]
    return d

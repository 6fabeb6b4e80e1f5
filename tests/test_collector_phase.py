"""The collector phase of `kaudit up` (promtail, alloy, shipper, none) against the doubles."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from ruamel.yaml import YAML

from kaudit.core import charts
from kaudit.core import render
from kaudit.core.manifest import AuditSpec
from kaudit.core.errors import KauditError, PhaseError, UsageError
from kaudit.engine.phases import collector, stack
from kaudit.shipper import fields as F
from kaudit.engine.workflow import PHASES, Status, run_phase
from cluster_doubles import Cluster, argv_option, out
from render_support import alloy_pipeline, go_tpl, parse_alloy, promtail_pipeline

COLLECTOR_PHASE = next(p for p in PHASES if p.name == "collector")


def yaml(text):
    return YAML(typ="safe", pure=True).load(text)


@pytest.fixture
def cluster(tmp_path):
    return Cluster.make(tmp_path)


def opts(**kw):
    return SimpleNamespace(**kw)


def test_promtail_chart_with_rendered_values(cluster):
    spec = AuditSpec(log_path="/var/log/kube-audit/audit.log")
    ctx = cluster.context(opts(collector="promtail", stack="loki-stack", spec=spec, audit_spec=spec, helm_timeout=600))
    assert run_phase(COLLECTOR_PHASE, ctx).status is Status.CHANGED
    [up] = cluster.upgrades()
    argv = up["argv"]
    assert argv[3:5] == ["promtail", "promtail"]
    assert argv_option(argv, "--repo") == charts.GRAFANA_REPO and argv_option(argv, "--version") == "6.17.1"
    assert argv_option(argv, "--namespace") == "kaudit" and "--create-namespace" in argv and "--wait" in argv
    assert argv_option(argv, "--timeout") == "10m0s"
    values = json.loads(up["stdin"])
    expected = render.CollectorSettings(log_path="/var/log/kube-audit/audit.log", loki_url="http://loki.kaudit.svc:3100", cluster="lab")
    assert values == yaml(render.render_collector_config("helm-values", expected))
    assert values["extraVolumes"][0]["hostPath"]["path"] == "/var/log/kube-audit"
    assert values["config"]["clients"] == [{"url": "http://loki.kaudit.svc:3100/loki/api/v1/push"}]
    p = promtail_pipeline(yaml(go_tpl(values["config"]["snippets"]["extraScrapeConfigs"])), "", None)
    assert p.path == "/var/log/kube-audit/audit.log"
    assert p.structured_metadata == [], "loki-stack's Loki 2.6.1 takes no structured metadata"
    assert "end of life" in out(ctx)
    assert ctx.facts["collector_workload"] == "daemonset/promtail"


def test_promtail_on_loki3_sends_structured_metadata(cluster):
    collector.run(cluster.context(opts(stack="loki")))
    values = json.loads(cluster.upgrades()[0]["stdin"])
    p = promtail_pipeline(yaml(go_tpl(values["config"]["snippets"]["extraScrapeConfigs"])), "", None)
    assert p.structured_metadata == [n for n in F.STRUCTURED_METADATA if n not in F.DEFAULT_LABELS]


def test_collector_uses_the_loki_the_stack_phase_installed(cluster):
    ctx = cluster.context(opts(stack="loki", namespace="audit"))
    stack.run(ctx)
    collector.run(ctx)
    values = json.loads(cluster.upgrades()[-1]["stdin"])
    assert values["config"]["clients"][0]["url"] == "http://loki.audit.svc:3100/loki/api/v1/push"
    assert argv_option(cluster.upgrades()[-1]["argv"], "--namespace") == "audit"


def test_second_run_is_a_no_op(cluster):
    for kind in ("promtail", "alloy", "shipper"):
        o = opts(collector=kind)
        assert collector.run(cluster.context(o)).status is Status.CHANGED, kind
        n_up, n_apply = len(cluster.upgrades()), len(cluster.kubectl_calls())
        outcome = collector.run(cluster.context(o))
        assert outcome.status is Status.UNCHANGED, kind
        assert "already deployed" in outcome.message
        assert len(cluster.upgrades()) == n_up
        if kind == "shipper":
            assert len(cluster.kubectl_calls()) == n_apply + 1  # apply ran and reported unchanged


def test_alloy_chart_with_control_plane_toleration(cluster):
    ctx = cluster.context(opts(collector="alloy", stack="loki"))
    assert collector.run(ctx).status is Status.CHANGED
    [up] = cluster.upgrades()
    assert up["argv"][3:5] == ["alloy", "alloy"] and argv_option(up["argv"], "--version") == "1.11.1"
    values = json.loads(up["stdin"])
    c = values["controller"]
    assert c["type"] == "daemonset"
    assert {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"} in c["tolerations"]
    assert c["nodeSelector"] == {"node-role.kubernetes.io/control-plane": ""}
    [log_vol] = [v for v in c["volumes"]["extra"] if v["name"] == "kaudit-audit-log"]
    assert log_vol["hostPath"]["path"] == render.log_dir(render.DEFAULT_LOG_PATH)
    [log_mount] = [m for m in values["alloy"]["mounts"]["extra"] if m["name"] == "kaudit-audit-log"]
    assert log_mount["readOnly"] is True and log_mount["mountPath"] == log_vol["hostPath"]["path"]
    assert values["alloy"]["securityContext"]["runAsUser"] == 0
    p = alloy_pipeline(parse_alloy(go_tpl(values["alloy"]["configMap"]["content"])))
    assert p.path == render.DEFAULT_LOG_PATH and p.push_url == "http://loki.kaudit.svc:3100/loki/api/v1/push"
    assert p.structured_metadata, "Loki 3 stack: structured metadata on"
    assert "end of life" not in out(ctx)


def test_shipper_daemonset_applied_with_kubectl(cluster):
    ctx = cluster.context(opts(collector="shipper", stack="loki", shipper_image="registry.local/python:3.12-slim"))
    assert collector.run(ctx).status is Status.CHANGED
    assert cluster.upgrades() == []
    [apply] = cluster.kubectl_calls()
    assert apply["argv"] == ["kubectl", "--kubeconfig", str(cluster.root / "kubeconfig"), "apply", "-f", "-"]
    items = json.loads(apply["stdin"])["items"]
    assert [(i["kind"], i["metadata"]["name"]) for i in items] == [
        ("Namespace", "kaudit"), ("ConfigMap", charts.SHIPPER_CODE_CONFIGMAP), ("DaemonSet", charts.SHIPPER_NAME),
    ]
    ds = items[2]
    [c] = ds["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "registry.local/python:3.12-slim"
    assert c["args"][c["args"].index("--structured-metadata") + 1] == "on"
    assert c["args"][c["args"].index("--loki-url") + 1] == "http://loki.kaudit.svc:3100"
    code = items[1]["data"]
    assert "from kaudit.shipper.main import main" in code["kaudit__shipper____main__.py"]
    assert set(cluster.objects()) == {"Namespace//kaudit", "ConfigMap/kaudit/kaudit-shipper-code", "DaemonSet/kaudit/kaudit-shipper"}
    assert ctx.facts["collector_selector"] == "app.kubernetes.io/name=kaudit-shipper"


def test_shipper_on_loki_stack_sends_no_structured_metadata(cluster):
    collector.run(cluster.context(opts(collector="shipper")))
    ds = json.loads(cluster.kubectl_calls()[0]["stdin"])["items"][2]
    args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--structured-metadata") + 1] == "off"
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"] == "python:3.12-slim"


def test_structured_metadata_forced_on_loki_stack_is_refused(cluster):
    with pytest.raises(UsageError) as e:
        collector.run(cluster.context(opts(structured_metadata=True)))
    assert "Loki 2.6.1" in e.value.message and "--stack loki" in e.value.hint
    assert cluster.helm_calls() == []


def test_structured_metadata_can_be_turned_off_on_loki3(cluster):
    collector.run(cluster.context(opts(stack="loki", structured_metadata=False)))
    values = json.loads(cluster.upgrades()[0]["stdin"])
    assert "structured_metadata" not in values["config"]["snippets"]["extraScrapeConfigs"]


def test_collector_none_runs_nothing(cluster):
    outcome = run_phase(COLLECTOR_PHASE, cluster.context(opts(collector="none")))
    assert outcome.status is Status.SKIPPED
    assert cluster.helm_calls() == [] and cluster.kubectl_calls() == []


def test_failed_collector_install_surfaces_stderr(cluster):
    with pytest.raises(PhaseError) as e:
        run_phase(COLLECTOR_PHASE, cluster.context(opts(collector="alloy"), HELM_DOUBLE_FAIL="alloy"))
    assert e.value.message.startswith("[collector] helm could not install alloy (alloy-1.11.1)")
    assert "Error: INSTALLATION FAILED: context deadline exceeded" in e.value.message


def test_helm_missing_for_a_chart_collector(tmp_path):
    cluster = Cluster.make(tmp_path, helm=False)
    with pytest.raises(KauditError, match="helm is not installed"):
        collector.run(cluster.context(opts(collector="promtail")))
    # the shipper needs no helm
    assert collector.run(cluster.context(opts(collector="shipper"))).status is Status.CHANGED


def test_dry_run_plans_and_runs_nothing(cluster):
    for kind in ("promtail", "alloy", "shipper"):
        ctx = cluster.context(opts(collector=kind), dry_run=True)
        assert collector.run(ctx).status is Status.PLANNED
        assert "would " in out(ctx)
    assert cluster.helm_calls() == [] and cluster.kubectl_calls() == []


def test_kubectl_missing_for_the_shipper(tmp_path):
    cluster = Cluster.make(tmp_path)
    (cluster.root / "bin" / "kubectl").unlink()
    with pytest.raises(KauditError, match="kubectl is not installed"):
        collector.run(cluster.context(opts(collector="shipper")))


def test_unknown_collector(cluster):
    with pytest.raises(UsageError, match="unknown collector"):
        collector.run(cluster.context(opts(collector="fluentd")))


def test_with_the_real_up_options(cluster):
    from kaudit.engine.settings import UpOptions

    o = UpOptions(spec=AuditSpec(), collector="shipper", stack="loki-stack", cluster_name="lab")
    assert collector.run(cluster.context(o)).status is Status.CHANGED
    ds = json.loads(cluster.kubectl_calls()[0]["stdin"])["items"][2]
    c = ds["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "python:3.12-slim"
    assert c["args"][c["args"].index("--path") + 1] == AuditSpec().log_path


def test_kaudit_up_stack_and_collector_twice(cli, cluster, monkeypatch, tmp_path):
    """Through the command line: the second `kaudit up` changes nothing and says so."""
    for k, v in cluster.env.items():
        monkeypatch.setenv(k, v)
    (tmp_path / "node").mkdir()
    argv = ["up", "--host", "local", "--rootfs", tmp_path / "node", "--only", "stack,collector",
            "--kubeconfig", cluster.root / "kubeconfig", "--stack", "loki", "--collector", "alloy"]
    first = cli(argv)
    assert first.code == 0, first.err
    assert "port-forward svc/grafana 3000:80" in first.err
    assert len(cluster.upgrades()) == 3  # loki, grafana, alloy
    second = cli(argv)
    assert second.code == 0, second.err
    assert "nothing changed" in second.err
    assert len(cluster.upgrades()) == 3


def test_loki_tenant_reaches_the_collector(cluster):
    from kaudit.engine.settings import UpOptions

    collector.run(cluster.context(UpOptions(spec=AuditSpec(), loki_tenant="team-a", cluster_name="lab")))
    values = json.loads(cluster.upgrades()[0]["stdin"])
    assert values["config"]["clients"] == [{"url": "http://loki.kaudit.svc:3100/loki/api/v1/push", "tenant_id": "team-a"}]
    collector.run(cluster.context(UpOptions(spec=AuditSpec(), loki_tenant="team-a", collector="shipper", cluster_name="lab")))
    args = json.loads(cluster.kubectl_calls()[0]["stdin"])["items"][2]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--tenant") + 1] == "team-a"

"""The cluster label: the same static label in every collector's rendered config, with the
credentials as files; its default from the Lima instance; `kaudit query --cluster`."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from ruamel.yaml import YAML

from kaudit.core import render
from kaudit.core import shipper_manifest
from kaudit.core.loki_auth import LokiCredentials, pod_auth
from kaudit.adapters.hosts.base import Secret
from kaudit.core.query import Filters, build_logql
from kaudit.shipper import fields as F
from render_support import alloy_pipeline, parse_alloy, promtail_pipeline

AUTH = pod_auth(LokiCredentials(username="kaudit", password=Secret("pw-not-rendered"), ca_pem="PEM", ca_file="/x/ca.pem"))
SETTINGS = render.CollectorSettings(cluster="prod-eu", tenant="team-a", auth=AUTH, loki_url="https://loki.example.net")


def yaml(text):
    return YAML(typ="safe", pure=True).load(text)


def test_promtail_standalone_config_carries_the_label_and_credential_files():
    doc = yaml(render.render_collector_config("promtail-config", SETTINGS))
    p = promtail_pipeline(doc["scrape_configs"], "", None)
    assert p.static[F.CLUSTER_LABEL] == "prod-eu" and p.static[F.JOB_LABEL] == F.DEFAULT_JOB
    [client] = doc["clients"]
    assert client == {
        "url": "https://loki.example.net/loki/api/v1/push", "tenant_id": "team-a",
        "basic_auth": {"username": "kaudit", "password_file": "/etc/kaudit/loki-auth/password"},
        "tls_config": {"ca_file": "/etc/kaudit/loki-auth/ca.crt"},
    }
    scrape = yaml(render.render_collector_config("scrape-config", SETTINGS))
    assert scrape[0]["static_configs"][0]["labels"]["cluster"] == "prod-eu"


def test_alloy_config_carries_the_label_and_credential_files():
    root = parse_alloy(render.render_collector_config("alloy", SETTINGS))
    p = alloy_pipeline(root)
    assert p.static[F.CLUSTER_LABEL] == "prod-eu"
    endpoint = root.one("loki.write").one("endpoint")
    assert endpoint.one("basic_auth").attrs == {"username": "kaudit", "password_file": "/etc/kaudit/loki-auth/password"}
    assert endpoint.one("tls_config").attrs == {"ca_file": "/etc/kaudit/loki-auth/ca.crt"}


def test_every_collector_has_the_same_label_set():
    p = render.build_pipeline(SETTINGS)
    assert p.stream_label_names()[:3] == (F.JOB_LABEL, F.NODE_LABEL, F.CLUSTER_LABEL)
    args = shipper_manifest.ShipperDeploy(sources=(), cluster="prod-eu", auth=AUTH).args()
    assert args[args.index("--cluster") + 1] == "prod-eu"
    assert "pw-not-rendered" not in " ".join(args) + repr(AUTH) + repr(LokiCredentials(password=Secret("pw-not-rendered")))


def test_cluster_in_labels_is_refused_once_the_cluster_is_set():
    with pytest.raises(Exception, match="'cluster' is already set by kaudit") as e:
        render.CollectorSettings(cluster="a", labels=(("cluster", "b"),)).checked()
    assert "--cluster for the cluster label" in e.value.hint
    with pytest.raises(Exception, match="not a cluster name"):
        render.CollectorSettings(cluster="a b").checked()


def test_cluster_name_defaults_to_the_lima_instance(fake_lima):
    from kaudit.engine import cluster_name
    from kaudit.adapters.hosts.lima import LimaHost
    from kaudit.engine.ui import UI
    from kaudit.engine.workflow import UpContext

    ctx = UpContext(node=LimaHost("lab-2"), local=LimaHost("lab-2"), ui=UI(stream=io.StringIO()), options=SimpleNamespace())
    assert cluster_name.resolve(ctx) == "lab-2" and ctx.facts["cluster_name_source"] == "Lima instance lab-2"
    ctx = UpContext(node=LimaHost("lab-2"), local=LimaHost("lab-2"), ui=UI(stream=io.StringIO()), options=SimpleNamespace(cluster_name="given"))
    assert cluster_name.resolve(ctx) == "given"


def test_query_selects_the_cluster_label(cli):
    plan = build_logql(Filters(verb="get", user="alice"), cluster="prod-eu")
    assert plan.logql.startswith('{job="kubernetes-audit", cluster="prod-eu", verb="get"}')
    r = cli(["query", "--cluster", "prod-eu", "--resource", "secrets", "--logql"])
    assert r.code == 0 and r.out.startswith('{job="kubernetes-audit", cluster="prod-eu"}')


def test_render_promtail_takes_the_cluster(cli):
    r = cli(["render-promtail", "--format", "alloy", "--cluster", "prod-eu"])
    assert r.code == 0 and alloy_pipeline(parse_alloy(r.out)).static["cluster"] == "prod-eu"
    r = cli(["render-promtail", "--cluster", "a b"])
    assert r.code == 2 and "not a cluster name" in r.err

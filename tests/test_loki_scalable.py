"""Simple-scalable and distributed Loki: the values against the pinned chart key by key, the
chart's own refusals, credentials kept out of values and argv, and the stack phase with the
helm and kubectl doubles."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import pytest

from chart_keys import chart_values, deep_merge, load, unknown_keys, DATA
from cluster_doubles import Cluster, out
from kaudit.core import charts
from kaudit.core import loki_scalable as L
from kaudit.core import loki_sizing as S
from kaudit.core import render
from kaudit.core import stack_values
from kaudit.adapters.storage_credentials import Credentials
from kaudit.engine.phases import stack
from kaudit.engine.workflow import Status

ACCESS, SECRET = "AKIAKAUDITTESTKEY01", "kaudit-test-secret-value-0123456789"
GCS_KEY = json.dumps({"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\nkaudit-test-gcs-key\n"})

STORAGES = {
    "minio": L.ObjectStorage.from_flags("minio", None, None, None, None, None, L.SECRET_NAME),
    "s3": L.ObjectStorage.from_flags("s3", "audit", None, None, None, "eu-west-1", L.SECRET_NAME),
    "s3-endpoint-two-buckets": L.ObjectStorage.from_flags("s3", None, "audit-chunks", "audit-ruler", "http://minio.storage:9000", None, L.SECRET_NAME),
    "s3-pod-identity": L.ObjectStorage.from_flags("s3", "audit", None, None, None, None, None),
    "gcs": L.ObjectStorage.from_flags("gcs", "audit", None, None, None, None, L.SECRET_NAME),
    "gcs-workload-identity": L.ObjectStorage.from_flags("gcs", "audit", None, None, None, None, None),
}
PERSISTENCE = {"emptydir": None, "class": stack_values.LokiStorage("local-path", "20Gi")}


def scalable(mode="simple-scalable", storage="s3", persistence="emptydir", **sizing) -> L.ScalableLoki:
    z = S.size(S.SizingInput(mode=mode, **sizing))
    return L.ScalableLoki(mode, STORAGES[storage], z, PERSISTENCE[persistence])


def loki_values(sc: L.ScalableLoki) -> dict:
    return render.parse_yaml(stack_values.stack_values("loki", "kaudit", None, sc)["loki"], "loki")


def merged(v: dict) -> dict:
    return deep_merge(chart_values("loki", charts.LOKI.version), v)


ALL = [(m, s, p) for m in ("simple-scalable", "distributed") for s in STORAGES for p in PERSISTENCE]


@pytest.mark.parametrize("mode,storage,persistence", ALL, ids=["-".join(x) for x in ALL])
def test_values_use_only_keys_the_pinned_chart_has(mode, storage, persistence):
    v = loki_values(scalable(mode, storage, persistence, events_per_second=2000, retention_seconds=30 * 86400))
    assert unknown_keys(v, chart_values("loki", charts.LOKI.version), "loki") == []


def test_minio_is_open_in_the_chart_s_schema_and_bucket_names_are_its_commented_keys():
    # why chart_keys treats minio as free-form and bucketNames as a commented key
    schema = json.loads((DATA / f"loki-{charts.LOKI.version}" / "values.schema.json").read_text())
    assert schema["properties"]["minio"]["additionalProperties"] is True
    assert schema["properties"]["loki"]["properties"]["storage"]["additionalProperties"] is True


@pytest.mark.parametrize("mode,storage,persistence", ALL, ids=["-".join(x) for x in ALL])
def test_values_pass_the_chart_s_own_checks(mode, storage, persistence):
    """grafana-community/helm-charts charts/loki/templates/validate.yaml and _helpers.tpl
    (loki.commonStorageConfig), restated: helm itself cannot run here (see test_loki_helm_template)."""
    v = merged(loki_values(scalable(mode, storage, persistence)))
    assert "config" not in loki_values(scalable(mode, storage, persistence))
    object_storage = v["loki"]["storage"]["type"] in ("s3", "gcs", "azure", "swift", "alibabacloud", "cos", "bos")
    assert object_storage, "scalable targets need object storage"
    assert not (v["minio"]["enabled"] and not v.get("ignoreMinioDeprecation")), "the chart refuses MinIO without the flag"
    scalable_n = sum(v[t]["replicas"] for t in ("read", "write", "backend"))
    distributed_n = sum(v[t]["replicas"] for t in ("ingester", "distributor", "querier", "queryFrontend", "queryScheduler", "indexGateway", "compactor", "ruler"))
    assert v["singleBinary"]["replicas"] == 0
    if mode == "simple-scalable":
        assert v["deploymentMode"] == "SimpleScalable" and scalable_n > 0 and distributed_n == 0
    else:
        assert v["deploymentMode"] == "Distributed" and distributed_n > 0 and scalable_n == 0
    assert v["test"]["enabled"] is False or v["lokiCanary"]["enabled"] is True
    assert v["loki"]["schemaConfig"]["configs"] and not v["loki"]["useTestSchema"]
    [schema] = v["loki"]["schemaConfig"]["configs"]
    assert schema["object_store"] == ("gcs" if storage.startswith("gcs") else "s3")
    if not v["minio"]["enabled"]:
        # "Please define loki.storage.bucketNames.chunks" / ".ruler" (ruler is enabled by default)
        assert v["loki"]["storage"]["bucketNames"]["chunks"] and v["loki"]["storage"]["bucketNames"]["ruler"]
    assert v["loki"]["commonConfig"]["replication_factor"] <= (v["write"]["replicas"] or v["ingester"]["replicas"])
    assert v["gateway"]["enabled"] is True


@pytest.mark.parametrize("mode", ["simple-scalable", "distributed"])
def test_no_claim_without_a_storage_class_and_claims_with_one(mode):
    v = merged(loki_values(scalable(mode, "minio")))
    if mode == "simple-scalable":
        assert chart_values("loki", charts.LOKI.version)["write"]["persistence"]["volumeClaimsEnabled"] is True, "the chart's own default"
        assert v["write"]["persistence"]["volumeClaimsEnabled"] is False and v["backend"]["persistence"]["volumeClaimsEnabled"] is False
    # (singleBinary keeps the chart's claim setting: with 0 replicas and no monolithic mode it renders nothing)
    for target in ("ingester", "compactor", "indexGateway", "ruler"):
        assert v[target]["persistence"]["enabled"] is False, target
    assert v["minio"]["persistence"]["enabled"] is False
    c = loki_values(scalable(mode, "minio", "class"))
    if mode == "simple-scalable":
        assert c["write"]["persistence"] == {"volumeClaimsEnabled": True, "size": "20Gi", "storageClass": "local-path"}
    else:
        assert c["ingester"]["persistence"] == {"enabled": True, "claims": [{"name": "data", "accessModes": ["ReadWriteOnce"], "size": "20Gi", "storageClass": "local-path"}]}
    assert c["minio"]["persistence"] == {"enabled": True, "size": "20Gi", "storageClass": "local-path"}


def test_sized_limits_replicas_and_retention_reach_the_values():
    sc = scalable("distributed", "gcs", events_per_second=50_000, mean_event_bytes=2000, retention_seconds=30 * 86400)
    v = loki_values(sc)
    limits = v["loki"]["limits_config"]
    assert limits["ingestion_rate_mb"] == 191 and limits["max_line_size"] == "1024KB" and limits["retention_period"] == "720h"
    assert limits["allow_structured_metadata"] is True
    assert v["loki"]["compactor"] == {"retention_enabled": True, "delete_request_store": "gcs"}
    assert v["ingester"]["replicas"] == 18 and v["querier"]["replicas"] == 29 and v["compactor"]["replicas"] == 1
    assert "zoneAwareReplication" not in v["ingester"]  # 18 ingesters: the chart's three zones stay
    one = loki_values(scalable("distributed", "minio", replicas=1))
    assert one["ingester"]["zoneAwareReplication"] == {"enabled": False}
    assert one["loki"]["commonConfig"]["replication_factor"] == 1
    assert "compactor" not in loki_values(scalable())["loki"]  # no --retention: Loki keeps everything


# -- credentials -----------------------------------------------------------------------


@pytest.mark.parametrize("storage", list(STORAGES))
def test_values_hold_references_never_credentials(storage):
    v = loki_values(scalable("simple-scalable", storage))
    text = json.dumps(v)
    for secret in (ACCESS, SECRET, "kaudit-test-gcs-key", "supersecretpassword"):
        assert secret not in text
    st = STORAGES[storage]
    if st.kind == "gcs" and st.secret:
        assert v["defaults"]["extraVolumes"] == [{"name": "kaudit-gcs", "secret": {"secretName": L.SECRET_NAME}}]
        assert {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/etc/kaudit-gcs/key.json"} in v["defaults"]["extraEnv"]
    elif st.secret:
        assert v["defaults"]["extraEnvFrom"] == [{"secretRef": {"name": L.SECRET_NAME}}]
    else:
        assert "defaults" not in v  # pod identity: nothing to read
    if st.kind == "s3" and st.secret:
        assert v["loki"]["storage"]["s3"]["accessKeyId"] == "${AWS_ACCESS_KEY_ID}"
        assert v["loki"]["storage"]["s3"]["secretAccessKey"] == "${AWS_SECRET_ACCESS_KEY}"
    if st.kind == "minio":
        # the chart writes minio.rootUser/rootPassword into Loki's config (a ConfigMap): references
        assert (v["minio"]["rootUser"], v["minio"]["rootPassword"]) == ("${rootUser}", "${rootPassword}")
        assert v["minio"]["existingSecret"] == L.SECRET_NAME and v["minio"]["users"] == []
        assert v["ignoreMinioDeprecation"] is True


def test_s3_endpoint_is_host_and_port_with_insecure_for_http():
    s3 = loki_values(scalable("simple-scalable", "s3-endpoint-two-buckets"))["loki"]["storage"]
    assert s3["bucketNames"] == {"chunks": "audit-chunks", "ruler": "audit-ruler"}
    assert s3["s3"]["endpoint"] == "minio.storage:9000" and s3["s3"]["insecure"] is True and s3["s3"]["s3ForcePathStyle"] is True


def test_secret_manifest_holds_the_credentials_base64():
    data = L.secret_data("minio", ACCESS, SECRET)
    s = L.secret_manifest(L.SECRET_NAME, "kaudit", data, charts.MANAGED_BY_LABEL)
    decoded = {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
    assert decoded == {"AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET, "rootUser": ACCESS, "rootPassword": SECRET}
    assert s["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "kaudit"}
    assert L.secret_data("gcs", gcs_key=GCS_KEY) == {"key.json": GCS_KEY}
    assert repr(Credentials(data, "env")).count(SECRET) == 0


# -- the stack phase against the helm and kubectl doubles --------------------------------


@pytest.fixture
def cluster(tmp_path):
    return Cluster.make(tmp_path)


def options(sc, creds=None):
    return SimpleNamespace(stack="loki", namespace="kaudit", helm_timeout="10m", loki_scalable=sc, storage_credentials=creds)


def test_stack_phase_applies_the_secret_and_keeps_credentials_out_of_argv_and_values(cluster):
    sc = scalable("simple-scalable", "minio", events_per_second=2000)
    creds = Credentials(L.secret_data("minio", ACCESS, SECRET), "a test")
    ctx = cluster.context(options(sc, creds))
    assert stack.run(ctx).status is Status.CHANGED

    helm_log = (cluster.root / "helm" / "argv.log").read_text()
    for secret in (ACCESS, SECRET, base64.b64encode(SECRET.encode()).decode()):
        assert secret not in helm_log  # neither argv nor the values helm read from stdin
        assert all(secret not in a for c in cluster.kubectl_calls() for a in c["argv"])
        assert secret not in out(ctx)
    # the Secret went to kubectl on stdin, with its namespace
    [apply_secret, apply_dashboard] = cluster.kubectl_calls()
    items = json.loads(apply_secret["stdin"])["items"]
    assert [(i["kind"], i["metadata"]["name"]) for i in items] == [("Namespace", "kaudit"), ("Secret", L.SECRET_NAME)]
    assert base64.b64decode(items[1]["data"]["rootPassword"]).decode() == SECRET
    stored = cluster.objects()[f"Secret/kaudit/{L.SECRET_NAME}"]
    assert stored["data"] == items[1]["data"]
    # no ConfigMap kaudit applied carries them either
    assert all(SECRET not in json.dumps(o) for k, o in cluster.objects().items() if k.startswith("ConfigMap/"))

    [loki, grafana] = cluster.upgrades()
    values = json.loads(loki["stdin"])
    assert values["deploymentMode"] == "SimpleScalable" and values["minio"]["existingSecret"] == L.SECRET_NAME
    [ds] = json.loads(grafana["stdin"])["datasources"]["datasources.yaml"]["datasources"]
    assert ds["url"] == "http://loki-gateway.kaudit.svc:80"
    assert (ctx.facts["loki_service"], ctx.facts["loki_port"], ctx.facts["loki_url"]) == ("loki-gateway", 80, "http://loki-gateway.kaudit.svc:80")
    text = out(ctx)
    assert "ingestion_rate_mb: max(Loki's 4," in text and "deprecated" in text and "ignoreMinioDeprecation" in text
    assert "keeps its chunks and index in the chart's MinIO" in "\n".join(ctx.facts["grafana_access"])


def test_second_run_changes_nothing(cluster):
    sc = scalable("distributed", "s3")
    creds = Credentials(L.secret_data("s3", ACCESS, SECRET), "a test")
    assert stack.run(cluster.context(options(sc, creds))).status is Status.CHANGED
    n = len(cluster.upgrades())
    outcome = stack.run(cluster.context(options(sc, creds)))
    assert outcome.status is Status.UNCHANGED, outcome.message
    assert len(cluster.upgrades()) == n


def test_users_own_secret_is_referenced_and_nothing_is_applied_for_it(cluster):
    st = L.ObjectStorage.from_flags("s3", "audit", None, None, None, None, "team-s3-keys")
    sc = L.ScalableLoki("simple-scalable", st, S.size(S.SizingInput(mode="simple-scalable")))
    ctx = cluster.context(options(sc))
    stack.run(ctx)
    assert [c["argv"][-3:] for c in cluster.kubectl_calls()] == [["apply", "-f", "-"]]  # the dashboard only
    values = json.loads(cluster.upgrades()[0]["stdin"])
    assert values["defaults"]["extraEnvFrom"] == [{"secretRef": {"name": "team-s3-keys"}}]
    assert "from your secret/team-s3-keys" in out(ctx)


def test_dry_run_prints_the_sizing_and_the_secret_s_keys_only(cluster):
    sc = scalable("simple-scalable", "s3", events_per_second=2000, retention_seconds=30 * 86400)
    creds = Credentials(L.secret_data("s3", ACCESS, SECRET), "a test")
    ctx = cluster.context(options(sc, creds), dry_run=True)
    assert stack.run(ctx).status is Status.PLANNED
    assert cluster.helm_calls() == [] and cluster.kubectl_calls() == []
    text = out(ctx)
    assert "volume: 2000 events/s × 1,803 B/event = 3.6 MB/s = 311.6 GB/day" in text
    assert "would apply: secret/kaudit-object-storage in namespace kaudit (keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)" in text
    assert ACCESS not in text and SECRET not in text


def test_monolithic_default_still_renders_the_golden_values():
    golden = (DATA.parent / "render" / "values-loki.yaml").read_text()
    from kaudit import __version__

    assert stack_values.stack_values("loki", "kaudit")["loki"] == golden.replace("VERSION", __version__)
    assert stack_values.stack_values("loki", "kaudit", None, None) == stack_values.stack_values("loki", "kaudit")


def test_vendored_example_files_agree_on_the_zeroed_targets():
    # the chart's shipped examples zero the other mode's targets, as kaudit does
    assert load(DATA / f"loki-{charts.LOKI.version}" / "values.yaml")["deploymentMode"] == "Monolithic"
    v = loki_values(scalable("simple-scalable", "s3"))
    assert all(v[t]["replicas"] == 0 for t in L.DISTRIBUTED_TARGETS)
    d = loki_values(scalable("distributed", "s3"))
    assert all(d[t]["replicas"] == 0 for t in L.SSD_TARGETS)


def test_the_shipper_is_told_the_sized_line_limit(cluster):
    from kaudit.engine.phases import collector

    sc = scalable("simple-scalable", "s3")
    ctx = cluster.context(SimpleNamespace(**vars(options(sc, Credentials(L.secret_data("s3", ACCESS, SECRET), "t"))), collector="shipper"))
    stack.run(ctx)
    collector.run(ctx)
    ds = next(i for c in cluster.kubectl_calls() for i in json.loads(c["stdin"])["items"] if i["kind"] == "DaemonSet")
    args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--max-line-bytes") + 1] == "1048576"  # 1024KB, as limits_config.max_line_size
    assert args[args.index("--loki-url") + 1] == "http://loki-gateway.kaudit.svc:80"
    # monolithic: the shipper keeps its own default (Loki's 256KB)
    mono = Cluster.make(cluster.root / "mono")
    ctx = mono.context(SimpleNamespace(stack="loki", collector="shipper"))
    stack.run(ctx)
    collector.run(ctx)
    ds = next(i for c in mono.kubectl_calls() for i in json.loads(c["stdin"])["items"] if i["kind"] == "DaemonSet")
    assert "--max-line-bytes" not in ds["spec"]["template"]["spec"]["containers"][0]["args"]

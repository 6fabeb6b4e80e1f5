"""Render kaudit's scalable Loki values with the real `helm template` and the pinned chart.

Needs `helm` on PATH and the community loki chart 18.11.0 unpacked under $KAUDIT_CHARTS_DIR
(as `loki-18.11.0/` or `loki/`, its subcharts in its charts/ for the MinIO case; e.g. `helm pull loki --repo https://grafana-community.github.io/helm-charts
--version 18.11.0 --untar -d $KAUDIT_CHARTS_DIR`); skips otherwise. --kube-version because
a helm built without release ldflags assumes Kubernetes 1.20 (FACTS.md §8).
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
from kaudit.core import loki_scalable as L
from kaudit.core import loki_sizing as S
from kaudit.core import render
from kaudit.core import stack_values

KUBE_VERSION = "1.36.0"


def chart_dir() -> Path:
    helm = shutil.which("helm")
    if not helm:
        pytest.skip("helm is not on PATH")
    root = os.environ.get("KAUDIT_CHARTS_DIR")
    if not root:
        pytest.skip("KAUDIT_CHARTS_DIR is not set (a directory holding the loki chart unpacked as loki/)")
    found = [d for d in (Path(root) / f"loki-{charts.LOKI.version}", Path(root) / "loki") if (d / "Chart.yaml").is_file()]
    if not found:
        pytest.skip(f"no loki-{charts.LOKI.version}/ or loki/ chart under {root}")
    d = found[0]
    meta = YAML(typ="safe", pure=True).load((d / "Chart.yaml").read_text())
    if str(meta.get("version")) != charts.LOKI.version:
        pytest.skip(f"{d} is loki {meta.get('version')}, kaudit pins {charts.LOKI.version}")
    return d


def template(values: dict, tmp_path: Path) -> list[dict]:
    d = chart_dir()
    f = tmp_path / "values.json"
    f.write_text(json.dumps(values))
    r = subprocess.run(
        ["helm", "template", "loki", str(d), "--namespace", "kaudit", "--kube-version", KUBE_VERSION, "-f", str(f)],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return [doc for doc in YAML(typ="safe", pure=True).load_all(r.stdout) if doc]


def values(mode: str, kind: str, persistence=None, secret=L.SECRET_NAME) -> dict:
    bucket = None if kind == "minio" else "audit"
    st = L.ObjectStorage.from_flags(kind, bucket, None, None, None, None, secret)
    sc = L.ScalableLoki(mode, st, S.size(S.SizingInput(mode=mode, events_per_second=2000, retention_seconds=30 * 86400)), persistence)
    return render.parse_yaml(stack_values.stack_values("loki", "kaudit", None, sc)["loki"], "loki")


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d.get("kind") == kind}


def containers(doc: dict) -> list[dict]:
    return doc["spec"]["template"]["spec"]["containers"]


@pytest.mark.parametrize("kind", ["s3", "gcs"])
def test_simple_scalable_renders_write_and_backend_statefulsets_without_claims(kind, tmp_path):
    docs = template(values("simple-scalable", kind), tmp_path)
    sts, deps = by_kind(docs, "StatefulSet"), by_kind(docs, "Deployment")
    assert {"loki-write", "loki-backend"} <= set(sts)
    assert "loki-read" in sts or "loki-read" in deps
    assert "loki" not in sts  # no monolithic pod
    assert not any(d.get("kind") == "PersistentVolumeClaim" for d in docs)
    assert all(not s["spec"].get("volumeClaimTemplates") for s in sts.values()), "a claim without a storage class stays Pending"
    for name in ("loki-write", "loki-backend"):
        c = next(c for c in containers(sts[name]) if c["name"] == name.removeprefix("loki-"))
        assert c["args"].count("-config.expand-env=true") == 1  # the chart's own: ${NAME} is read from the environment
        if kind == "s3":
            assert {"secretRef": {"name": L.SECRET_NAME}} in c.get("envFrom", [])
        else:
            assert any(v.get("secret", {}).get("secretName") == L.SECRET_NAME for v in sts[name]["spec"]["template"]["spec"]["volumes"])
    config = by_kind(docs, "ConfigMap")["loki"]["data"]["config.yaml"]
    if kind == "s3":
        assert "${AWS_ACCESS_KEY_ID}" in config and "${AWS_SECRET_ACCESS_KEY}" in config
    assert "max_line_size: 1024KB" in config and "retention_period: 720h" in config
    assert "loki-gateway" in by_kind(docs, "Service")
    # kaudit verify asks the gateway for /ready: the location kaudit adds proxies to a Service that exists
    nginx = by_kind(docs, "ConfigMap")["loki-gateway"]["data"]["nginx.conf"]
    assert "location = /ready {" in nginx and 'set $backend "http://loki-read.kaudit.svc.cluster.local:3100";' in nginx
    assert "loki-read" in by_kind(docs, "Service")


def test_simple_scalable_with_a_storage_class_claims_it(tmp_path):
    docs = template(values("simple-scalable", "s3", stack_values.LokiStorage("local-path", "20Gi")), tmp_path)
    write = by_kind(docs, "StatefulSet")["loki-write"]
    [claim] = write["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "local-path" and claim["spec"]["resources"]["requests"]["storage"] == "20Gi"


def test_distributed_renders_its_microservices(tmp_path):
    docs = template(values("distributed", "s3"), tmp_path)
    names = set(by_kind(docs, "StatefulSet")) | set(by_kind(docs, "Deployment"))
    assert any(n.startswith("loki-ingester") for n in names)
    assert {"loki-distributor", "loki-querier", "loki-query-frontend"} <= names
    assert not ({"loki-write", "loki-read", "loki-backend"} & names)
    nginx = by_kind(docs, "ConfigMap")["loki-gateway"]["data"]["nginx.conf"]
    assert 'set $backend "http://loki-query-frontend.kaudit.svc.cluster.local:3100";' in nginx
    assert "loki-query-frontend" in by_kind(docs, "Service")
    assert not any(d.get("kind") == "PersistentVolumeClaim" for d in docs)


def test_minio_renders_only_with_the_deprecation_flag(tmp_path):
    d = chart_dir()
    if not any((d / "charts").glob("minio*")):
        pytest.skip(f"{d}/charts has no minio subchart (helm dependency build {d})")
    docs = template(values("simple-scalable", "minio"), tmp_path)
    config = by_kind(docs, "ConfigMap")["loki"]["data"]["config.yaml"]
    assert "${rootUser}" in config and "supersecretpassword" not in config
    assert not any(d.get("kind") == "Secret" and d["metadata"]["name"].endswith("minio") for d in docs), "MinIO reads kaudit's Secret"

"""Values for the community Loki chart in simple-scalable or distributed mode, on object storage.

Both modes need object storage (the chart refuses filesystem storage for them, values.yaml:
"SimpleScalable and Distributed REQUIRE the use of object storage"). kaudit offers:

* ``minio``: the chart's MinIO subchart, for a laptop. The chart deprecates it and refuses
  to render it unless ``ignoreMinioDeprecation: true``; its templates/validate.yaml says the
  subchart "will be removed 2026-10-31". kaudit sets the flag and says so.
* ``s3``: an S3 (or S3-compatible) bucket: --bucket or --bucket-chunks/--bucket-ruler,
  --s3-endpoint, --s3-region.
* ``gcs``: a GCS bucket.

Credentials never enter the values: they live in one Secret (kaudit applies it, or the user
names their own) that every Loki pod reads through the chart's ``defaults.extraEnvFrom``;
the chart starts Loki with ``-config.expand-env=true`` and its config holds only ``${NAME}`` references.
For GCS the Secret's service-account key is mounted as a file and named by
GOOGLE_APPLICATION_CREDENTIALS. Pure: dicts in, dicts out.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any, Optional

from kaudit.core.loki_sizing import LokiSizing
from kaudit.core.errors import UsageError

STORAGE_KINDS: tuple[str, ...] = ("minio", "s3", "gcs")
#: the Secret kaudit applies with the object storage credentials
SECRET_NAME = "kaudit-object-storage"
#: the environment variables Loki reads the S3 keys from (named as the AWS SDKs name them)
S3_KEY_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
#: the keys the MinIO subchart reads from an existing Secret (minio chart templates/secrets.yaml)
MINIO_KEYS = ("rootUser", "rootPassword")
GCS_KEY_FILE = "key.json"
GCS_MOUNT = "/etc/kaudit-gcs"
CHART_MODES = {"simple-scalable": "SimpleScalable", "distributed": "Distributed"}
#: targets of the other modes, zeroed as the chart's example files do
SSD_TARGETS = ("write", "read", "backend")
DISTRIBUTED_TARGETS = ("ingester", "distributor", "querier", "queryFrontend", "queryScheduler", "indexGateway", "compactor")
#: the MinIO subchart's own bucket names (loki chart values.yaml minio.buckets)
MINIO_BUCKETS = ("chunks", "ruler")

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-_]{1,220}[a-z0-9]\Z")


@dataclass(frozen=True)
class ObjectStorage:
    kind: str
    bucket_chunks: str = MINIO_BUCKETS[0]
    bucket_ruler: str = MINIO_BUCKETS[1]
    s3_endpoint: Optional[str] = None
    s3_region: Optional[str] = None
    #: the Secret Loki reads credentials from; None: Loki uses its pod's own identity
    secret: Optional[str] = None

    @classmethod
    def from_flags(
        cls, kind: Optional[str], bucket: Optional[str], chunks: Optional[str], ruler: Optional[str],
        endpoint: Optional[str], region: Optional[str], secret: Optional[str],
    ) -> "ObjectStorage":
        if kind not in STORAGE_KINDS:
            raise UsageError(f"--object-storage: {kind!r} is not one of {', '.join(STORAGE_KINDS)}")
        if kind == "minio":
            for flag, value in (("--bucket", bucket), ("--bucket-chunks", chunks), ("--bucket-ruler", ruler), ("--s3-endpoint", endpoint), ("--s3-region", region)):
                if value:
                    raise UsageError(f"{flag}: not with --object-storage minio (the chart's MinIO makes its own buckets: chunks, ruler)")
            return cls("minio", secret=secret)
        if kind == "gcs" and (endpoint or region):
            raise UsageError(f"{'--s3-endpoint' if endpoint else '--s3-region'}: only with --object-storage s3")
        if bucket and (chunks or ruler):
            raise UsageError("--bucket: give either --bucket or --bucket-chunks/--bucket-ruler, not both")
        chunks, ruler = (bucket, bucket) if bucket else (chunks, ruler)
        if not chunks or not ruler:
            raise UsageError(f"--object-storage {kind}: no bucket", "give --bucket NAME, or --bucket-chunks NAME and --bucket-ruler NAME")
        for flag, name in (("--bucket-chunks" if not bucket else "--bucket", chunks), ("--bucket-ruler" if not bucket else "--bucket", ruler)):
            if not _BUCKET.match(name):
                raise UsageError(f"{flag}: {name!r} is not a bucket name", "lower-case letters, digits, '.', '-' and '_', 3 to 222 characters")
        if endpoint is not None and not re.match(r"(https?://)?[A-Za-z0-9.\-]+(:[0-9]+)?/?\Z", endpoint):
            raise UsageError(f"--s3-endpoint: {endpoint!r} is not a host[:port] or http(s)://host[:port]", "e.g. s3.eu-west-1.amazonaws.com or http://minio.storage:9000")
        return cls(kind, chunks, ruler, endpoint or None, region or None, secret)


@dataclass(frozen=True)
class ScalableLoki:
    mode: str
    storage: ObjectStorage
    sizing: LokiSizing
    #: kaudit.core.stack_values.LokiStorage for the stateful targets' claims; None: emptyDir
    persistence: Any = None


# -- credentials --------------------------------------------------------------------


def secret_manifest(name: str, namespace: str, data: dict[str, str], managed_by: tuple[str, str]) -> dict:
    """The Secret kaudit applies (values base64 in `data`, as the API stores them)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": {managed_by[0]: managed_by[1]}},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(data.items())},
    }


def secret_data(kind: str, access_key: Optional[str] = None, secret_key: Optional[str] = None, gcs_key: Optional[str] = None) -> dict[str, str]:
    """What the Secret holds for each storage kind."""
    if kind == "gcs":
        return {GCS_KEY_FILE: gcs_key or ""}
    data = {S3_KEY_ENV[0]: access_key or "", S3_KEY_ENV[1]: secret_key or ""}
    if kind == "minio":
        # the same pair is MinIO's root user: the subchart reads these two keys
        data.update({MINIO_KEYS[0]: access_key or "", MINIO_KEYS[1]: secret_key or ""})
    return data


# -- values ------------------------------------------------------------------------


def _env_ref(name: str) -> str:
    return "${" + name + "}"


def _storage_values(s: ObjectStorage) -> tuple[dict, dict]:
    """(loki.storage, top-level extras) for the storage kind."""
    if s.kind == "minio":
        # commonStorageConfig writes minio.rootUser/rootPassword into Loki's config: references only
        extras = {
            "ignoreMinioDeprecation": True,
            "minio": {
                "enabled": True,
                "existingSecret": s.secret,
                "rootUser": _env_ref(MINIO_KEYS[0]),
                "rootPassword": _env_ref(MINIO_KEYS[1]),
                # the chart's default second user has a password in its values.yaml: none
                "users": [],
            },
        }
        return {"type": "s3"}, extras
    if s.kind == "s3":
        s3: dict = {"s3ForcePathStyle": bool(s.s3_endpoint)}
        if s.s3_endpoint:
            # Loki takes host[:port] and `insecure` for plain http, as the chart writes MinIO's
            scheme, _, host = s.s3_endpoint.rpartition("://")
            s3["endpoint"] = host.rstrip("/")
            s3["insecure"] = scheme == "http"
        if s.s3_region:
            s3["region"] = s.s3_region
        if s.secret:
            s3["accessKeyId"] = _env_ref(S3_KEY_ENV[0])
            s3["secretAccessKey"] = _env_ref(S3_KEY_ENV[1])
        return {"type": "s3", "bucketNames": {"chunks": s.bucket_chunks, "ruler": s.bucket_ruler}, "s3": s3}, {}
    return {"type": "gcs", "bucketNames": {"chunks": s.bucket_chunks, "ruler": s.bucket_ruler}}, {}


def _defaults(s: ObjectStorage) -> dict:
    """Every Loki pod reads the Secret (the chart already starts Loki with -config.expand-env=true,
    templates/_pod.tpl, so ${NAME} in its config is the pod's environment variable NAME)."""
    if not s.secret:
        return {}
    out: dict = {}
    if s.kind == "gcs":
        out["extraEnv"] = [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": f"{GCS_MOUNT}/{GCS_KEY_FILE}"}]
        out["extraVolumes"] = [{"name": "kaudit-gcs", "secret": {"secretName": s.secret}}]
        out["extraVolumeMounts"] = [{"name": "kaudit-gcs", "mountPath": GCS_MOUNT, "readOnly": True}]
    else:
        out["extraEnvFrom"] = [{"secretRef": {"name": s.secret}}]
    return out


def _claims(persistence: Any) -> dict:
    """persistence of write/backend (SSD): emptyDir unless a class or size was given."""
    if persistence is None:
        return {"volumeClaimsEnabled": False}
    out: dict = {"volumeClaimsEnabled": True, "size": persistence.size}
    if persistence.storage_class:
        out["storageClass"] = persistence.storage_class
    return out


def ready_location(mode: str, namespace: str) -> str:
    """An nginx location for Loki's /ready on the gateway. The chart's gateway routes the API
    (/loki/api/v1/...) but answers only `/` itself, and `kaudit verify` asks /ready; the read
    path (query-frontend in distributed mode) answers it, as the chart's own locations resolve it."""
    target = "read" if mode == "simple-scalable" else "query-frontend"
    return (
        "location = /ready {\n"
        f'  set $backend "http://loki-{target}.{namespace}.svc.cluster.local:3100";\n'
        "  proxy_pass $backend/ready;\n"
        "}"
    )


def values(loki: ScalableLoki, namespace: str = "kaudit") -> dict:
    """The chart values for one scalable Loki."""
    s, z = loki.storage, loki.sizing
    storage, extras = _storage_values(s)
    object_store = "gcs" if s.kind == "gcs" else "s3"
    limits = {"allow_structured_metadata": True, **z.limits_config()}
    lk: dict = {
        "auth_enabled": False,
        "commonConfig": {"replication_factor": z.replication_factor},
        "storage": storage,
        "schemaConfig": {"configs": [{
            "from": "2024-04-01", "store": "tsdb", "object_store": object_store, "schema": "v13",
            "index": {"prefix": "loki_index_", "period": "24h"},
        }]},
        "limits_config": limits,
    }
    if z.retention_hours:
        lk["compactor"] = {"retention_enabled": True, "delete_request_store": object_store}
    out: dict = {"deploymentMode": CHART_MODES[loki.mode], "loki": lk}
    defaults = _defaults(s)
    if defaults:
        out["defaults"] = defaults
    r = z.replicas
    if loki.mode == "simple-scalable":
        out["write"] = {"replicas": r["write"], "persistence": _claims(loki.persistence)}
        out["read"] = {"replicas": r["read"]}
        out["backend"] = {"replicas": r["backend"], "persistence": _claims(loki.persistence)}
        for t in DISTRIBUTED_TARGETS:
            out[t] = {"replicas": 0}
    else:
        for t in DISTRIBUTED_TARGETS:
            out[t] = {"replicas": r[t]}
        if loki.persistence is not None:
            claim = {"name": "data", "accessModes": ["ReadWriteOnce"], "size": loki.persistence.size}
            if loki.persistence.storage_class:
                claim["storageClass"] = loki.persistence.storage_class
            out["ingester"]["persistence"] = {"enabled": True, "claims": [claim]}
        if r["ingester"] < 3:
            # zone-aware ingesters need one replica per zone (three zones)
            out["ingester"]["zoneAwareReplication"] = {"enabled": False}
        for t in SSD_TARGETS:
            out[t] = {"replicas": 0}
    out["singleBinary"] = {"replicas": 0}
    out.update({
        # the gateway (nginx) routes pushes to the write path and queries to the read path
        "gateway": {"enabled": True, "nginxConfig": {"serverSnippet": ready_location(loki.mode, namespace)}},
        # the chart's chunks cache alone asks for 8 GiB of memcached: off, as in monolithic mode
        "chunksCache": {"enabled": False},
        "resultsCache": {"enabled": False},
        "lokiCanary": {"enabled": False},
        "test": {"enabled": False},
    })
    out["minio"] = {"enabled": False}
    out.update(extras)
    if s.kind == "minio" and loki.persistence is not None:
        out["minio"]["persistence"] = {"enabled": True, "size": loki.persistence.size, **({"storageClass": loki.persistence.storage_class} if loki.persistence.storage_class else {})}
    elif s.kind == "minio":
        out["minio"]["persistence"] = {"enabled": False}
    return out


def header(loki: ScalableLoki, chart: Any, version: str) -> str:
    s = loki.storage
    where = {"minio": "the chart's MinIO (deprecated)", "s3": f"S3 bucket(s) {s.bucket_chunks}/{s.bucket_ruler}", "gcs": f"GCS bucket(s) {s.bucket_chunks}/{s.bucket_ruler}"}[s.kind]
    creds = f"credentials from Secret {s.secret} (never in these values)" if s.secret else "no credentials: Loki uses its pods' own identity"
    return (
        f"# Values for the community Loki chart {chart.version} ({chart.repo}). Generated by kaudit {version}.\n"
        f"# Loki {loki.mode} on {where}; {creds}.\n"
    )


def render(loki: ScalableLoki, chart: Any, namespace: str = "kaudit") -> str:
    """The values as YAML text: a header saying what and where, then the values."""
    import io

    from ruamel.yaml import YAML

    from kaudit import __version__

    y = YAML(typ="safe", pure=True)
    y.default_flow_style = False
    y.sort_base_mapping_type_on_output = False
    buf = io.StringIO()
    y.dump(values(loki, namespace), buf)
    return header(loki, chart, __version__) + buf.getvalue()

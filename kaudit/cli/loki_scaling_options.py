"""`kaudit up` options for a Loki that scales out: --loki-mode, object storage, sizing.

Checked here, at the CLI edge, so an impossible combination is one usage line (exit 2)
before any phase runs. Credentials are never options: --storage-credentials names a file,
or they come from the environment (kaudit.storage_credentials).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Mapping, Optional

import typer

from kaudit.errors import UsageError

_PANEL = "Scalable Loki (--stack loki)"

LokiModeOpt = Annotated[
    str,
    typer.Option("--loki-mode", help="monolithic (one pod, filesystem), simple-scalable (read/write/backend) or distributed; the last two need --object-storage.", rich_help_panel=_PANEL),
]
ObjectStorageOpt = Annotated[
    Optional[str],
    typer.Option("--object-storage", metavar="KIND", help="minio (the chart's MinIO, deprecated: a laptop), s3 or gcs.", rich_help_panel=_PANEL),
]
BucketOpt = Annotated[Optional[str], typer.Option("--bucket", metavar="NAME", help="One bucket for chunks and ruler (s3, gcs).", rich_help_panel=_PANEL)]
BucketChunksOpt = Annotated[Optional[str], typer.Option("--bucket-chunks", metavar="NAME", help="Bucket for chunks (with --bucket-ruler).", rich_help_panel=_PANEL)]
BucketRulerOpt = Annotated[Optional[str], typer.Option("--bucket-ruler", metavar="NAME", help="Bucket for ruler data (with --bucket-chunks).", rich_help_panel=_PANEL)]
S3EndpointOpt = Annotated[Optional[str], typer.Option("--s3-endpoint", metavar="HOST", help="S3 endpoint, e.g. http://minio.storage:9000 (default: AWS).", rich_help_panel=_PANEL)]
S3RegionOpt = Annotated[Optional[str], typer.Option("--s3-region", metavar="REGION", help="S3 region.", rich_help_panel=_PANEL)]
StorageCredentialsOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--storage-credentials", metavar="FILE",
        help="Object storage credentials: AWS_ACCESS_KEY_ID=/AWS_SECRET_ACCESS_KEY= lines (s3, minio) or a service-account key (gcs). "
        "Default: those environment variables, or GOOGLE_APPLICATION_CREDENTIALS. They go into a Secret, never into values or argv.",
        rich_help_panel=_PANEL,
    ),
]
StorageSecretOpt = Annotated[
    Optional[str],
    typer.Option("--storage-secret", metavar="NAME", help="Use this existing Secret instead of creating one: keys AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (s3), rootUser/rootPassword (minio) or key.json (gcs).", rich_help_panel=_PANEL),
]
EventsPerSecondOpt = Annotated[
    Optional[float],
    typer.Option("--events-per-second", metavar="N", min=0.001, help="Audit events per second from all clusters: sizes Loki's limits and replicas (shown by --dry-run).", rich_help_panel=_PANEL),
]
EventBytesOpt = Annotated[
    Optional[int],
    typer.Option("--event-bytes", metavar="B", min=1, help="Mean bytes per event (default 1803: the mean of a real kube-apiserver v1.36 log with the gce policy).", rich_help_panel=_PANEL),
]
RetentionOpt = Annotated[Optional[str], typer.Option("--retention", metavar="DURATION", help="Delete logs older than this, e.g. 30d (compactor retention); default: keep all.", rich_help_panel=_PANEL)]
LokiReplicasOpt = Annotated[
    Optional[int],
    typer.Option("--loki-replicas", metavar="N", min=1, help="Replicas of every Loki target instead of the sized ones (1 on a one-node VM: the chart keeps replicas on different nodes).", rich_help_panel=_PANEL),
]

MODES = ("monolithic", "simple-scalable", "distributed")


def scalable_from_flags(
    *, stack: str, mode: str, object_storage: Optional[str], bucket: Optional[str], bucket_chunks: Optional[str],
    bucket_ruler: Optional[str], s3_endpoint: Optional[str], s3_region: Optional[str], storage_credentials: Optional[Path],
    storage_secret: Optional[str], events_per_second: Optional[float], event_bytes: Optional[int], retention: Optional[str],
    loki_replicas: Optional[int], persistence: Any, loki_url: Optional[str] = None, env: Optional[Mapping[str, str]] = None,
) -> tuple[Any, Any]:
    """(ScalableLoki or None, Credentials or None) from the flags; UsageError for what cannot work."""
    from kaudit.core import loki_scalable as L
    from kaudit.core import loki_sizing as S

    if mode not in MODES:
        raise UsageError(f"--loki-mode: {mode!r} is not one of {', '.join(MODES)}")
    scale_flags = {
        "--object-storage": object_storage, "--bucket": bucket, "--bucket-chunks": bucket_chunks, "--bucket-ruler": bucket_ruler,
        "--s3-endpoint": s3_endpoint, "--s3-region": s3_region, "--storage-credentials": storage_credentials,
        "--storage-secret": storage_secret, "--events-per-second": events_per_second, "--event-bytes": event_bytes,
        "--retention": retention, "--loki-replicas": loki_replicas,
    }
    given = [flag for flag, value in scale_flags.items() if value is not None]
    if mode == "monolithic":
        if given:
            raise UsageError(f"{given[0]}: only with --loki-mode simple-scalable or distributed", "monolithic Loki keeps its data on its own volume")
        return None, None
    if loki_url:
        raise UsageError(f"--loki-mode {mode}: not with --loki-url (kaudit installs no Loki then)", "leave out --loki-url to install a scalable Loki")
    if stack != "loki":
        raise UsageError(f"--loki-mode {mode}: only with --stack loki", "loki-stack runs one Loki 2.6 pod")
    if object_storage is None:
        raise UsageError(
            f"--loki-mode {mode} needs object storage: the loki chart refuses filesystem storage for it",
            "add --object-storage minio (a laptop) or --object-storage s3|gcs --bucket NAME",
        )
    if storage_secret is not None and storage_credentials is not None:
        raise UsageError("--storage-secret: not with --storage-credentials (kaudit would create a second Secret)")
    creds = None
    if storage_secret is None:
        from kaudit.storage_credentials import load as load_storage_credentials  # the parameter has the module's name

        creds = load_storage_credentials(object_storage, storage_credentials, os.environ if env is None else env)
    secret = storage_secret or (L.SECRET_NAME if creds else None)
    storage = L.ObjectStorage.from_flags(object_storage, bucket, bucket_chunks, bucket_ruler, s3_endpoint, s3_region, secret)
    seconds = None
    if retention is not None:
        from kaudit.units import parse_duration

        seconds = parse_duration(retention, field="--retention")
        if seconds < 86_400:
            raise UsageError(f"--retention {retention}: less than 24h", "Loki's retention works on its 24h index period: give 24h or more, e.g. 30d")
    sizing = S.size(S.SizingInput(
        mode=mode, events_per_second=events_per_second, mean_event_bytes=event_bytes or S.CORPUS_MEAN_EVENT_BYTES,
        retention_seconds=seconds, replicas=loki_replicas,
    ))
    return L.ScalableLoki(mode, storage, sizing, persistence), creds

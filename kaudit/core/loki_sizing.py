"""Size a Loki for audit events: per-tenant limits, replicas, bytes per day. Pure arithmetic.

Inputs are an estimate of events per second (all clusters that push to this Loki) and the
size of an event. Defaults come from the real corpus (../shared/corpus/
kube-apiserver-v1.36-gce.jsonl: 3,582 events, 6,457,104 bytes with newlines, a real
kube-apiserver v1.36 with GCE's policy): a mean of 1,803 bytes per event and a largest
event of 403,305 bytes (a RequestResponse create carrying a 200 KB annotation).

Published numbers this uses (docs/scale.md cites each):

* Loki's limits_config defaults: ingestion_rate_mb 4, ingestion_burst_size_mb 6,
  per_stream_rate_limit 3MB, per_stream_rate_limit_burst 15MB, max_line_size 256KB
  (https://grafana.com/docs/loki/latest/configure/#limits_config). Loki counts these
  "MB" in MiB. The burst must hold the largest single push request.
* Deployment modes: monolithic up to about 20 GB/day; simple scalable up to a few TB/day
  (https://grafana.com/docs/loki/latest/get-started/deployment-modes/); the chart's own
  values.yaml says about 1 TB/day for simple scalable.
* "Size the cluster", smallest tier (under 3 TB/day): 6 ingesters, 4 distributors,
  10 queriers, 2 query-frontends, 2 query-schedulers, 4 index gateways, 1 compactor
  (https://grafana.com/docs/loki/latest/setup/size/). kaudit scales each target
  linearly from that tier and never goes below the replicas in the chart's shipped
  simple-scalable-values.yaml / distributed-values.yaml.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

MODES: tuple[str, ...] = ("monolithic", "simple-scalable", "distributed")

MIB = 1 << 20
KIB = 1 << 10
GB = 10**9  # daily volumes are decimal, as Loki's docs write them
DAY = 86_400

#: the real corpus (see the module docstring)
CORPUS_EVENTS = 3_582
CORPUS_BYTES = 6_457_104
CORPUS_MEAN_EVENT_BYTES = round(CORPUS_BYTES / CORPUS_EVENTS)  # 1,803
CORPUS_MAX_EVENT_BYTES = 403_305
#: share of the corpus' bytes in its busiest stream ({audit_level="RequestResponse",
#: verb="create", stage="ResponseComplete"}: 3,600,128 of 6,457,104 bytes = 0.558), rounded up
BUSIEST_STREAM_SHARE = 0.6

#: Loki's own defaults (MiB for the *_mb limits and the stream limits)
LOKI_INGESTION_RATE_MB = 4
LOKI_INGESTION_BURST_MB = 6
LOKI_PER_STREAM_MB = 3
LOKI_PER_STREAM_BURST_MB = 15
LOKI_MAX_LINE_BYTES = 256 * KIB

#: what the sizing adds on top of the estimate: a collector catching up after an outage
#: pushes faster than the apiserver writes
HEADROOM = 2.0
#: the largest push a collector sends: kaudit's shipper, Promtail and Alloy all batch 1 MiB,
#: and a batch closes after the line that crosses that size
COLLECTOR_BATCH_BYTES = 1 * MIB

#: how far each mode goes (bytes per day)
MODE_CEILING = {"monolithic": 20 * GB, "simple-scalable": 1000 * GB, "distributed": 30_000 * GB}

#: the published smallest tier, scaled per replica: (replicas at 3 TB/day)
TIER_BYTES_PER_DAY = 3000 * GB
TIER_REPLICAS = {"ingester": 6, "distributor": 4, "querier": 10, "queryFrontend": 2, "queryScheduler": 2, "indexGateway": 4, "compactor": 1}
#: the chart's shipped example files (never fewer)
CHART_MINIMUM = {
    "simple-scalable": {"write": 3, "read": 3, "backend": 3},
    "distributed": {"ingester": 3, "distributor": 3, "querier": 3, "queryFrontend": 2, "queryScheduler": 2, "indexGateway": 2, "compactor": 1},
}
#: which published component sizes a simple scalable target (write = distributor + ingester,
#: read = query-frontend + querier, backend = index gateway + compactor + scheduler + ruler)
SSD_BASIS = {"write": "ingester", "read": "querier", "backend": "indexGateway"}


@dataclass(frozen=True)
class SizingInput:
    mode: str = "monolithic"
    events_per_second: Optional[float] = None
    mean_event_bytes: int = CORPUS_MEAN_EVENT_BYTES
    max_event_bytes: int = CORPUS_MAX_EVENT_BYTES
    #: seconds; None keeps everything (Loki's default)
    retention_seconds: Optional[float] = None
    #: every target's replicas, instead of the computed ones (a one-node lab: 1)
    replicas: Optional[int] = None


@dataclass(frozen=True)
class LokiSizing:
    mode: str
    bytes_per_second: Optional[float]
    bytes_per_day: Optional[float]
    ingestion_rate_mb: int
    ingestion_burst_size_mb: int
    per_stream_rate_limit_mb: int
    per_stream_rate_limit_burst_mb: int
    max_line_size_kb: int
    replicas: dict[str, int]
    replication_factor: int
    retention_hours: Optional[int]
    stored_bytes: Optional[float]
    #: the arithmetic, one line per figure, for `kaudit up --dry-run`
    explain: tuple[str, ...] = field(default=(), compare=False)
    #: a mode this volume outgrows (said, not refused)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def limits_config(self) -> dict:
        """Loki limits_config keys (the chart hands them to Loki unchanged)."""
        out: dict = {
            "ingestion_rate_mb": self.ingestion_rate_mb,
            "ingestion_burst_size_mb": self.ingestion_burst_size_mb,
            "per_stream_rate_limit": f"{self.per_stream_rate_limit_mb}MB",
            "per_stream_rate_limit_burst": f"{self.per_stream_rate_limit_burst_mb}MB",
            "max_line_size": f"{self.max_line_size_kb}KB",
        }
        if self.retention_hours:
            out["retention_period"] = f"{self.retention_hours}h"
        return out


def _mb(n_bytes: float) -> int:
    return math.ceil(n_bytes / MIB)


def _human(n: float) -> str:
    for unit, size in (("TB", 10**12), ("GB", GB), ("MB", 10**6), ("KB", 10**3)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,.0f} B"


def replicas_for(mode: str, bytes_per_day: Optional[float], override: Optional[int] = None) -> dict[str, int]:
    """Replicas of each target: the published tier scaled to the volume, never below the chart's example."""
    if mode == "monolithic":
        return {"singleBinary": 1}
    minimum = CHART_MINIMUM[mode]
    if override is not None:
        return {t: (1 if t == "compactor" else override) for t in minimum}
    out = {}
    for target, least in minimum.items():
        basis = SSD_BASIS.get(target, target)
        if bytes_per_day is None or basis == "compactor":
            out[target] = least
            continue
        per_replica = TIER_BYTES_PER_DAY / TIER_REPLICAS[basis]
        out[target] = max(least, math.ceil(bytes_per_day / per_replica))
    return out


def size(inp: SizingInput) -> LokiSizing:
    if inp.mode not in MODES:
        raise ValueError(f"unknown Loki mode {inp.mode!r}")
    lines: list[str] = []
    warnings: list[str] = []
    bps = bpd = None
    rate_mb, per_stream_mb = LOKI_INGESTION_RATE_MB, LOKI_PER_STREAM_MB
    if inp.events_per_second is not None:
        bps = inp.events_per_second * inp.mean_event_bytes
        bpd = bps * DAY
        lines.append(
            f"volume: {inp.events_per_second:g} events/s × {inp.mean_event_bytes:,} B/event = {_human(bps)}/s"
            f" = {_human(bpd)}/day"
        )
        need = HEADROOM * bps
        rate_mb = max(LOKI_INGESTION_RATE_MB, _mb(need))
        lines.append(f"ingestion_rate_mb: max(Loki's {LOKI_INGESTION_RATE_MB}, ⌈{HEADROOM:g} × {_human(bps)}/s ÷ 1 MiB⌉) = {rate_mb}")
        stream = HEADROOM * BUSIEST_STREAM_SHARE * bps
        per_stream_mb = max(LOKI_PER_STREAM_MB, _mb(stream))
        lines.append(
            f"per_stream_rate_limit: max(Loki's {LOKI_PER_STREAM_MB}MB, ⌈{HEADROOM:g} × {BUSIEST_STREAM_SHARE:g} (busiest stream's share)"
            f" × {_human(bps)}/s ÷ 1 MiB⌉) = {per_stream_mb}MB"
        )
        if bpd > MODE_CEILING[inp.mode]:
            nxt = {"monolithic": "simple-scalable", "simple-scalable": "distributed"}.get(inp.mode)
            warnings.append(
                f"{_human(bpd)}/day is more than {inp.mode} mode's published reach of {_human(MODE_CEILING[inp.mode])}/day"
                + (f": consider --loki-mode {nxt}" if nxt else "")
            )
    else:
        lines.append("volume: no --events-per-second: Loki's default rate limits and the chart's minimum replicas")

    # a line must fit, with room for events larger than the corpus' largest
    max_line = max(LOKI_MAX_LINE_BYTES, math.ceil(HEADROOM * inp.max_event_bytes / (256 * KIB)) * 256 * KIB)
    lines.append(
        f"max_line_size: {HEADROOM:g} × the largest event ({inp.max_event_bytes:,} B), rounded up to 256 KiB steps"
        f" = {max_line // KIB}KB (Loki's default {LOKI_MAX_LINE_BYTES // KIB}KB rejects it)"
    )
    # the burst must hold the largest push: one batch plus the line that closed it
    largest_push = COLLECTOR_BATCH_BYTES + max_line
    burst_mb = max(LOKI_INGESTION_BURST_MB, _mb(largest_push), math.ceil(1.5 * rate_mb))
    lines.append(
        f"ingestion_burst_size_mb: max(Loki's {LOKI_INGESTION_BURST_MB}, largest push 1 MiB batch + {max_line // KIB}KB line"
        f" = {_mb(largest_push)}, 1.5 × {rate_mb}) = {burst_mb}"
    )
    stream_burst_mb = max(LOKI_PER_STREAM_BURST_MB, 5 * per_stream_mb, _mb(max_line))
    lines.append(f"per_stream_rate_limit_burst: max(Loki's {LOKI_PER_STREAM_BURST_MB}MB, 5 × {per_stream_mb}MB as Loki's default ratio) = {stream_burst_mb}MB")

    replicas = replicas_for(inp.mode, bpd, inp.replicas)
    write_path = replicas.get("write") or replicas.get("ingester") or 1
    rf = min(3, write_path)
    if inp.mode != "monolithic":
        how = "--loki-replicas" if inp.replicas is not None else "the published tier scaled to the volume, at least the chart's example"
        lines.append("replicas: " + ", ".join(f"{k} {v}" for k, v in replicas.items()) + f" ({how}); replication_factor {rf}")

    hours = stored = None
    if inp.retention_seconds is not None:
        hours = math.ceil(inp.retention_seconds / 3600)
        if bpd is not None:
            stored = bpd * hours / 24
            lines.append(f"retention: {hours}h; {_human(bpd)}/day × {hours / 24:g} days = {_human(stored)} before compression")
        else:
            lines.append(f"retention: {hours}h (the compactor deletes older chunks)")
    else:
        lines.append("retention: none: Loki keeps everything (--retention 30d sets the compactor's)")
    return LokiSizing(
        mode=inp.mode, bytes_per_second=bps, bytes_per_day=bpd, ingestion_rate_mb=rate_mb, ingestion_burst_size_mb=burst_mb,
        per_stream_rate_limit_mb=per_stream_mb, per_stream_rate_limit_burst_mb=stream_burst_mb, max_line_size_kb=max_line // KIB,
        replicas=replicas, replication_factor=rf, retention_hours=hours, stored_bytes=stored,
        explain=tuple(lines), warnings=tuple(warnings),
    )

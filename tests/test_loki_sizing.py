"""kaudit.core.loki_sizing: the arithmetic, case by case, with expectations computed by hand."""

from __future__ import annotations

import pytest

from kaudit.core import loki_sizing as S

D = 86_400
MIB = 1_048_576

#: (input, expected fields); the comment under each case is the hand computation
CASES = [
    pytest.param(
        S.SizingInput(mode="simple-scalable"),
        dict(bytes_per_second=None, ingestion_rate_mb=4, ingestion_burst_size_mb=6, per_stream_rate_limit_mb=3,
             per_stream_rate_limit_burst_mb=15, max_line_size_kb=1024, replicas={"write": 3, "read": 3, "backend": 3},
             replication_factor=3, retention_hours=None),
        # no estimate: Loki's defaults; max line 2 × 403,305 = 806,610 B -> 4 × 256 KiB = 1024 KB;
        # burst max(6, ⌈(1 MiB + 1 MiB) / 1 MiB⌉ = 2, ⌈1.5 × 4⌉ = 6) = 6; the chart's example 3/3/3
        id="ssd-no-estimate",
    ),
    pytest.param(
        S.SizingInput(mode="simple-scalable", events_per_second=2000),
        dict(bytes_per_second=3_606_000, bytes_per_day=311_558_400_000, ingestion_rate_mb=7, ingestion_burst_size_mb=11,
             per_stream_rate_limit_mb=5, per_stream_rate_limit_burst_mb=25, replicas={"write": 3, "read": 3, "backend": 3}),
        # 2000 × 1803 = 3,606,000 B/s; × 86,400 = 311.6 GB/day
        # rate ⌈2 × 3,606,000 / 1,048,576⌉ = ⌈6.88⌉ = 7; stream ⌈2 × 0.6 × 3,606,000 / 1,048,576⌉ = ⌈4.13⌉ = 5
        # burst max(6, 2, ⌈10.5⌉) = 11; stream burst max(15, 25) = 25
        # write ⌈311.6 GB / 500 GB⌉ = 1, read ⌈311.6 / 300⌉ = 2, backend ⌈311.6 / 750⌉ = 1: all raised to 3
        id="ssd-2000eps",
    ),
    pytest.param(
        S.SizingInput(mode="simple-scalable", events_per_second=20_000),
        dict(ingestion_rate_mb=69, replicas={"write": 7, "read": 11, "backend": 5}),
        # 36,060,000 B/s; rate ⌈72,120,000 / 1,048,576⌉ = ⌈68.78⌉ = 69; 3,115,584,000,000 B/day:
        # write ⌈6.23⌉ = 7, read ⌈10.39⌉ = 11, backend ⌈4.15⌉ = 5
        id="ssd-20000eps",
    ),
    pytest.param(
        S.SizingInput(mode="distributed", events_per_second=50_000, mean_event_bytes=2000),
        dict(bytes_per_second=100_000_000, bytes_per_day=8_640_000_000_000, ingestion_rate_mb=191, ingestion_burst_size_mb=287,
             per_stream_rate_limit_mb=115, per_stream_rate_limit_burst_mb=575,
             replicas={"ingester": 18, "distributor": 12, "querier": 29, "queryFrontend": 6, "queryScheduler": 6, "indexGateway": 12, "compactor": 1},
             replication_factor=3),
        # 1e8 B/s: rate ⌈2e8 / 1,048,576⌉ = ⌈190.7⌉ = 191; stream ⌈1.2e8 / 1,048,576⌉ = ⌈114.4⌉ = 115; burst ⌈1.5 × 191⌉ = 287
        # 8.64 TB/day over the 3 TB/day tier: ingester 6 × 2.88 = ⌈17.28⌉ = 18, distributor ⌈11.52⌉ = 12,
        # querier ⌈28.8⌉ = 29, frontend and scheduler ⌈5.76⌉ = 6, index gateway ⌈11.52⌉ = 12, compactor 1
        id="distributed-50000eps",
    ),
    pytest.param(
        S.SizingInput(mode="monolithic", events_per_second=500),
        dict(bytes_per_day=77_889_600_000, replicas={"singleBinary": 1}, replication_factor=1, ingestion_rate_mb=4),
        # 500 × 1803 × 86,400 = 77.9 GB/day, beyond monolithic's ~20 GB/day (a warning, below)
        id="monolithic-500eps",
    ),
    pytest.param(
        S.SizingInput(mode="simple-scalable", replicas=1, retention_seconds=30 * D),
        dict(replicas={"write": 1, "read": 1, "backend": 1}, replication_factor=1, retention_hours=720, stored_bytes=None),
        id="ssd-one-node-lab-30d",
    ),
    pytest.param(
        S.SizingInput(mode="distributed", replicas=2),
        dict(replicas={"ingester": 2, "distributor": 2, "querier": 2, "queryFrontend": 2, "queryScheduler": 2, "indexGateway": 2, "compactor": 1},
             replication_factor=2),
        id="distributed-override",
    ),
    pytest.param(
        S.SizingInput(mode="simple-scalable", events_per_second=100, retention_seconds=7 * D, max_event_bytes=100_000),
        dict(max_line_size_kb=256, retention_hours=168, stored_bytes=100 * 1803 * D * 7),
        # 2 × 100,000 = 200,000 B -> one 256 KiB step = Loki's default; 15,577,920,000 B/day × 7 days
        id="small-events-7d",
    ),
    pytest.param(
        S.SizingInput(mode="simple-scalable", max_event_bytes=600_000),
        dict(max_line_size_kb=1280, per_stream_rate_limit_burst_mb=15),
        # 1,200,000 / 262,144 = 4.58 -> 5 steps = 1280 KB
        id="large-events",
    ),
]


@pytest.mark.parametrize("inp,expected", CASES)
def test_sizing_matches_the_hand_computation(inp, expected):
    got = S.size(inp)
    for name, value in expected.items():
        assert getattr(got, name) == value, name


def test_warnings_name_the_next_mode_when_the_volume_outgrows_one():
    assert "consider --loki-mode simple-scalable" in S.size(S.SizingInput(mode="monolithic", events_per_second=500)).warnings[0]
    assert "consider --loki-mode distributed" in S.size(S.SizingInput(mode="simple-scalable", events_per_second=20_000)).warnings[0]
    assert S.size(S.SizingInput(mode="simple-scalable", events_per_second=2000)).warnings == ()
    assert S.size(S.SizingInput(mode="monolithic", events_per_second=100)).warnings == ()  # 15.6 GB/day


def test_limits_config_uses_loki_s_own_keys_and_units():
    z = S.size(S.SizingInput(mode="simple-scalable", events_per_second=2000, retention_seconds=30 * D))
    assert z.limits_config() == {
        "ingestion_rate_mb": 7, "ingestion_burst_size_mb": 11, "per_stream_rate_limit": "5MB",
        "per_stream_rate_limit_burst": "25MB", "max_line_size": "1024KB", "retention_period": "720h",
    }
    # every limit is at least Loki's default, and the largest corpus event fits a line
    assert z.max_line_size_kb * 1024 >= S.CORPUS_MAX_EVENT_BYTES
    assert z.ingestion_burst_size_mb * MIB >= S.COLLECTOR_BATCH_BYTES + z.max_line_size_kb * 1024


def test_the_explanation_shows_the_arithmetic():
    lines = S.size(S.SizingInput(mode="simple-scalable", events_per_second=2000, retention_seconds=30 * D)).explain
    text = "\n".join(lines)
    assert "2000 events/s × 1,803 B/event = 3.6 MB/s = 311.6 GB/day" in text
    assert "ingestion_rate_mb: max(Loki's 4, ⌈2 × 3.6 MB/s ÷ 1 MiB⌉) = 7" in text
    assert "retention: 720h; 311.6 GB/day × 30 days = 9.3 TB before compression" in text
    assert "replicas: write 3, read 3, backend 3" in text


def test_corpus_constants_are_the_corpus_figures():
    assert S.CORPUS_MEAN_EVENT_BYTES == 1803 == round(6_457_104 / 3_582)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError):
        S.size(S.SizingInput(mode="microservices"))

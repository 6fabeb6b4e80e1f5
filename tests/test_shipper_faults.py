"""Fault tests: the real shipper subprocess against the Loki double. Each ends with the set of
(auditID, stage) in Loki equal to the set in the audit file(s): nothing lost, nothing invented."""

from __future__ import annotations

import gzip
import json
import threading
import time

import pytest

from conftest import DATA
from doubles.loki import LokiDouble
from shipper_helpers import (ShipperProc, append, base_args, make_events, pairs_in_files, pairs_in_lines,
                             pairs_in_loki, rotate, wait_for)


@pytest.fixture
def loki():
    # the test events are dated 2026-11-28: switch off reject_old_samples so the tests
    # still pass on a clone run years later (Loki lets operators do the same)
    d = LokiDouble("3.5.0", reject_old_samples_max_age_ns=0).start()
    yield d
    d.stop()


def test_rotation_by_rename_while_shipping_under_load(tmp_path, loki):
    log = tmp_path / "audit.log"
    log.touch()
    events = make_events(6000)
    proc = ShipperProc(base_args(log, loki, tmp_path / "pos.json", "--batch-bytes", "64KiB"))
    wait_for(lambda: (tmp_path / "pos.json").exists(), what="the shipper to record its first position")

    def writer():  # ~6000 events in bursts, renamed away every 1000 like lumberjack
        for i in range(0, len(events), 100):
            append(log, events[i:i + 100])
            if i and i % 1000 == 0:
                rotate(log, i)
            time.sleep(0.005)

    t = threading.Thread(target=writer)
    t.start()
    t.join(30)
    wait_for(lambda: len(loki.entries()) >= len(events), what="every event in Loki")
    code, err = proc.term()
    assert code == 0, err
    assert len(list(tmp_path.glob("audit-*.log"))) == 5
    assert pairs_in_loki(loki) == pairs_in_files(tmp_path) == pairs_in_lines(events)
    assert loki.received == len(events)  # no entry was sent twice
    assert "was rotated" in err


def test_copy_truncate_rotation(tmp_path, loki):
    log = tmp_path / "audit.log"
    first, second = make_events(300), make_events(200, start=300)
    append(log, first)
    proc = ShipperProc(base_args(log, loki, tmp_path / "pos.json"))
    wait_for(lambda: len(loki.entries()) == 300, what="first part shipped")
    time.sleep(0.3)  # let the shipper reach the end of the file
    (tmp_path / "audit.log.1").write_bytes(log.read_bytes())  # logrotate copytruncate
    with open(log, "r+b") as f:
        f.truncate(0)
    append(log, second)
    wait_for(lambda: len(loki.entries()) == 500, what="second part shipped")
    code, err = proc.term()
    assert code == 0, err
    assert "truncated" in err
    assert pairs_in_loki(loki) == pairs_in_lines(first + second) == pairs_in_files(tmp_path)


def test_kill_9_mid_batch_then_restart_loses_nothing(tmp_path, loki):
    log = tmp_path / "audit.log"
    events = make_events(20000)
    append(log, events)
    args = base_args(log, loki, tmp_path / "pos.json", "--batch-bytes", "32KiB", "--once")
    proc = ShipperProc(args)
    wait_for(lambda: loki.received > 500, what="some pushes")
    proc.kill9()
    shipped_before = loki.received
    assert 0 < shipped_before < len(events), "the kill must land mid-file"
    code, err = ShipperProc(args).wait()
    assert code == 0, err
    assert pairs_in_loki(loki) == pairs_in_lines(events)
    assert len(loki.entries()) == len(events)  # replayed entries were byte-identical: stored once


def test_loki_down_for_a_while_then_up(tmp_path):
    log = tmp_path / "audit.log"
    events = make_events(400)
    append(log, events)
    loki = LokiDouble("3.5.0", reject_old_samples_max_age_ns=0).start()
    loki.stop()  # port known, nobody listening
    proc = ShipperProc(base_args(log, loki, tmp_path / "pos.json", "--once"))
    time.sleep(1.5)
    assert proc.alive(), "the shipper must keep retrying while Loki is down"
    assert not (tmp_path / "pos.json").exists() or json.loads((tmp_path / "pos.json").read_text())["files"] == {}
    loki.start()
    try:
        code, err = proc.wait()
        assert code == 0, err
        assert "retrying" in err
        assert pairs_in_loki(loki) == pairs_in_lines(events)
    finally:
        loki.stop()


def test_a_429_storm_and_500s_are_retried_until_accepted(tmp_path, loki):
    log = tmp_path / "audit.log"
    events = make_events(1000)
    append(log, events)
    loki.fail_next(429, times=25)
    loki.fail_next(500, times=3)  # then a few internal errors: retried the same way
    code, err = ShipperProc(base_args(log, loki, tmp_path / "pos.json", "--once", "--batch-bytes", "64KiB", "--backoff-max", "100ms")).wait()
    assert code == 0, err
    assert len([r for r in loki.requests("/loki/api/v1/push") if r.status == 429]) == 25
    assert len([r for r in loki.requests("/loki/api/v1/push") if r.status == 500]) == 3
    assert "Ingestion rate limit exceeded" in err
    assert pairs_in_loki(loki) == pairs_in_lines(events)


def test_oversize_events_keep_their_metadata(tmp_path, loki):
    log = tmp_path / "audit.log"
    large = gzip.decompress((DATA / "shipper" / "large-event.jsonl.gz").read_bytes()).rstrip(b"\n")
    events = make_events(50) + [large] + make_events(50, start=50)
    append(log, events)
    code, err = ShipperProc(base_args(log, loki, tmp_path / "pos.json", "--once")).wait()
    assert code == 0, err
    assert pairs_in_loki(loki) == pairs_in_lines(events)
    assert not [r for r in loki.requests("/loki/api/v1/push") if r.status != 204]
    [big] = [e for e in loki.entries() if "kauditTruncated" in e.line]
    assert len(big.line.encode()) <= 256 * 1024
    assert json.loads(big.line)["kauditTruncated"]["originalBytes"] == len(large)
    assert big.structured_metadata["audit_id"] == json.loads(large)["auditID"]
    assert "bodies removed 1" in err


def test_loki_refusing_a_line_is_counted_by_reason(tmp_path):
    log = tmp_path / "audit.log"
    events = make_events(20)
    append(log, events)
    with LokiDouble("3.5.0", reject_old_samples_max_age_ns=0, max_line_size=1200) as loki:
        code, err = ShipperProc(base_args(log, loki, tmp_path / "pos.json", "--once")).wait()
        too_long = [l for l in events if len(l) > 1200]
        assert code == 0, err
        assert too_long, "the test needs some lines over the limit"
        assert f"refused by Loki {len(too_long)}" in err
        assert "line_too_long" in err
        assert pairs_in_loki(loki) == pairs_in_lines([l for l in events if len(l) <= 1200])


def test_malformed_lines_are_shipped_and_counted(tmp_path, loki):
    log = tmp_path / "audit.log"
    events = make_events(30)
    garbage = [b"panic: runtime error", b'{"kind":"Event","trunc', b"\x00\x00\x00"]
    append(log, events[:10] + garbage[:2] + events[10:] + garbage[2:])
    code, err = ShipperProc(base_args(log, loki, tmp_path / "pos.json", "--once")).wait()
    assert code == 0, err
    assert pairs_in_loki(loki) == pairs_in_lines(events)
    lines = {e.line for e in loki.entries()}
    assert "panic: runtime error" in lines and '{"kind":"Event","trunc' in lines and "\x00\x00\x00" in lines
    assert "malformed 3" in err


def test_a_partial_last_line_waits_for_its_newline(tmp_path, loki):
    log = tmp_path / "audit.log"
    events = make_events(11)
    append(log, events[:10])
    append(log, [events[10][:40]], end=b"")
    proc = ShipperProc(base_args(log, loki, tmp_path / "pos.json"))
    wait_for(lambda: len(loki.entries()) == 10, what="complete lines shipped")
    wait_for(lambda: (tmp_path / "pos.json").exists()
             and json.loads((tmp_path / "pos.json").read_text())["files"][str(log)]["offset"] == sum(len(e) + 1 for e in events[:10]),
             what="positions saved up to the partial line")
    assert len(loki.entries()) == 10
    append(log, [events[10][40:]])
    wait_for(lambda: len(loki.entries()) == 11, what="the completed line")
    code, err = proc.term()
    assert code == 0, err
    assert pairs_in_loki(loki) == pairs_in_lines(events) == pairs_in_files(tmp_path)


def test_sigterm_flushes_the_batch_saves_positions_and_exits_0(tmp_path, loki):
    log = tmp_path / "audit.log"
    events = make_events(200)
    append(log, events)
    pos = tmp_path / "pos.json"
    proc = ShipperProc(["--path", log, "--loki-url", loki.url, "--positions", pos, "--batch-wait", "1h"])
    # the batch is never full and never old enough: only SIGTERM sends it
    wait_for(lambda: pos.exists(), what="the shipper to start")
    time.sleep(0.5)
    assert loki.entries() == []
    code, err = proc.term()
    assert code == 0, err
    assert pairs_in_loki(loki) == pairs_in_lines(events)
    assert json.loads(pos.read_text())["files"][str(log)]["offset"] == log.stat().st_size

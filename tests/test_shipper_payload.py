"""The pure part of the shipper: audit line -> Loki entry (labels, timestamp, line, metadata)."""

from __future__ import annotations

import gzip
import json

import pytest

from conftest import DATA
from kaudit.shipper import fields as F
from kaudit.shipper.payload import TRUNCATED_KEY, Encoder, TimestampParser, render_push
from kaudit.shipper.pipeline import drop_reasons

EVENTS = (DATA / "shipper" / "events.jsonl").read_bytes().splitlines()
LARGE = gzip.decompress((DATA / "shipper" / "large-event.jsonl.gz").read_bytes()).rstrip(b"\n")


def decode_push(enc: Encoder, entries, with_md=True) -> list:
    """Render a push body and read it back as Loki would."""
    streams = {}
    for e in entries:
        streams.setdefault(e.stream, []).append(e)
    body = json.loads(render_push(enc, streams, with_md))
    return [(s["stream"], v) for s in body["streams"] for v in s["values"]]


def test_line_is_shipped_byte_for_byte_with_stage_timestamp():
    enc = Encoder(static={"job": "kubernetes-audit", "node": "cp1"})
    pushed = decode_push(enc, [enc.encode(line) for line in EVENTS])
    assert sorted(v[1].encode() for _, v in pushed) == sorted(EVENTS)  # \u0026 escapes and all, unchanged
    ev = json.loads(EVENTS[0])
    labels, value = next((lb, v) for lb, v in pushed if v[1].encode() == EVENTS[0])
    assert labels == {"job": "kubernetes-audit", "node": "cp1", "audit_level": ev["level"], "verb": ev["verb"], "stage": ev["stage"]}
    assert len(value) == 2  # no structured metadata unless asked for
    ts = ev["stageTimestamp"]  # e.g. 2026-11-28T23:13:43.957656Z
    from datetime import datetime

    secs = int(datetime.fromisoformat(ts.replace("Z", "+00:00")).replace(microsecond=0).timestamp())
    assert value[0] == f"{secs}{ts[20:-1].ljust(9, '0')}"


def test_fast_path_agrees_with_a_full_json_parse_on_real_events():
    labels = tuple(sorted(F.ALLOWED_LABELS))
    enc = Encoder(labels=labels, structured_metadata=True)
    fast_hits = 0
    for line in EVENTS + [LARGE]:
        fast = enc._fast_fields(line)
        slow = enc._slow_fields(line)
        assert slow is not None
        if fast is None:
            continue
        fast_hits += 1
        norm = lambda d: {k: (json.loads(b'"' + v + b'"') if isinstance(v, bytes) else v) for k, v in d.items() if v is not None}
        assert norm(fast) == norm(slow), line[:200]
    assert fast_hits == len(EVENTS) + 1  # every real kube-apiserver line takes the fast path


def test_structured_metadata_carries_the_high_cardinality_fields():
    enc = Encoder(structured_metadata=True)
    line = next(l for l in EVENTS if b'"objectRef"' in l and b'"namespace"' in l)
    ev = json.loads(line)
    [(_, value)] = decode_push(enc, [enc.encode(line)])
    assert value[2] == {
        "audit_id": ev["auditID"], "user": ev["user"]["username"], "namespace": ev["objectRef"]["namespace"],
        "resource": ev["objectRef"]["resource"], "code": str(ev["responseStatus"]["code"]),
        "decision": ev["annotations"]["authorization.k8s.io/decision"],
    }
    assert decode_push(enc, [enc.encode(line)], with_md=False)[0][1] == value[:2]


def test_timestamp_falls_back_to_request_received_then_read_time():
    ev = json.loads(EVENTS[0])
    del ev["stageTimestamp"]
    enc = Encoder()
    e = enc.encode(json.dumps(ev).encode(), read_ns=5)
    assert e.ts == TimestampParser().ns(ev["requestReceivedTimestamp"].encode())
    del ev["requestReceivedTimestamp"]
    assert enc.encode(json.dumps(ev).encode(), read_ns=5).ts == 5


def test_timestamps_with_offsets_and_nanoseconds():
    p = TimestampParser()
    assert p.ns(b"1970-01-01T00:00:01.5Z") == 1_500_000_000
    assert p.ns(b"1970-01-01T01:00:01.000000001+01:00") == 1_000_000_001
    assert p.ns(b"not a time") is None


def test_oversize_event_loses_bodies_first_and_stays_valid_json():
    enc = Encoder(max_line_bytes=256 * 1024, structured_metadata=True)
    e = enc.encode(LARGE)
    [(labels, value)] = decode_push(enc, [e])
    assert len(value[1].encode()) <= 256 * 1024
    ev, orig = json.loads(value[1]), json.loads(LARGE)
    assert "requestObject" not in ev and "responseObject" not in ev
    assert ev[TRUNCATED_KEY] == {"removed": ["requestObject", "responseObject"], "originalBytes": len(LARGE)}
    assert ev["auditID"] == orig["auditID"] and ev["objectRef"] == orig["objectRef"]
    assert value[2]["audit_id"] == orig["auditID"]
    assert (enc.counters.truncated, enc.counters.cut) == (1, 0)


def test_event_still_too_long_after_removing_bodies_is_cut_and_counted():
    ev = json.loads(EVENTS[0])
    ev["annotations"]["huge"] = "x" * 5000
    enc = Encoder(max_line_bytes=2048)
    e = enc.encode(json.dumps(ev).encode())
    assert e.size == 2048
    assert (enc.counters.truncated, enc.counters.cut) == (0, 1)


def test_malformed_lines_are_shipped_with_static_labels_and_counted():
    enc = Encoder(static={"job": "kubernetes-audit"})
    lines = [b"not json at all", b'{"half": ', b"\x00\x01 control\tchars \xff\xfe", b"[1,2]", b"[" * 200000]
    pushed = decode_push(enc, [enc.encode(l, read_ns=42) for l in lines])
    assert enc.counters.malformed == 5
    assert [v[0] for _, v in pushed] == ["42"] * 5
    assert all(labels == {"job": "kubernetes-audit"} for labels, _ in pushed)
    assert [v[1] for _, v in pushed][:2] == ["not json at all", '{"half": ']
    assert pushed[2][1][1].startswith("\x00\x01 control\tchars ")


def test_high_cardinality_labels_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="auditID is unique per request"):
        Encoder(labels=("audit_id",))
    with pytest.raises(ValueError, match="not a known audit field"):
        Encoder(labels=("level",))
    Encoder(labels=("namespace", "resource"))


def test_drop_reasons_from_lokis_400_text():
    text = (
        "max entry size '10' bytes exceeded for stream '{job=\"a\"}' while adding an entry with length '11' bytes\n"
        "entry for stream '{job=\"a\"}' has timestamp too old: 2020-01-01T00:00:00Z, oldest acceptable timestamp is: x\n"
        "max entry size '10' bytes exceeded for stream '{job=\"a\"}' while adding an entry with length '12' bytes"
    )
    assert drop_reasons(text, 5) == {"line_too_long": 2, "greater_than_max_sample_age": 1}
    assert drop_reasons("something else", 7) == {"bad_request": 7}
    assert drop_reasons("...: array must contains 2 values, error found", 3) == {"structured_metadata_unsupported": 1}


def test_bodies_are_cut_from_the_raw_bytes_like_a_full_reparse_would():
    enc = Encoder(max_line_bytes=256 * 1024)
    fast = enc._shrink_fast(LARGE)
    assert fast is not None and len(fast) < 256 * 1024
    # everything but the bodies is byte for byte what the apiserver wrote
    head = LARGE[: LARGE.find(b',"requestObject":')]
    assert fast.startswith(head) and fast.endswith(LARGE[LARGE.rfind(b',"requestReceivedTimestamp":'):])
    full = json.loads(LARGE)
    for k in ("requestObject", "responseObject"):
        del full[k]
    full[TRUNCATED_KEY] = {"removed": ["requestObject", "responseObject"], "originalBytes": len(LARGE)}
    assert json.loads(fast) == full
    # a line without kube-apiserver's shape takes the full parse and gets the same result
    reordered = json.dumps(dict(reversed(list(json.loads(LARGE).items()))), separators=(",", ":")).encode()
    assert enc._shrink_fast(reordered) is None
    assert json.loads(enc.encode(reordered).line.replace(b'\\"', b'"').replace(b"\\\\", b"\\"))[TRUNCATED_KEY]["removed"] == ["requestObject", "responseObject"]


def _tricky_events() -> list[bytes]:
    """Real events edited so that keys the flat path looks for also appear inside bodies."""
    base = json.loads(next(l for l in EVENTS if b'"objectRef"' in l and b'"namespace"' in l))
    out = []
    decoy = {"objectRef": {"resource": "decoy", "namespace": "decoy"}, "responseStatus": {"code": 999}, "code": 998}
    rr = {k: v for k, v in base.items() if k != "responseStatus"}
    rr["stage"] = "RequestReceived"
    keys = list(rr)
    i = keys.index("requestReceivedTimestamp")
    rr = dict(list(rr.items())[:i] + [("requestObject", decoy)] + list(rr.items())[i:])
    out.append(rr)
    no_ref = {k: v for k, v in rr.items() if k != "objectRef"}
    out.append(no_ref)
    quoted = dict(base, user=dict(base["user"], username='odd "user" \\ name'))
    out.append(quoted)
    no_ns = dict(base, objectRef={"resource": "nodes", "name": "n1", "apiVersion": "v1"})
    out.append(no_ns)
    return [json.dumps(e, separators=(",", ":")).encode() for e in out]


def test_flat_path_metadata_equals_the_full_parse():
    enc = Encoder(structured_metadata=True)
    for line in EVENTS + [LARGE] + _tricky_events():
        e = enc.encode(line)
        shipped = line if len(line) <= enc.max_line_bytes else enc._shrink(line)
        slow = enc._slow_fields(shipped)
        expected = enc.metadata_json(tuple(slow.get(n) for n in enc.md_names))
        assert json.loads(enc.metadata_json(e.md) or b"{}") == json.loads(expected or b"{}"), line[:300]
    tricky = [enc.metadata_json(enc.encode(l).md) for l in _tricky_events()]
    assert b"decoy" not in tricky[0] and b"999" not in tricky[0] and b'"namespace"' in tricky[0]
    assert b"decoy" not in tricky[1]
    assert json.loads(tricky[2])["user"] == 'odd "user" \\ name'

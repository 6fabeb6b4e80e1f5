"""The Loki double answers as Loki documents (FACTS.md §5, §7); the shipper tests rely on it."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlencode

from doubles.loki import LokiDouble
from loki_fixture import loki, loki_factory  # noqa: F401

from conftest import DOUBLES

NOW = time.time_ns()


def push(d: LokiDouble, body: dict | bytes, *, gz: bool = False, headers: dict | None = None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"Content-Type": "application/json", **(headers or {})}
    if gz:
        data = gzip.compress(data)
        h["Content-Encoding"] = "gzip"
    req = urllib.request.Request(d.push_url, data=data, headers=h, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def get(d: LokiDouble, path: str, headers: dict | None = None, **params):
    url = d.url + path + ("?" + urlencode(params, doseq=True) if params else "")
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def body(*values, labels=None):
    return {"streams": [{"stream": labels or {"job": "kubernetes-audit"}, "values": [list(v) for v in values]}]}


EV = {"auditID": "a1", "stage": "ResponseComplete", "verb": "get", "objectRef": {"name": "cm1", "namespace": "ns1"},
      "annotations": {"authorization.k8s.io/decision": "allow"}, "sourceIPs": ["10.0.0.1"]}


def test_push_plain_and_gzip_answer_204_and_store(loki):
    assert push(loki, body((str(NOW), "one")))[0] == 204
    assert push(loki, body((str(NOW + 1), "two")), gz=True)[0] == 204
    assert [e.line for e in loki.entries()] == ["one", "two"]
    assert loki.entries()[0].stream == {"job": "kubernetes-audit"}


def test_exact_duplicates_are_stored_once_per_stream(loki):
    for _ in range(3):
        assert push(loki, body((str(NOW), "same")))[0] == 204
    push(loki, body((str(NOW), "same"), labels={"job": "other"}))
    push(loki, body((str(NOW + 1), "same")))
    assert len(loki.entries()) == 3
    assert loki.received == 5


def test_line_too_long_is_400_with_lokis_message_and_valid_entries_kept(loki_factory):
    d = loki_factory("3.5.0", max_line_size=10)
    code, text = push(d, body((str(NOW), "short"), (str(NOW + 1), "x" * 11)))
    assert code == 400
    assert text.strip() == (
        "max entry size '10' bytes exceeded for stream '{job=\"kubernetes-audit\"}' while adding an entry with length '11' bytes"
    )
    assert [e.line for e in d.entries()] == ["short"]


def test_timestamp_too_old_is_400(loki):
    old = NOW - 8 * 24 * 3600 * 10**9
    code, text = push(loki, body((str(old), "old")))
    assert code == 400
    assert text.startswith("entry for stream '{job=\"kubernetes-audit\"}' has timestamp too old: ")
    assert "oldest acceptable timestamp is:" in text
    assert loki.entries() == []


def test_third_element_is_rejected_by_2x_and_accepted_by_3x(loki_factory):
    old, new = loki_factory("2.6.1"), loki_factory("3.5.0")
    b = body((str(NOW), "with-md", {"audit_id": "a1"}))
    code, text = push(old, b)
    assert code == 400 and "array must contains 2 values" in text
    assert old.entries() == []
    assert push(new, b)[0] == 204
    assert new.entries()[0].structured_metadata == {"audit_id": "a1"}


def test_faults_on_demand_then_recovery(loki):
    loki.fail_next(429, times=2)
    loki.fail_next(500)
    codes = [push(loki, body((str(NOW), "x")))[0] for _ in range(4)]
    assert codes == [429, 429, 500, 204]
    assert len(loki.entries()) == 1


def test_ready_and_buildinfo(loki_factory):
    d = loki_factory("2.6.1")
    assert get(d, "/ready") == (200, "ready\n")
    code, text = get(d, "/loki/api/v1/status/buildinfo")
    assert code == 200 and json.loads(text)["version"] == "2.6.1"


def test_query_range_selector_filters_and_json(loki):
    lines = [dict(EV, auditID=f"a{i}", verb=v) for i, v in enumerate(["get", "list", "get"])]
    values = [(str(NOW + i), json.dumps(e, separators=(",", ":"))) for i, e in enumerate(lines)]
    push(loki, body(*values, labels={"job": "kubernetes-audit", "verb": "mixed"}))
    push(loki, body((str(NOW), "not json"), labels={"job": "other"}))

    def q(query, **kw):
        code, text = get(loki, "/loki/api/v1/query_range", query=query, start=NOW - 10**9, end=NOW + 10**9, **kw)
        assert code == 200, text
        res = json.loads(text)
        assert res["status"] == "success" and res["data"]["resultType"] == "streams"
        return res["data"]["result"]

    res = q('{job="kubernetes-audit"}', direction="forward")
    assert len(res) == 1 and res[0]["stream"] == {"job": "kubernetes-audit", "verb": "mixed", "service_name": "kubernetes-audit"}
    assert [v[0] for v in res[0]["values"]] == [str(NOW), str(NOW + 1), str(NOW + 2)]
    assert [json.loads(v[1])["auditID"] for v in q('{job=~"kube.*"}', limit=2)[0]["values"]] == ["a2", "a1"]
    assert sum(len(r["values"]) for r in q('{job=~".+"} |= "a1"')) == 1
    assert sum(len(r["values"]) for r in q('{job=~".+"} != "a1"')) == 3
    hits = q('{job="kubernetes-audit"} | json | verb_extracted="get" | objectRef_name="cm1"')
    assert sorted(r["stream"]["auditID"] for r in hits) == ["a0", "a2"]
    assert hits[0]["stream"]["annotations_authorization_k8s_io_decision"] == "allow"
    assert "sourceIPs" not in hits[0]["stream"]  # arrays are skipped, as Loki's json parser does
    # a label extracted under the name of a stream label gets the _extracted suffix
    assert hits[0]["stream"]["verb"] == "mixed" and hits[0]["stream"]["verb_extracted"] == "get"


def test_query_range_merges_or_categorises_structured_metadata(loki):
    push(loki, body((str(NOW), "l", {"audit_id": "a9"})))
    code, text = get(loki, "/loki/api/v1/query_range", query='{job="kubernetes-audit"}', start=NOW - 1, end=NOW + 1)
    assert json.loads(text)["data"]["result"][0]["stream"]["audit_id"] == "a9"
    code, text = get(loki, "/loki/api/v1/query_range", headers={"X-Loki-Response-Encoding-Flags": "categorize-labels"},
                     query='{job="kubernetes-audit"}', start=NOW - 1, end=NOW + 1)
    r = json.loads(text)["data"]["result"][0]
    assert "audit_id" not in r["stream"] and r["values"][0][2] == {"structuredMetadata": {"audit_id": "a9"}}


def test_query_errors_are_400(loki):
    assert get(loki, "/loki/api/v1/query_range", query="job=x")[0] == 400
    assert get(loki, "/loki/api/v1/query_range", query='{job=~".*"}')[0] == 400
    code, text = get(loki, "/loki/api/v1/query_range", query='{job="x"}', start=0, end=NOW)
    assert code == 400 and "query time range exceeds the limit" in text


def test_labels_values_and_series(loki):
    push(loki, body((str(NOW), "l"), labels={"job": "kubernetes-audit", "verb": "get"}))
    assert json.loads(get(loki, "/loki/api/v1/labels")[1])["data"] == ["job", "service_name", "verb"]
    assert json.loads(get(loki, "/loki/api/v1/label/verb/values")[1])["data"] == ["get"]
    series = json.loads(get(loki, "/loki/api/v1/series", **{"match[]": '{verb="get"}'})[1])["data"]
    assert series == [{"job": "kubernetes-audit", "verb": "get", "service_name": "kubernetes-audit"}]


def test_runs_as_a_subprocess_with_control_api(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen([sys.executable, str(DOUBLES / "loki.py"), "--port", str(port), "--version", "2.6.1"],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert "listening" in p.stdout.readline()
        d = LokiDouble("2.6.1", port=port)  # a client view of the same port; not started
        urllib.request.urlopen(urllib.request.Request(d.url + "/_double/fail", data=b'{"status": 429}', method="POST"), timeout=5)
        assert push(d, body((str(NOW), "x")))[0] == 429
        assert push(d, body((str(NOW), "x")))[0] == 204
        stored = json.loads(get(d, "/_double/entries")[1])
        assert [e["line"] for e in stored] == ["x"]
    finally:
        p.terminate()
        p.wait(5)

"""`kaudit ship --listen`: kube-apiserver's audit webhook backend, received over TLS,
spooled durably, shipped to Loki like the audit log (docs/shipper.md, "Webhook mode")."""

from __future__ import annotations

import gzip
import http.client
import socket
import ssl
import threading
import time

import pytest

from conftest import DATA
from doubles.loki import LokiDouble
from shipper_helpers import ShipperProc, base_args, make_events, pairs_in_lines, pairs_in_loki, wait_for, append
from webhook_helpers import Receiver, event_list, free_port, write_pki


@pytest.fixture
def pki(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    return write_pki(d)


@pytest.fixture
def loki():
    d = LokiDouble("3.5.0", reject_old_samples_max_age_ns=0).start()
    yield d
    d.stop()


def entries_by_line(loki) -> dict:
    return {e.line: (e.labels, e.ts, e.metadata) for e in loki.entries()}


def test_eventlist_of_real_events_ships_like_the_audit_log(tmp_path, pki, loki):
    lines = make_events(120)
    r = Receiver(tmp_path, loki.url, pki, "--structured-metadata", "on", via_kaudit=True)  # `kaudit ship --listen`
    try:
        for i in range(0, 120, 40):
            status, body = r.post(event_list(lines[i:i + 40]))
            assert status == 200, body
            assert b"40 events queued" in body
        wait_for(lambda: len(loki.entries()) == 120, what="120 entries in Loki")
        assert r.metric("kaudit_shipper_webhook_events_total") == 120
        assert r.metric("kaudit_shipper_webhook_requests_total", code="200") == 3
    finally:
        code, err = r.stop()
    assert code == 0, err
    # the same lines through file mode into another Loki: identical entries (line, stream, ts, metadata)
    log = tmp_path / "audit.log"
    append(log, lines)
    other = LokiDouble("3.5.0", reject_old_samples_max_age_ns=0).start()
    try:
        code, err = ShipperProc(base_args(log, other, tmp_path / "p.json", "--once", "--structured-metadata", "on")).wait()
        assert code == 0, err
        assert entries_by_line(loki) == entries_by_line(other)
    finally:
        other.stop()
    assert {l.decode() for l in lines} == set(entries_by_line(loki))  # byte for byte, kind/apiVersion restored


def test_batches_at_the_apiserver_limits_are_accepted(tmp_path, pki, loki):
    # 400 events (--audit-webhook-batch-max-size) holding large RequestResponse events, ~10 MiB
    # (--audit-webhook-truncate-max-batch-size) in one body
    large = gzip.decompress((DATA / "shipper" / "large-event.jsonl.gz").read_bytes()).rstrip(b"\n")
    lines = make_events(375) + [large.replace(b'"auditID":"', b'"auditID":"big%02d-' % i, 1) for i in range(25)]
    body = event_list(lines)
    assert 10 << 20 <= len(body) + 400_000 and len(lines) == 400
    r = Receiver(tmp_path, loki.url, pki)
    try:
        status, reply = r.post(body)
        assert status == 200, reply
        wait_for(lambda: len(loki.entries()) == 400, timeout=60, what="400 entries")
        big = [e for e in loki.entries() if "big" in e.line[:400]]
        assert len(big) == 25 and all("kauditTruncated" in e.line and len(e.line) <= 256 * 1024 for e in big)
    finally:
        r.stop()


@pytest.mark.parametrize("body,headers,status,reason", [
    (b"this is not json", {}, 400, "not_json"),
    (b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"a":1}', {}, 400, "not_json"),
    (b'{"kind":"Pod","apiVersion":"v1","metadata":{}}', {}, 400, "not_eventlist"),
    (b'[{"kind":"Event"}]', {}, 400, "not_eventlist"),
    (b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":{"a":1}}', {}, 400, "not_eventlist"),
    (b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":["x"]}', {}, 400, "not_eventlist"),
    (b"\xff\xfe\x00", {}, 400, "not_utf8"),
    (b"{}", {"Content-Type": "application/vnd.kubernetes.protobuf"}, 415, "content_type"),
    (b"x" * 5000, {}, 413, "too_large"),
])
def test_bad_requests_get_4xx_with_a_reason_and_are_counted(tmp_path, pki, loki, body, headers, status, reason):
    r = Receiver(tmp_path, loki.url, pki, "--max-body-bytes", "4KiB")
    try:
        got, reply = r.post(body, headers)
        assert got == status, reply
        assert reason.encode() in reply
        assert r.metric("kaudit_shipper_webhook_rejected_total", reason=reason) == 1
        assert r.metric("kaudit_shipper_webhook_requests_total", code=str(status)) == 1
        # the receiver goes on: a good batch after the bad one is accepted and shipped
        good = make_events(3)
        assert r.post(event_list(good))[0] == 200
        wait_for(lambda: pairs_in_loki(loki) == pairs_in_lines(good), what="good batch shipped")
    finally:
        code, err = r.stop()
    assert code == 0 and "Traceback" not in err, err


def test_tls_is_required_plain_http_and_unknown_clients_are_refused(tmp_path, pki, loki):
    r = Receiver(tmp_path, loki.url, pki)
    try:
        s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
        body = event_list(make_events(2))
        s.sendall(b"POST /audit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%b"
                  % (len(body), body))
        try:
            answer = s.recv(4096)
        except ConnectionResetError:
            answer = b""
        s.close()
        assert not answer.startswith(b"HTTP/"), answer  # no HTTP answer over plain TCP
        status, reply = r.post(body, client_cert=False)  # TLS, but no client certificate
        assert status == 403 and b"client certificate" in reply
        assert r.metric("kaudit_shipper_webhook_rejected_total", reason="no_client_cert") == 1
        wait_for(lambda: r.metric("kaudit_shipper_webhook_tls_failures_total") >= 1, what="TLS failure counted")
        # a certificate from another CA fails the handshake
        (tmp_path / "other").mkdir()
        other = write_pki(tmp_path / "other")
        ctx = ssl.create_default_context(cafile=str(r.pki["ca_cert"]))
        ctx.load_cert_chain(str(other["client_cert"]), str(other["client_key"]))
        with pytest.raises((OSError, http.client.HTTPException)):
            c = http.client.HTTPSConnection("127.0.0.1", r.port, context=ctx, timeout=5)
            c.request("POST", "/audit", body=body)
            c.getresponse()
        wait_for(lambda: r.metric("kaudit_shipper_webhook_tls_failures_total") >= 2, what="TLS failures counted")
        assert r.get("/healthz")[0] == 200
        assert r.post(body)[0] == 200
        time.sleep(0.5)
        assert pairs_in_loki(loki) == pairs_in_lines(make_events(2))  # only the authenticated batch
    finally:
        r.stop()


def test_listen_needs_tls_files_and_excludes_path(tmp_path):
    p = ShipperProc(["--listen", "127.0.0.1:0", "--loki-url", "http://127.0.0.1:9", "--spool-dir", tmp_path])
    code, err = p.wait()
    assert code == 2 and "--tls-cert-file" in err and "Traceback" not in err
    p = ShipperProc(["--listen", "127.0.0.1:0", "--path", tmp_path / "a.log", "--loki-url", "http://127.0.0.1:9"])
    code, err = p.wait()
    assert code == 2 and "either --path" in err


class Apiserver(threading.Thread):
    """Posts batches like kube-apiserver's webhook backend: a batch that got no answer (connection
    refused or reset) is sent again with backoff; a 200 means acknowledged."""

    def __init__(self, receiver_port: int, ctx_factory, batches: list[list[bytes]]):
        super().__init__(daemon=True)
        self.port, self.ctx_factory, self.batches = receiver_port, ctx_factory, batches
        self.acked: list[bytes] = []
        self.failures = 0

    def run(self):
        import http.client

        for batch in self.batches:
            body = event_list(batch)
            while True:
                try:
                    c = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx_factory(), timeout=10)
                    c.request("POST", "/audit", body=body, headers={"Content-Type": "application/json"})
                    status = c.getresponse().status
                    c.close()
                except (OSError, http.client.HTTPException):
                    status = 0
                if status == 200:
                    self.acked += batch
                    break
                self.failures += 1
                time.sleep(0.05)


def test_kill_9_mid_batch_and_a_loki_outage_lose_nothing_acknowledged(tmp_path, pki):
    loki_port = free_port()
    url = f"http://127.0.0.1:{loki_port}"  # Loki is down at first
    r = Receiver(tmp_path, url, pki, "--structured-metadata", "on")
    port = r.port
    lines = make_events(3000)
    batches = [lines[i:i + 60] for i in range(0, len(lines), 60)]
    api = Apiserver(port, r.context, batches)
    api.start()
    wait_for(lambda: len(api.acked) >= 600, what="some batches acknowledged while Loki is down")
    r.proc.kill9()  # mid-stream: the apiserver is sending batches continuously
    killed_at = len(api.acked)
    assert (tmp_path / "spool" / "events.jsonl").exists()
    r = Receiver(tmp_path, url, pki, "--structured-metadata", "on", port=port)
    wait_for(lambda: len(api.acked) >= killed_at + 600, what="more batches after the restart")
    loki = LokiDouble("3.5.0", port=loki_port, reject_old_samples_max_age_ns=0).start()  # Loki comes back
    try:
        wait_for(lambda: len(api.acked) >= 1800, what="batches acknowledged after Loki is back")
        r.proc.kill9()  # again, now while pushes are going on
        r = Receiver(tmp_path, url, pki, "--structured-metadata", "on", port=port)
        api.join(60)
        assert not api.is_alive()
        assert api.failures > 0  # the kills were seen by the sender
        wait_for(lambda: pairs_in_loki(loki) == pairs_in_lines(api.acked), timeout=60,
                 what="everything acknowledged in Loki")
        assert pairs_in_lines(api.acked) == pairs_in_lines(lines)
        code, err = r.stop()
        assert code == 0, err
        # acknowledged segments are deleted: what is left is the active segment alone
        assert sorted(p.name for p in (tmp_path / "spool").iterdir() if p.name.startswith("events")) == ["events.jsonl"]
    finally:
        loki.stop()
        if r.proc.alive():
            r.proc.kill9()


def test_spool_segments_rotate_and_are_deleted_once_acknowledged(tmp_path):
    from kaudit.shipper.spool import Spool, SpoolFull

    lines = make_events(40)
    s = Spool(tmp_path / "spool", segment_bytes=4096, max_bytes=sum(len(l) + 1 for l in lines) + 1000).open()
    for i in range(0, 40, 4):
        s.append(lines[i:i + 4])
    names = sorted(p.name for p in (tmp_path / "spool").iterdir())
    assert len(names) > 3 and names[-1] == "events.jsonl" and names[0] == "events-000000000001.jsonl"
    spooled = b"".join((tmp_path / "spool" / n).read_bytes() for n in names[:-1] + names[-1:])
    assert spooled.splitlines() == lines
    with pytest.raises(SpoolFull):
        s.append(make_events(200))
    st = (tmp_path / "spool" / names[2]).stat()
    assert s.release(st.st_dev, st.st_ino) == 2
    assert sorted(p.name for p in (tmp_path / "spool").iterdir())[0] == names[2]
    s.close()
    # a torn last line (a crash inside a write, never acknowledged) is cut on open
    with open(tmp_path / "spool" / "events.jsonl", "ab") as f:
        f.write(b'{"kind":"Event","apiVer')
    Spool(tmp_path / "spool").open().close()
    assert (tmp_path / "spool" / "events.jsonl").read_bytes().endswith(b"\n")

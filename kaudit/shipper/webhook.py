"""The audit webhook receiver: kube-apiserver POSTs audit.k8s.io/v1 EventLists here.

Standard library only (http.server, ssl, threading). TLS is required: the apiserver's
webhook kubeconfig names an https URL and the CA kaudit generated. A batch is answered
200 only after its events are in the spool and fsync'd (spool.py); the shipper loop
then ships the spool to Loki exactly as it ships the audit log, with the same labels,
timestamps, structured metadata and replay behaviour.

Each item is spooled as the log backend would have written it: the item's bytes as
the apiserver sent them, with ``"kind":"Event","apiVersion":...`` put in front when the
list left them out (items of a list carry no TypeMeta). So an event delivered by both
backends is the same line, which Loki stores once.

Limits (k8s.io/apiserver pkg/server/options/audit.go): batches of up to 400 events
(--audit-webhook-batch-max-size); with --audit-webhook-truncate-enabled a body is at most
10 MiB (truncate-max-batch-size) plus a few hundred bytes and an event at most 100 KiB.
Without truncation, a batch of large RequestResponse events can be far bigger, so the
body limit (--max-body-bytes) defaults to 64 MiB. A refused batch is answered 4xx with
the reason and counted; the apiserver logs it and drops it (4xx is not retried).
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kaudit.shipper.metrics import Metrics
from kaudit.shipper.spool import Spool, SpoolFull

DEFAULT_MAX_BODY = 64 << 20
API_VERSIONS = ("audit.k8s.io/v1", "audit.k8s.io/v1beta1")

_decoder = json.JSONDecoder()
_WS = " \t\n\r"


class BadBatch(Exception):
    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def _skip_ws(s: str, pos: int) -> int:
    while pos < len(s) and s[pos] in _WS:
        pos += 1
    return pos


def event_lines(body: bytes) -> list[bytes]:
    """The events of an EventList body, one JSON line each, as the log backend writes them.

    Walks the top-level object with raw_decode, so every item is parsed once and kept as
    the bytes the apiserver sent (its escapes and key order). Raises BadBatch."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadBatch(400, "not_utf8", f"body is not UTF-8 (byte {e.start})") from None
    pos = _skip_ws(text, 0)
    if pos >= len(text) or text[pos] != "{":
        try:
            json.loads(text)
        except (ValueError, RecursionError):
            raise BadBatch(400, "not_json", "body is not JSON (expected an audit.k8s.io/v1 EventList)") from None
        raise BadBatch(400, "not_eventlist", "body is JSON but not an object (expected an audit.k8s.io/v1 EventList)")
    pos += 1
    top: dict = {}
    spans: list[tuple[int, int]] = []
    try:
        pos = _skip_ws(text, pos)
        if text[pos] == "}":
            pos += 1
        else:
            while True:
                key, pos = _decoder.raw_decode(text, pos)
                pos = _skip_ws(text, pos)
                if text[pos] != ":":
                    raise ValueError(f"expected ':' at character {pos}")
                pos = _skip_ws(text, pos + 1)
                if key == "items" and text[pos] == "[":
                    pos = _skip_ws(text, pos + 1)
                    if text[pos] == "]":
                        pos += 1
                    else:
                        while True:
                            start = pos
                            item, pos = _decoder.raw_decode(text, pos)
                            if not isinstance(item, dict):
                                raise BadBatch(400, "not_eventlist", f"items[{len(spans)}] is not an object")
                            spans.append((start, pos))
                            del item
                            pos = _skip_ws(text, pos)
                            if text[pos] == "]":
                                pos += 1
                                break
                            if text[pos] != ",":
                                raise ValueError(f"expected ',' or ']' at character {pos}")
                            pos = _skip_ws(text, pos + 1)
                    top[key] = spans
                else:
                    top[key], pos = _decoder.raw_decode(text, pos)
                pos = _skip_ws(text, pos)
                if text[pos] == "}":
                    pos += 1
                    break
                if text[pos] != ",":
                    raise ValueError(f"expected ',' or '}}' at character {pos}")
                pos = _skip_ws(text, pos + 1)
        if _skip_ws(text, pos) != len(text):
            raise ValueError(f"extra data at character {pos}")
    except IndexError:
        raise BadBatch(400, "not_json", "body is not JSON: it ends in the middle of the object") from None
    except (ValueError, RecursionError) as e:
        raise BadBatch(400, "not_json", f"body is not JSON: {e}") from None
    kind, version = top.get("kind"), top.get("apiVersion")
    if kind != "EventList" or version not in API_VERSIONS:
        raise BadBatch(400, "not_eventlist", f"kind {kind!r}, apiVersion {version!r}: expected kind EventList, "
                       f"apiVersion {' or '.join(API_VERSIONS)}")
    if top.get("items") is not None and top["items"] is not spans:
        raise BadBatch(400, "not_eventlist", f"items is a {type(top['items']).__name__}, not a list of events")
    head = ('{"kind":"Event","apiVersion":"%s",' % version).encode()
    out = []
    for start, end in spans:
        item = text[start:end]
        raw = item.encode("utf-8")
        if "\n" in item or "\r" in item:  # pretty-printed by some other sender: one line per event
            raw = json.dumps(json.loads(item), separators=(",", ":")).encode("utf-8")
        if not raw.startswith(b'{"kind"'):
            raw = head + raw[1:] if raw != b"{}" else head[:-1] + b"}"
        out.append(raw)
    return out


class Receiver:
    """HTTPS server: POST <any path> takes an EventList, GET /metrics and /healthz."""

    def __init__(self, addr: str, spool: Spool, metrics: Metrics, *, cert_file: str, key_file: str,
                 client_ca_file: str | None = None, max_body: int = DEFAULT_MAX_BODY, log=None):
        self.spool, self.metrics, self.max_body = spool, metrics, max_body
        self.log = log or (lambda msg: None)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert_file, key_file)
        self.require_client_cert = bool(client_ca_file)
        if client_ca_file:
            # optional at the handshake, so kubelet's probe and Prometheus can GET /healthz and
            # /metrics; a POST without a certificate from this CA is refused (403)
            ctx.load_verify_locations(cafile=client_ca_file)
            ctx.verify_mode = ssl.CERT_OPTIONAL
        self.ssl = ctx
        host, _, port = addr.rpartition(":")
        self.server = _TLSServer((host.strip("[]") or "0.0.0.0", int(port)), _handler(self), self)
        self.thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> "Receiver":
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="webhook")
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def accept(self, body: bytes) -> int:
        """Spool one batch; returns the number of events. Raises BadBatch."""
        lines = event_lines(body)
        if lines:
            try:
                self.spool.append(lines)
            except SpoolFull as e:
                raise BadBatch(503, "spool_full", f"{e}; Loki is not keeping up") from None
            except OSError as e:
                raise BadBatch(503, "spool_write", f"cannot write the spool: {e.strerror or e}") from None
        self.metrics.inc("kaudit_shipper_webhook_events_total", len(lines))
        self.metrics.set("kaudit_shipper_spool_bytes", self.spool.stored_bytes())
        return len(lines)


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, addr, handler, receiver: Receiver):
        self.receiver = receiver
        super().__init__(addr, handler)

    def finish_request(self, request, client_address):
        # the TLS handshake runs in the connection's own thread: a slow or plain-HTTP
        # client cannot hold up the accept loop
        request.settimeout(30)
        try:
            tls = self.receiver.ssl.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.receiver.metrics.inc("kaudit_shipper_webhook_tls_failures_total")
            self.receiver.log(f"webhook: TLS handshake with {client_address[0]} failed ({getattr(e, 'reason', None) or e}); "
                              "plain HTTP is refused")
            try:
                request.close()
            except OSError:
                pass
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):  # a broken connection must not print a traceback
        self.receiver.metrics.inc("kaudit_shipper_webhook_connection_errors_total")


def _handler(receiver: Receiver):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the apiserver reuses its connection

        def log_message(self, *a):
            pass

        def _reply(self, status: int, body: dict, close: bool = False) -> None:
            data = (json.dumps(body) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 503:
                self.send_header("Retry-After", "5")
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)
            receiver.metrics.inc("kaudit_shipper_webhook_requests_total", code=str(status))

        def _refuse(self, status: int, reason: str, message: str, close: bool = False) -> None:
            receiver.metrics.inc("kaudit_shipper_webhook_rejected_total", reason=reason)
            receiver.log(f"webhook: refused a batch from {self.client_address[0]} ({status} {reason}): {message}")
            self._reply(status, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
                                 "message": message, "code": status}, close=close)

        def do_GET(self):  # noqa: N802
            path = self.path.split("?")[0]
            if path == "/metrics":
                data = receiver.metrics.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            elif path in ("/healthz", "/readyz"):
                self._reply(200, {"status": "ok", "spoolBytes": receiver.spool.stored_bytes()})
            else:
                self._reply(404, {"message": f"{path}: POST audit EventLists to any path; GET /metrics, /healthz"})

        def do_POST(self):  # noqa: N802
            length = self.headers.get("Content-Length")
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked" or length is None:
                return self._refuse(411, "no_length", "send Content-Length (chunked bodies are not read)", close=True)
            try:
                n = int(length)
                if n < 0:
                    raise ValueError
            except ValueError:
                return self._refuse(400, "bad_length", f"Content-Length {length!r} is not a size", close=True)
            if n > receiver.max_body:
                self._discard(n)  # read it away (not kept) so the client sees the answer, not a reset
                return self._refuse(413, "too_large", f"body of {n} bytes is over the receiver's limit of "
                                    f"{receiver.max_body} bytes (--max-body-bytes); enable "
                                    "--audit-webhook-truncate-enabled on kube-apiserver or raise the limit", close=True)
            if receiver.require_client_cert and not self.connection.getpeercert():
                self._discard(n)
                return self._refuse(403, "no_client_cert", "a client certificate signed by --client-ca-file is required "
                                    "(the webhook kubeconfig's client-certificate-data)", close=True)
            enc = self.headers.get("Content-Encoding", "identity").strip().lower()
            ctype = self.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
            body = self._read(n)
            if body is None:
                return
            if enc not in ("", "identity"):
                return self._refuse(415, "encoding", f"Content-Encoding {enc!r} is not read; send the body uncompressed")
            if ctype not in ("application/json", ""):
                return self._refuse(415, "content_type", f"Content-Type {ctype!r}: send JSON "
                                    "(the webhook kubeconfig's default content type)")
            try:
                count = receiver.accept(body)
            except BadBatch as e:
                return self._refuse(e.status, e.reason, e.message)
            self._reply(200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200,
                              "message": f"{count} events queued"})

        def _discard(self, n: int) -> None:
            left = n if n <= 1 << 30 else 0
            try:
                while left > 0:
                    c = self.rfile.read(min(left, 1 << 20))
                    if not c:
                        break
                    left -= len(c)
            except (OSError, socket.timeout):
                pass

        def _read(self, n: int) -> bytes | None:
            chunks, left = [], n
            try:
                while left:
                    c = self.rfile.read(min(left, 1 << 20))
                    if not c:
                        break
                    chunks.append(c)
                    left -= len(c)
            except (OSError, socket.timeout):
                left = -1
            if left:
                receiver.metrics.inc("kaudit_shipper_webhook_rejected_total", reason="incomplete_body")
                self.close_connection = True
                return None
            return b"".join(chunks)

    return Handler

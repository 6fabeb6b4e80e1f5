"""Counters of the shipper, served as Prometheus text on /metrics by a daemon thread."""

from __future__ import annotations

import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HELP = {
    "kaudit_shipper_lines_read_total": ("counter", "Audit log lines read."),
    "kaudit_shipper_entries_sent_total": ("counter", "Entries acknowledged by Loki."),
    "kaudit_shipper_bytes_sent_total": ("counter", "Push body bytes acknowledged by Loki (before compression)."),
    "kaudit_shipper_pushes_total": ("counter", "Push requests by HTTP status (0 = no answer)."),
    "kaudit_shipper_retries_total": ("counter", "Push attempts repeated after a connection error, 429 or 5xx."),
    "kaudit_shipper_dropped_entries_total": ("counter", "Entries Loki refused with 400, by reason."),
    "kaudit_shipper_malformed_lines_total": ("counter", "Lines that are not JSON audit events (shipped anyway)."),
    "kaudit_shipper_truncated_events_total": ("counter", "Events over --max-line-bytes: bodies removed, or cut."),
    "kaudit_shipper_rotations_total": ("counter", "Rename rotations followed."),
    "kaudit_shipper_truncations_total": ("counter", "Copy-truncate rotations detected."),
    "kaudit_shipper_acked_offset_bytes": ("gauge", "Offset up to which Loki acknowledged the file."),
    "kaudit_shipper_last_push_timestamp_seconds": ("gauge", "Unix time of the last acknowledged push."),
    "kaudit_shipper_webhook_requests_total": ("counter", "Webhook requests answered, by HTTP status."),
    "kaudit_shipper_webhook_rejected_total": ("counter", "Webhook batches refused, by reason."),
    "kaudit_shipper_webhook_events_total": ("counter", "Events accepted by the webhook receiver (fsync'd to the spool)."),
    "kaudit_shipper_webhook_tls_failures_total": ("counter", "Connections that failed the TLS handshake (plain HTTP included)."),
    "kaudit_shipper_webhook_connection_errors_total": ("counter", "Connections broken while a request was handled."),
    "kaudit_shipper_spool_bytes": ("gauge", "Bytes in the webhook spool (acknowledged segments are deleted)."),
}


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[tuple, float]] = defaultdict(dict)

    def inc(self, name: str, value: float = 1, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._values[name]
            series[key] = series.get(key, 0) + value

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._values[name][tuple(sorted(labels.items()))] = value

    def get(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._values.get(name, {}).get(tuple(sorted(labels.items())), 0)

    def total(self, name: str) -> float:
        with self._lock:
            return sum(self._values.get(name, {}).values())

    def snapshot(self) -> dict[str, dict[tuple, float]]:
        with self._lock:
            return {k: dict(v) for k, v in self._values.items()}

    def render(self) -> str:
        out = []
        snap = self.snapshot()
        for name, (kind, text) in _HELP.items():
            out.append(f"# HELP {name} {text}")
            out.append(f"# TYPE {name} {kind}")
            for key, v in sorted(snap.get(name, {}).items()):
                lbl = ",".join(f'{k}="{_esc(val)}"' for k, val in key)
                out.append(f"{name}{{{lbl}}} {_num(v)}" if lbl else f"{name} {_num(v)}")
        return "\n".join(out) + "\n"

    def serve(self, addr: str) -> ThreadingHTTPServer:
        """Serve /metrics on host:port (":9400" means all interfaces) in a daemon thread."""
        host, _, port = addr.rpartition(":")
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = metrics.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        server = ThreadingHTTPServer((host.strip("[]") or "0.0.0.0", int(port)), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True, name="metrics").start()
        return server


def _esc(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(v)

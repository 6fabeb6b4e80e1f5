"""Helpers for the webhook receiver tests: TLS material from kaudit's own generator,
EventList bodies built from real events the way kube-apiserver's webhook backend sends
them (items without kind/apiVersion, bytes otherwise unchanged), an HTTPS client."""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import sys
import time
from pathlib import Path

from shipper_helpers import ShipperProc

EVENT_PREFIX = re.compile(rb'\{"kind":"Event","apiVersion":"audit\.k8s\.io/v1",')


def event_list(lines: list[bytes]) -> bytes:
    """An audit.k8s.io/v1 EventList of log-backend lines, as the webhook backend encodes it."""
    items = []
    for l in lines:
        m = EVENT_PREFIX.match(l)
        items.append(b"{" + l[m.end():] if m else l)
    return b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[' + b",".join(items) + b"]}"


def write_pki(directory: Path, hosts=("127.0.0.1", "localhost")):
    from kaudit.core.webhook_tls import make_pki

    pki = make_pki(list(hosts))
    files = {}
    for name in ("ca_cert", "server_cert", "server_key", "client_cert", "client_key"):
        p = directory / f"{name}.pem"
        p.write_bytes(getattr(pki, name))
        files[name] = p
    return files


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Receiver:
    """`python -m kaudit.shipper --listen` (or `kaudit ship --listen`) as a subprocess."""

    def __init__(self, tmp: Path, loki_url: str, pki: dict, *extra, port: int | None = None, via_kaudit=False,
                 client_ca=True):
        self.port = port or free_port()
        self.tmp = tmp
        args = ["--listen", f"127.0.0.1:{self.port}", "--loki-url", loki_url, "--spool-dir", tmp / "spool",
                "--tls-cert-file", pki["server_cert"], "--tls-key-file", pki["server_key"], "--node", "cp1",
                "--batch-wait", "100ms", "--backoff-min", "50ms", "--backoff-max", "300ms", *extra]
        if client_ca:
            args += ["--client-ca-file", pki["ca_cert"]]
        self.proc = ShipperProc(args, via_kaudit=via_kaudit)
        self.pki = pki
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if not self.proc.alive():
                code, err = self.proc.wait()
                raise AssertionError(f"receiver exited {code}: {err}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("receiver did not start listening")

    def context(self, client_cert=True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki["ca_cert"]))
        if client_cert:
            ctx.load_cert_chain(str(self.pki["client_cert"]), str(self.pki["client_key"]))
        return ctx

    def post(self, body: bytes, headers=None, client_cert=True, timeout=30) -> tuple[int, bytes]:
        c = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context(client_cert), timeout=timeout)
        try:
            h = {"Content-Type": "application/json"}
            h.update(headers or {})
            c.request("POST", "/audit", body=body, headers=h)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def get(self, path: str) -> tuple[int, str]:
        c = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context(), timeout=10)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read().decode()
        finally:
            c.close()

    def metric(self, name: str, **labels) -> float:
        _, text = self.get("/metrics")
        want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
        for line in text.splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return 0.0

    def stop(self):
        if self.proc.alive():
            return self.proc.term()
        return self.proc.wait()


__all__ = ["event_list", "write_pki", "free_port", "Receiver", "sys"]

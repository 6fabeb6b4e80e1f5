"""A real kube-apiserver (and etcd) on loopback, for tests that want the real API's answers.

Nothing here builds anything: the test finds ``kube-apiserver`` through $KAUDIT_KUBE_APISERVER
or PATH and ``etcd`` (Debian's etcd-server) on PATH, and skips with one line when either is
missing. The apiserver generates its own self-signed serving certificate; clients
authenticate with static tokens: ``admin`` (group system:masters) and ``alice`` (no groups).
Audit flags can be passed through ``extra_args``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

ADMIN_TOKEN = "kaudit-test-admin-token"
ALICE_TOKEN = "kaudit-test-alice-token"


def find_apiserver() -> Optional[str]:
    path = os.environ.get("KAUDIT_KUBE_APISERVER") or shutil.which("kube-apiserver")
    return path if path and os.access(path, os.X_OK) else None


def require_binaries() -> tuple[str, str]:
    apiserver, etcd = find_apiserver(), shutil.which("etcd")
    if not apiserver:
        pytest.skip("no kube-apiserver: set KAUDIT_KUBE_APISERVER or put kube-apiserver on PATH")
    if not etcd:
        pytest.skip("no etcd on PATH (Debian: apt-get install etcd-server)")
    if not shutil.which("kubectl"):
        pytest.skip("no kubectl on PATH")
    return apiserver, etcd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, ok, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited {proc.returncode}: {log.read_text()[-2000:]}")
        if ok():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {timeout}s: {log.read_text()[-2000:]}")


@dataclass
class RealApiserver:
    root: Path
    port: int
    kubeconfig: Path
    procs: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def kubectl(self, *args: str, input: Optional[bytes] = None, token: Optional[str] = None, check: bool = True) -> subprocess.CompletedProcess:
        argv = ["kubectl", "--kubeconfig", str(self.kubeconfig), *(["--token", token] if token else []), *args]
        r = subprocess.run(argv, input=input, capture_output=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed: {r.stderr.decode()}")
        return r

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def start(root: Path, extra_args: tuple[str, ...] = ()) -> RealApiserver:
    apiserver, etcd = require_binaries()
    root.mkdir(parents=True, exist_ok=True)
    client, peer, port = free_port(), free_port(), free_port()
    procs = []
    etcd_log = root / "etcd.log"
    procs.append(subprocess.Popen(
        [etcd, "--data-dir", str(root / "etcd"), "--name", "kaudit-test",
         "--listen-client-urls", f"http://127.0.0.1:{client}", "--advertise-client-urls", f"http://127.0.0.1:{client}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"kaudit-test=http://127.0.0.1:{peer}"],
        stdout=etcd_log.open("wb"), stderr=subprocess.STDOUT,
    ))

    def etcd_ok() -> bool:
        try:
            return b"true" in urllib.request.urlopen(f"http://127.0.0.1:{client}/health", timeout=1).read()
        except OSError:
            return False

    try:
        _wait("etcd", etcd_ok, 30, procs[0], etcd_log)
        sa_key = root / "sa.key"
        subprocess.run(["openssl", "genrsa", "-out", str(sa_key), "2048"], check=True, capture_output=True)
        (root / "tokens.csv").write_text(f'{ADMIN_TOKEN},admin,admin-uid,"system:masters"\n{ALICE_TOKEN},alice,alice-uid\n')
        log = root / "apiserver.log"
        procs.append(subprocess.Popen(
            [apiserver, f"--etcd-servers=http://127.0.0.1:{client}", "--bind-address=127.0.0.1",
             "--advertise-address=127.0.0.1", f"--secure-port={port}", f"--cert-dir={root / 'certs'}",
             f"--token-auth-file={root / 'tokens.csv'}", "--authorization-mode=RBAC",
             "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
             f"--service-account-key-file={sa_key}", f"--service-account-signing-key-file={sa_key}",
             "--service-cluster-ip-range=10.96.0.0/16", *extra_args],
            stdout=log.open("wb"), stderr=subprocess.STDOUT,
        ))
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE

        def answers(path: str, timeout: float):
            def ok() -> bool:
                req = urllib.request.Request(f"https://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
                try:
                    return urllib.request.urlopen(req, timeout=timeout, context=ctx).status == 200
                except OSError:
                    return False
            return ok

        _wait("kube-apiserver", answers("/readyz", 2), 120, procs[1], log)
        # /readyz is 200 before the aggregated OpenAPI spec is built; kubectl's client-side
        # validation fetches it and gives up on the 503 the apiserver answers meanwhile
        _wait("kube-apiserver's OpenAPI", answers("/openapi/v2", 10), 60, procs[1], log)
    except BaseException:
        for p in procs:
            p.kill()
        raise
    kubeconfig = root / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: real\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\n"
        f"users:\n- name: admin\n  user:\n    token: {ADMIN_TOKEN}\n"
        "contexts:\n- name: real\n  context:\n    cluster: real\n    user: admin\ncurrent-context: real\n"
    )
    return RealApiserver(root, port, kubeconfig, procs)

"""A real kube-apiserver's audit webhook backend posting to `kaudit ship --listen`.

Needs a kube-apiserver binary (KAUDIT_KUBE_APISERVER, else `kube-apiserver` on PATH) and
etcd (KAUDIT_ETCD, else `etcd` on PATH); skipped with the reason when either is absent.
The apiserver runs with both backends, so the events that reach Loki through the webhook
can be compared byte for byte with the lines its log backend wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import ssl
import uuid

import pytest

from doubles.loki import LokiDouble
from kaudit.core.webhook_tls import make_pki, webhook_kubeconfig
from shipper_helpers import wait_for
from webhook_helpers import Receiver, free_port, write_pki

APISERVER = os.environ.get("KAUDIT_KUBE_APISERVER") or shutil.which("kube-apiserver")
ETCD = os.environ.get("KAUDIT_ETCD") or shutil.which("etcd")
pytestmark = pytest.mark.skipif(
    not (APISERVER and ETCD),
    reason="no kube-apiserver/etcd binaries (set KAUDIT_KUBE_APISERVER and KAUDIT_ETCD, or put them on PATH)")

POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
"""


def _sa_keys(tmp):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp / "sa.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                                   serialization.NoEncryption()))
    (tmp / "sa.pub").write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                               serialization.PublicFormat.SubjectPublicKeyInfo))


def test_real_apiserver_webhook_batches_reach_loki_like_its_log(tmp_path):
    pki_dir = tmp_path / "pki"
    pki_dir.mkdir()
    pki = write_pki(pki_dir)
    loki = LokiDouble("3.5.0", reject_old_samples_max_age_ns=0).start()
    receiver = Receiver(tmp_path, loki.url, pki, "--structured-metadata", "on")
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    procs = []
    try:
        procs.append(subprocess.Popen(
            [ETCD, "--data-dir", str(tmp_path / "etcd"), "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
             "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}", "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
             "--initial-cluster", f"default=http://127.0.0.1:{peer_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        serving = make_pki(["127.0.0.1"])
        (tmp_path / "serving.crt").write_bytes(serving.server_cert)
        (tmp_path / "serving.key").write_bytes(serving.server_key)
        _sa_keys(tmp_path)
        token = uuid.uuid4().hex
        (tmp_path / "tokens.csv").write_text(f'{token},admin,1,"system:masters"\n')
        (tmp_path / "policy.yaml").write_text(POLICY)
        (tmp_path / "webhook.kubeconfig").write_text(webhook_kubeconfig(
            f"https://127.0.0.1:{receiver.port}/audit", pki["ca_cert"].read_bytes(),
            pki["client_cert"].read_bytes(), pki["client_key"].read_bytes()))
        log = tmp_path / "audit.log"
        procs.append(subprocess.Popen(
            [APISERVER, f"--etcd-servers=http://127.0.0.1:{etcd_port}", "--bind-address=127.0.0.1",
             "--advertise-address=127.0.0.1", f"--secure-port={api_port}", f"--tls-cert-file={tmp_path / 'serving.crt'}",
             f"--tls-private-key-file={tmp_path / 'serving.key'}", f"--token-auth-file={tmp_path / 'tokens.csv'}",
             "--authorization-mode=RBAC", "--service-cluster-ip-range=10.0.0.0/24",
             "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
             f"--service-account-key-file={tmp_path / 'sa.pub'}", f"--service-account-signing-key-file={tmp_path / 'sa.key'}",
             f"--cert-dir={tmp_path / 'certs'}", f"--audit-policy-file={tmp_path / 'policy.yaml'}",
             f"--audit-log-path={log}", f"--audit-webhook-config-file={tmp_path / 'webhook.kubeconfig'}",
             "--audit-webhook-mode=batch", "--audit-webhook-batch-max-wait=1s"],
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "apiserver.err", "wb")))
        ctx = ssl.create_default_context(cadata=serving.ca_cert.decode())
        marker = f"kaudit-probe-{uuid.uuid4().hex[:8]}"

        def get(path):
            req = urllib.request.Request(f"https://127.0.0.1:{api_port}{path}", headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
                return r.status

        deadline = time.monotonic() + 120
        while True:
            try:
                if get("/readyz") == 200:
                    break
            except OSError:
                pass
            assert procs[-1].poll() is None, (tmp_path / "apiserver.err").read_text()[-2000:]
            assert time.monotonic() < deadline, "kube-apiserver not ready in 120s"
            time.sleep(0.5)
        try:
            get(f"/api/v1/namespaces/{marker}")
        except urllib.error.HTTPError as e:
            assert e.code == 404
        wait_for(lambda: any(marker in e.line for e in loki.entries()), timeout=60, what="the probe's event via the webhook")
        time.sleep(2)  # let the apiserver flush both backends
        logged = {json.loads(l)["auditID"] + json.loads(l)["stage"]: l for l in log.read_text().splitlines() if l}
        shipped = [e for e in loki.entries() if marker in e.line]
        for e in shipped:
            ev = json.loads(e.line)
            assert e.line == logged[ev["auditID"] + ev["stage"]]  # the same bytes as the log backend
            assert dict(e.metadata)["audit_id"] == ev["auditID"]
        assert receiver.metric("kaudit_shipper_webhook_rejected_total") == 0
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        receiver.stop()
        loki.stop()

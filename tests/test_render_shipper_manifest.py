"""The shipper DaemonSet manifest: accepted by the real kubectl, mounts the right paths,
runs on control-plane nodes, and its ConfigMap code really runs the shipper.

What the kubectl check proves, honestly: `kubectl apply --dry-run=client --validate=false`
parses the YAML stream, maps every kind through API discovery (served here by a tiny
local HTTP server with the core/v1 and apps/v1 resource lists, since no cluster exists),
looks each object up (404: would be created) and prints the objects it would send. It does
not validate field names against the OpenAPI schema (that needs a real API server); the
structural assertions below cover the fields that matter.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from kaudit.core import charts
from kaudit.core import shipper_manifest
from kaudit.engine.phases.collector import shipper_sources
from kaudit.shipper import fields as F
from loki_fixture import loki_factory  # noqa: F401

KUBECTL = "/usr/bin/kubectl"
EVENTS = Path(__file__).parent / "data" / "render" / "events.jsonl"

_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
DISCOVERY = {
    "/version": {"major": "1", "minor": "32", "gitVersion": "v1.32.0"},
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]},
    "/apis": {
        "kind": "APIGroupList", "apiVersion": "v1",
        "groups": [{"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}], "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}}],
    },
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
        {"name": "namespaces", "singularName": "namespace", "namespaced": False, "kind": "Namespace", "verbs": _VERBS},
        {"name": "configmaps", "singularName": "configmap", "namespaced": True, "kind": "ConfigMap", "verbs": _VERBS},
    ]},
    "/apis/apps/v1": {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1", "resources": [
        {"name": "daemonsets", "singularName": "daemonset", "namespaced": True, "kind": "DaemonSet", "verbs": _VERBS},
    ]},
}


class _Discovery(BaseHTTPRequestHandler):
    requests: list = []

    def log_message(self, *args):
        pass

    def _reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?")[0]
        self.requests.append(("GET", path))
        if path in DISCOVERY:
            return self._reply(200, DISCOVERY[path])
        name = path.rstrip("/").rsplit("/", 1)[-1]
        self._reply(404, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                          "message": f'"{name}" not found', "reason": "NotFound", "code": 404})

    def _refuse(self):
        self.requests.append((self.command, self.path))
        self._reply(405, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "read-only test server", "code": 405})

    do_POST = do_PUT = do_PATCH = do_DELETE = _refuse


@pytest.fixture
def discovery_kubeconfig(tmp_path):
    handler = type("H", (_Discovery,), {"requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    kc = tmp_path / "kubeconfig"
    kc.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: test, cluster: {{server: 'http://127.0.0.1:{server.server_address[1]}'}}}}]\n"
        "users: [{name: test, user: {}}]\n"
        "contexts: [{name: test, context: {cluster: test, user: test}}]\ncurrent-context: test\n"
    )
    yield kc, handler.requests
    server.shutdown()
    server.server_close()


def manifest(**kw) -> str:
    d = shipper_manifest.ShipperDeploy(sources=tuple(sorted(shipper_sources().items())), **kw)
    return shipper_manifest.render_shipper_manifest(d)


def docs(text: str) -> list[dict]:
    return [d for d in YAML(typ="safe", pure=True).load_all(text) if d]


def test_real_kubectl_accepts_the_manifest(discovery_kubeconfig):
    assert os.access(KUBECTL, os.X_OK), "the real kubectl client is part of this machine's toolset"
    kc, requests = discovery_kubeconfig
    text = manifest()
    r = subprocess.run(
        [KUBECTL, "--kubeconfig", str(kc), "apply", "--dry-run=client", "--validate=false", "-f", "-", "-o", "json"],
        input=text.encode(), capture_output=True, timeout=60,
    )
    assert r.returncode == 0, r.stderr.decode()
    out = json.loads(r.stdout)
    kinds = [(i["kind"], i["metadata"]["name"]) for i in out["items"]]
    assert kinds == [("ConfigMap", charts.SHIPPER_CODE_CONFIGMAP), ("DaemonSet", charts.SHIPPER_NAME)]
    # what kubectl would send is what kaudit rendered
    assert out["items"][1]["spec"] == docs(text)[1]["spec"]
    # dry run: kubectl looked objects up and never wrote
    assert ("GET", f"/apis/apps/v1/namespaces/kaudit/daemonsets/{charts.SHIPPER_NAME}") in requests
    assert all(method == "GET" for method, _ in requests)


def test_real_kubectl_rejects_a_broken_manifest(discovery_kubeconfig):
    """The check above can fail: an unknown kind is refused."""
    kc, _ = discovery_kubeconfig
    broken = manifest().replace("kind: DaemonSet", "kind: DaemonSett")
    r = subprocess.run(
        [KUBECTL, "--kubeconfig", str(kc), "apply", "--dry-run=client", "--validate=false", "-f", "-"],
        input=broken.encode(), capture_output=True, timeout=60,
    )
    assert r.returncode != 0 and b"DaemonSett" in r.stderr


def test_daemonset_structure():
    cm, ds = docs(manifest(log_path="/var/log/kubernetes-audit/audit.log", image="registry.local/python:3.12-slim"))
    pod = ds["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"node-role.kubernetes.io/control-plane": ""}
    assert {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["securityContext"]["runAsUser"] == 0
    [c] = pod["containers"]
    assert c["image"] == "registry.local/python:3.12-slim"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["resources"]["limits"]["memory"] and c["resources"]["limits"]["cpu"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    [port] = c["ports"]
    assert port["name"] == "metrics" and f"0.0.0.0:{port['containerPort']}" in c["args"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert volumes["audit-log"]["hostPath"] == {"path": "/var/log/kubernetes-audit", "type": "Directory"}
    assert mounts["audit-log"] == {"name": "audit-log", "mountPath": "/var/log/kubernetes-audit", "readOnly": True}
    assert volumes["positions"]["hostPath"]["path"] == mounts["positions"]["mountPath"] == "/var/lib/kaudit"
    assert not mounts["positions"].get("readOnly")
    assert mounts["code"]["readOnly"] is True and volumes["code"]["configMap"]["name"] == cm["metadata"]["name"]
    # every ConfigMap key is mounted at its package path
    items = {i["key"]: i["path"] for i in volumes["code"]["configMap"]["items"]}
    assert set(items) == set(cm["data"])
    assert set(items.values()) == set(shipper_sources())
    args = c["args"]
    assert args[args.index("--path") + 1] == "/var/log/kubernetes-audit/audit.log"
    assert args[args.index("--structured-metadata") + 1] == "off"
    assert args[args.index("--node") + 1] == "$(NODE_NAME)"
    assert {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}} in c["env"]
    for obj in (cm, ds):
        assert obj["metadata"]["labels"][charts.MANAGED_BY_LABEL[0]] == charts.MANAGED_BY_LABEL[1]


def test_code_change_rolls_the_pods():
    a = docs(manifest())[1]["spec"]["template"]["metadata"]["annotations"]["kaudit.io/code-sha256"]
    sources = dict(shipper_sources())
    sources["kaudit/shipper/main.py"] += "\n# changed\n"
    d = shipper_manifest.ShipperDeploy(sources=tuple(sorted(sources.items())))
    b = docs(shipper_manifest.render_shipper_manifest(d))[1]["spec"]["template"]["metadata"]["annotations"]["kaudit.io/code-sha256"]
    assert a != b


def test_configmap_code_runs_the_shipper_as_the_pod_would(tmp_path, loki_factory):  # noqa: F811
    """Lay the ConfigMap out as the kubelet would, then run the container's command with
    a bare interpreter (no site-packages): it ships real events into a Loki 2.6.1 double,
    which rejects structured metadata, as loki-stack's Loki does."""
    loki = loki_factory("2.6.1", reject_old_samples_max_age_ns=10**20)
    log = tmp_path / "log" / "audit.log"
    log.parent.mkdir()
    shutil.copy(EVENTS, log)
    cm, ds = docs(manifest(log_path=str(log), loki_url=loki.url, positions_dir=str(tmp_path / "pos")))
    code_dir = tmp_path / "code"
    for item in ds["spec"]["template"]["spec"]["volumes"][2]["configMap"]["items"]:
        target = code_dir / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(cm["data"][item["key"]])
    [c] = ds["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    env.update(NODE_NAME="cp-1", PYTHONPATH=str(code_dir), PATH=os.environ.get("PATH", ""))
    args = [a.replace("$(NODE_NAME)", env["NODE_NAME"]) for a in c["args"]]
    args[args.index("--metrics-addr") + 1] = "127.0.0.1:0"
    command = [sys.executable if part == "python" else part for part in c["command"]]
    command.insert(1, "-S")  # no site-packages: only the ConfigMap's files can be imported
    r = subprocess.run([*command, *args, "--once"], env=env, cwd=tmp_path, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    lines = [x for x in EVENTS.read_text().splitlines() if x]
    entries = loki.entries()
    assert sorted(e.line for e in entries) == sorted(lines)
    for e in entries:
        assert e.stream["node"] == "cp-1" and e.stream["job"] == F.DEFAULT_JOB
        assert set(e.stream) <= {"job", "node", *F.DEFAULT_LABELS}
        assert e.structured_metadata == {}
    assert not (code_dir / "kaudit" / "shipper" / "__pycache__").exists(), "read-only root: no bytecode written"


def test_webhook_receiver_sends_the_same_cluster_label_and_credentials_as_the_tailer():
    # --mode both with --cluster-name and an existing Loki: both containers carry the cluster
    # label and the credential file paths (never the values), and both mount the Secret
    from kaudit.core.loki_auth import PodAuth
    from kaudit.core.render import parse_yaml_documents

    auth = PodAuth(username="audit", password_file="/etc/kaudit/loki-auth/password", ca_file="/etc/kaudit/loki-auth/ca.crt")
    d = shipper_manifest.ShipperDeploy(sources=(("kaudit/shipper/__main__.py", ""),), cluster="prod-eu", auth=auth,
                             webhook_listen="127.0.0.1:9443", max_line_bytes=1048576)
    [ds] = [o for o in parse_yaml_documents(shipper_manifest.render_shipper_manifest(d), "s") if o["kind"] == "DaemonSet"]
    containers = {c["name"]: c for c in ds["spec"]["template"]["spec"]["containers"]}
    assert set(containers) == {"shipper", "webhook"}
    for c in containers.values():
        args = c["args"]
        assert args[args.index("--cluster") + 1] == "prod-eu"
        assert args[args.index("--basic-auth-password-file") + 1] == "/etc/kaudit/loki-auth/password"
        assert args[args.index("--max-line-bytes") + 1] == "1048576"
        assert "/etc/kaudit/loki-auth" in [m["mountPath"] for m in c["volumeMounts"]]

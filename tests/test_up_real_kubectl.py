"""kaudit.adapters.kube against the real kubectl (/usr/bin/kubectl) talking to a small API
server on 127.0.0.1: the argv kaudit builds is accepted, and kubectl's own answers
(a pod, NotFound, /readyz, a refused connection, a Conflict on replace) are read
the way kaudit expects. The server speaks the Kubernetes REST paths and Status
errors for the few resources involved; discovery is the legacy /api form."""

from __future__ import annotations

import json
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from kaudit.core.errors import KauditError
from kaudit.adapters.hosts.local import LocalHost
from kaudit.adapters.kube import ApiDown, NodeKubectl, find_apiserver_pod


@pytest.fixture(autouse=True)
def real_kubectl():
    # the brief's machine has the kubectl client at /usr/bin/kubectl (no cluster)
    assert shutil.which("kubectl", path="/usr/bin:/usr/local/bin"), "these tests need the kubectl client in /usr/bin"

RESOURCES = {
    "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1",
    "resources": [
        {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "shortNames": ["po"],
         "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]},
        {"name": "configmaps", "singularName": "configmap", "namespaced": True, "kind": "ConfigMap", "shortNames": ["cm"],
         "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]},
    ],
}


def status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def mirror_pod(name: str, h: str, ready: bool) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "kube-system", "labels": {"component": "kube-apiserver", "tier": "control-plane"},
                     "annotations": {"kubernetes.io/config.hash": h, "kubernetes.io/config.mirror": h,
                                     "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint": "192.168.5.15:6443"}},
        "spec": {"nodeName": name.removeprefix("kube-apiserver-"), "containers": [{"name": "kube-apiserver", "image": "x"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                   "containerStatuses": [{"name": "kube-apiserver", "ready": ready, "restartCount": 0, "state": {"running": {}}}]},
    }


class Api:
    def __init__(self):
        self.pods = {"kube-apiserver-cp1": mirror_pod("kube-apiserver-cp1", "5d41402abc4b2a76b9719d911017c592", True)}
        self.configmaps = {"kubeadm-config": {"apiVersion": "v1", "kind": "ConfigMap",
                                              "metadata": {"name": "kubeadm-config", "namespace": "kube-system", "resourceVersion": "7"},
                                              "data": {"ClusterConfiguration": "kind: ClusterConfiguration\n"}}}
        self.requests: list[tuple[str, str]] = []


@pytest.fixture
def api_server():
    api = Api()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def send(self, code: int, body):
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            url = urlsplit(self.path)
            api.requests.append(("GET", url.path))
            parts = url.path.strip("/").split("/")
            if url.path == "/api":
                return self.send(200, {"kind": "APIVersions", "versions": ["v1"],
                                       "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
            if url.path == "/apis":
                return self.send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
            if url.path == "/api/v1":
                return self.send(200, RESOURCES)
            if url.path == "/readyz":
                return self.send(200, "ok")
            if parts[:4] == ["api", "v1", "namespaces", "kube-system"] and len(parts) >= 5:
                store = {"pods": api.pods, "configmaps": api.configmaps}.get(parts[4])
                if store is None:
                    return self.send(404, status(404, "NotFound", "the server could not find the requested resource"))
                if len(parts) == 6:
                    obj = store.get(parts[5])
                    if obj is None:
                        return self.send(404, status(404, "NotFound", f'{parts[4]} "{parts[5]}" not found'))
                    return self.send(200, obj)
                selector = parse_qs(url.query).get("labelSelector", [""])[0]
                key, _, value = selector.partition("=")
                items = [o for o in store.values() if not selector or o["metadata"].get("labels", {}).get(key) == value]
                kind = "PodList" if parts[4] == "pods" else "ConfigMapList"
                return self.send(200, {"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items})
            return self.send(404, status(404, "NotFound", "the server could not find the requested resource"))

        def do_PUT(self):
            url = urlsplit(self.path)
            api.requests.append(("PUT", url.path))
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            name = url.path.rstrip("/").split("/")[-1]
            current = api.configmaps.get(name)
            if current is None:
                return self.send(404, status(404, "NotFound", f'configmaps "{name}" not found'))
            if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                return self.send(409, status(409, "Conflict", f'Operation cannot be fulfilled on configmaps "{name}": '
                                             "the object has been modified; please apply your changes to the latest version and try again"))
            body["metadata"]["resourceVersion"] = str(int(current["metadata"]["resourceVersion"]) + 1)
            api.configmaps[name] = body
            return self.send(200, body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    api.port = server.server_address[1]
    yield api
    server.shutdown()
    server.server_close()


def node_for(tmp_path: Path, port: int, monkeypatch) -> LocalHost:
    monkeypatch.setenv("PATH", "/usr/local/bin:/usr/bin:/bin")  # the real kubectl, not the doubles
    monkeypatch.setenv("HOME", str(tmp_path))  # no discovery cache from elsewhere
    conf = tmp_path / "node/etc/kubernetes/admin.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- cluster:\n    server: http://127.0.0.1:{port}\n  name: k\n"
        "contexts:\n- context:\n    cluster: k\n    user: admin\n  name: admin@k\n"
        "current-context: admin@k\nusers:\n- name: admin\n  user:\n    token: not-a-real-token\n"
    )
    return LocalHost(tmp_path / "node")


def test_pod_readyz_and_not_found_through_real_kubectl(api_server, tmp_path, monkeypatch):
    kube = NodeKubectl(node_for(tmp_path, api_server.port, monkeypatch))

    pod = kube.pod("kube-apiserver-cp1")
    assert not isinstance(pod, ApiDown), pod
    assert pod.hash == "5d41402abc4b2a76b9719d911017c592" and pod.ready
    assert kube.pod("kube-apiserver-cp9") is None  # kubectl's NotFound, read as "not there (yet)"
    assert kube.readyz() is True
    assert find_apiserver_pod(kube, "192.168.5.15:6443", None) == "kube-apiserver-cp1"
    assert ("GET", "/api/v1/namespaces/kube-system/pods/kube-apiserver-cp1") in api_server.requests

    api_server.pods["kube-apiserver-cp1"]["status"]["conditions"][0]["status"] = "False"
    assert kube.pod("kube-apiserver-cp1").ready is False


def test_configmap_replace_and_conflict_through_real_kubectl(api_server, tmp_path, monkeypatch):
    kube = NodeKubectl(node_for(tmp_path, api_server.port, monkeypatch))
    cm = kube.get_configmap("kube-system", "kubeadm-config")
    assert cm["metadata"]["resourceVersion"] == "7"
    assert kube.get_configmap("kube-system", "nope") is None

    cm["data"]["ClusterConfiguration"] += "apiServer: {}\n"
    kube.replace(cm)
    assert api_server.configmaps["kubeadm-config"]["data"]["ClusterConfiguration"].endswith("apiServer: {}\n")
    assert api_server.configmaps["kubeadm-config"]["metadata"]["resourceVersion"] == "8"

    with pytest.raises(KauditError) as e:  # cm still carries resourceVersion 7
        kube.replace(cm)
    assert "Operation cannot be fulfilled on configmaps \"kubeadm-config\"" in e.value.message
    assert e.value.hint == "it changed while kaudit worked; run the command again"


def test_a_refused_connection_is_api_down(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kube = NodeKubectl(node_for(tmp_path, port, monkeypatch))
    pod = kube.pod("kube-apiserver-cp1")
    assert isinstance(pod, ApiDown)
    assert f"The connection to the server 127.0.0.1:{port} was refused" in pod.reason
    assert isinstance(kube.readyz(), ApiDown)

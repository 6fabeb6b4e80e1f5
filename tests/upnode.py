"""A kubeadm-shaped node tree plus the scripted kubelet (tests/doubles/kubesim.py), for `kaudit up` tests.

``kube_node`` copies tests/data/node to a temporary dir, puts the kubectl,
crictl and journalctl doubles first on PATH, and writes the simulator's state
file. Tests script the kubelet per node and read back what happened.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
DATA = TESTS / "data"
DOUBLES = TESTS / "doubles"
MANIFEST = "etc/kubernetes/manifests/kube-apiserver.yaml"
POLICY = "etc/kubernetes/audit-policy.yaml"
AUDIT_LOG = "var/log/kubernetes-audit/audit.log"


class KubeNodes:
    def __init__(self, base: Path):
        self.base = base
        self.state_path = base / "kubesim.json"
        self.state_path.write_text(json.dumps({"nodes": {}, "configmaps": {}, "calls": []}))
        self.roots: dict[str, Path] = {}

    def add(self, name: str = "cp1", *, endpoint: str | None = None) -> Path:
        root = self.base / name
        shutil.copytree(DATA / "node", root, ignore=shutil.ignore_patterns("README.md"))
        (root / "var/log").mkdir(parents=True, exist_ok=True)
        manifest = root / MANIFEST
        if endpoint:
            manifest.write_text(manifest.read_text().replace("192.168.5.15", endpoint))
        os.chmod(manifest, 0o600)
        os.chmod(root / "etc/kubernetes/admin.conf", 0o600)
        doc = self.state()
        doc["nodes"][str(root)] = {"node": name, "script": [], "after": "ready"}
        self.save(doc)
        self.roots[name] = root
        return root

    @property
    def root(self) -> Path:
        return next(iter(self.roots.values()))

    def state(self) -> dict:
        return json.loads(self.state_path.read_text())

    def save(self, doc: dict) -> None:
        self.state_path.write_text(json.dumps(doc, indent=1))

    def script(self, steps: list[str], after: str = "ready", node: str | None = None) -> None:
        doc = self.state()
        root = str(self.roots[node] if node else self.root)
        doc["nodes"][root]["script"] = list(steps)
        doc["nodes"][root]["after"] = after
        self.save(doc)

    def node_state(self, node: str | None = None) -> dict:
        return self.state()["nodes"][str(self.roots[node] if node else self.root)]

    def set_cluster_configuration(self, text: str) -> None:
        doc = self.state()
        doc["configmaps"]["kube-system/kubeadm-config"] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kubeadm-config", "namespace": "kube-system", "resourceVersion": "228"},
            "data": {"ClusterConfiguration": text},
        }
        self.save(doc)

    def cluster_configuration(self) -> str:
        return self.state()["configmaps"]["kube-system/kubeadm-config"]["data"]["ClusterConfiguration"]

    def calls(self) -> list[list[str]]:
        """kubectl argv in call order, without --kubeconfig and --request-timeout: the verb first."""
        out = []
        for argv in self.state()["calls"]:
            words, skip = [], False
            for a in argv:
                if skip:
                    skip = False
                elif a == "--kubeconfig":
                    skip = True
                elif not a.startswith(("--kubeconfig=", "--request-timeout=")):
                    words.append(a)
            out.append(words)
        return out


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and directory under root: relative path -> (mode, bytes or None)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            data = p.read_bytes() if stat.S_ISREG(st.st_mode) else None
            out[str(p.relative_to(root))] = (stat.S_IMODE(st.st_mode), data)
    return out


@pytest.fixture
def kube_node(tmp_path, monkeypatch) -> KubeNodes:
    nodes = KubeNodes(tmp_path)
    nodes.add("cp1")
    # the doubles first; then this interpreter's bin dir so `env python3` finds ruamel
    monkeypatch.setenv("PATH", f"{DOUBLES}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("KUBESIM_STATE", str(nodes.state_path))
    monkeypatch.setenv("KAUDIT_POLL_INTERVAL", "10ms")
    return nodes

"""Build what `kaudit verify` looks at, for tests: a kubeadm node tree and a kubectl-double cluster.

A node is a real directory shaped like a kubeadm control plane, read through
``--host local --rootfs DIR``: the apiserver manifest, the audit policy,
admin.conf, the audit log, and ``proc/<pid>/cmdline`` of a running
kube-apiserver (NUL-separated argv, exactly as Linux exposes it).

The cluster is the JSON state file the kubectl double in this directory reads
(see its docstring); ``path`` goes into KAUDIT_VERIFY_CLUSTER.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from kaudit.core.manifest import AuditSpec, patch_manifest
from kaudit.core.policy import policy_text

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "data" / "verify"
MANIFEST = "/etc/kubernetes/manifests/kube-apiserver.yaml"
PID = "4242"


def events() -> list[str]:
    return (DATA / "audit-events.jsonl").read_text().splitlines()


class NodeTree:
    def __init__(self, root: Path, spec: AuditSpec | None = None):
        self.root = root
        self.spec = spec or AuditSpec()

    def p(self, node_path: str) -> Path:
        return self.root / node_path.lstrip("/")

    def write(self, node_path: str, data: str | bytes) -> Path:
        f = self.p(node_path)
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data.encode() if isinstance(data, str) else data)
        return f

    # -- a healthy, audited node
    def healthy(self, profile: str = "gce") -> "NodeTree":
        text = (DATA / "kube-apiserver.yaml").read_text()
        patched = patch_manifest(text, self.spec)
        self.write(MANIFEST, patched)
        self.write(self.spec.policy_path, policy_text(profile))
        self.write("/etc/kubernetes/admin.conf", "apiVersion: v1\nkind: Config\nclusters: []\n")
        self.set_process(self.args_from_manifest(patched))
        self.write_log(events())
        (self.root / "proc" / "1").mkdir(parents=True, exist_ok=True)
        (self.root / "proc" / "1" / "cmdline").write_bytes(b"/sbin/init\0splash\0")
        (self.root / "proc" / "self").mkdir(exist_ok=True)
        return self

    @staticmethod
    def args_from_manifest(text: str) -> list[str]:
        from ruamel.yaml import YAML

        pod = YAML(typ="safe").load(text)
        c = pod["spec"]["containers"][0]
        return list(c.get("command") or []) + list(c.get("args") or [])

    def set_process(self, argv: list[str] | None, pid: str = PID) -> None:
        d = self.root / "proc" / pid
        if argv is None:
            if (d / "cmdline").exists():
                (d / "cmdline").unlink()
            return
        d.mkdir(parents=True, exist_ok=True)
        (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")

    def write_log(self, lines: list[str], *, age_s: float = 0.0, partial: str = "") -> Path:
        f = self.write(self.spec.log_path, "".join(line + "\n" for line in lines) + partial)
        t = time.time() - age_s
        os.utime(f, (t, t))
        return f


class Cluster:
    """The kubectl double's cluster; call save() after changing state."""

    def __init__(self, path: Path):
        self.path = path
        self.state: dict = {"readyz": "ok", "nodes": [], "pods": [], "services": {}}

    def save(self) -> "Cluster":
        self.path.write_text(json.dumps(self.state, indent=2))
        return self

    def healthy(self, *, loki_url: str | None, collector: str = "promtail", nodes=("cp-1",), delay_s: float = 0.2,
                labels: dict | None = None, audit_log: Path | None = None) -> "Cluster":
        selector_value = {"promtail": "promtail", "alloy": "alloy", "shipper": "kaudit-shipper"}[collector]
        self.state["nodes"] = [{"name": n, "control_plane": True} for n in nodes] + [{"name": "worker-1"}]
        self.state["pods"] = [
            {"namespace": "kaudit", "name": f"{selector_value}-{i}", "labels": {"app.kubernetes.io/name": selector_value},
             "node": n, "phase": "Running", "ready": True}
            for i, n in enumerate(nodes)
        ]
        if loki_url:
            self.state["services"] = {"kaudit/loki": loki_url.split("//", 1)[1]}
            self.state["audit"] = {
                "loki_url": loki_url,
                "delay_s": delay_s,
                # as a collector set up with `kaudit up --cluster-name lab` labels the events
                "labels": labels or {"job": "kubernetes-audit", "cluster": "lab", "node": nodes[0], "audit_level": "Metadata",
                                     "verb": "get", "stage": "ResponseComplete"},
            }
            if audit_log is not None:
                self.state["audit"]["log"] = str(audit_log)
        return self.save()


_PYTHON_DIR: list[str] = []


def double_path() -> str:
    """PATH with this directory (the kubectl and crictl doubles) first, and the running
    Python as `python3` before it (the doubles' `#!/usr/bin/env python3` then skips slow
    version-manager shims)."""
    if not _PYTHON_DIR:
        import atexit
        import shutil
        import sys
        import tempfile

        d = tempfile.mkdtemp(prefix="kaudit-verify-python-")
        atexit.register(shutil.rmtree, d, True)
        os.symlink(sys.executable, os.path.join(d, "python3"))
        _PYTHON_DIR.append(d)
    return os.pathsep.join((_PYTHON_DIR[0], str(HERE), os.environ.get("PATH", "")))

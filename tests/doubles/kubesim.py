"""A scripted kubelet + kube-apiserver behind the kubectl, crictl and journalctl doubles.

The doubles share one JSON state file (env KUBESIM_STATE). Each node is keyed by
its rootfs (kubectl learns it from ``--kubeconfig DIR/etc/kubernetes/admin.conf``).
The node's static pod is computed from the manifest file under the rootfs, the
way kubelet does it: the config hash is an md5 over the decoded pod, the node
name and the file path (pkg/kubelet/config/common.go), so a change that only
touches formatting does not restart anything.

While the manifest's hash differs from the one running, each ``get pod(s)``
consumes one step of the node's ``script``; when the script is empty the node's
``after`` step repeats. Steps:

  old-hash       kubelet has not noticed yet: the old pod answers, Ready
  api-error      the apiserver is down: "connection refused"
  not-found      the mirror pod is being recreated: NotFound
  new-not-ready  the new pod runs but is not Ready
  ready          the new apiserver is up; if it has --audit-log-path, the log file appears
  never-ready    (as after) like new-not-ready, forever
  crashloop      (as after) the API stays down; crictl shows the new container exiting again and again
  crashloop-ha   (as after) another control-plane node keeps the API up, and the mirror pod
                 shows the new container in CrashLoopBackOff with a growing restartCount

``crictl stop`` of the running container makes kubelet start a new one in the same
pod after ``restart_delay`` (default 1) more calls, the API being down meanwhile;
with ``policy_crash: true`` a policy file that differs from the one the apiserver last
started with makes every new container exit (a crash loop) until it is put back.

With ``log_delay: N`` the new apiserver's first audit event is written N API calls after
it became Ready. A manifest equal to the running one (e.g. a restored backup) is served Ready at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

MANIFEST = "etc/kubernetes/manifests/kube-apiserver.yaml"
REFUSED = "The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?"


@contextmanager
def state():
    path = os.environ.get("KUBESIM_STATE")
    if not path:
        sys.stderr.write("kubesim: KUBESIM_STATE is not set\n")
        sys.exit(2)
    with open(path, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        doc = json.load(f)
        try:
            yield doc
        finally:  # also when a double exits with an error: the step it consumed stays consumed
            f.seek(0)
            f.truncate()
            json.dump(doc, f, indent=1)


def load_manifest(rootfs: str):
    from ruamel.yaml import YAML

    try:
        text = (Path(rootfs) / MANIFEST).read_text()
        return YAML(typ="safe").load(text)
    except Exception:
        return None  # no manifest, or one kubelet cannot decode: no pod


def config_hash(pod, node_name: str) -> str:
    h = hashlib.md5()
    h.update(json.dumps(pod, sort_keys=True).encode())
    h.update(f"host:{node_name}".encode())
    h.update(f"file:/{MANIFEST}".encode())
    return h.hexdigest()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _journal(node: dict, text: str) -> None:
    stamp = time.strftime("%b %d %H:%M:%S", time.gmtime())
    node.setdefault("journal", []).append(f"{stamp} {node['node']} kubelet[{node.get('pid', 812)}]: {text}")


def _container(node: dict, uid: str, state: str, attempt: int = 0) -> dict:
    n = len(node.setdefault("containers", []))
    c = {
        "id": hashlib.sha256(f"{uid}-{attempt}-{n}".encode()).hexdigest(),
        "podSandboxId": hashlib.sha256(f"sandbox-{uid}".encode()).hexdigest(),
        "metadata": {"name": "kube-apiserver", "attempt": attempt},
        "image": {"image": "registry.k8s.io/kube-apiserver:v1.36.2"},
        "state": state,
        "createdAt": str(time.time_ns() + n),
        "labels": {
            "io.kubernetes.container.name": "kube-apiserver",
            "io.kubernetes.pod.name": f"kube-apiserver-{node['node']}",
            "io.kubernetes.pod.namespace": "kube-system",
            "io.kubernetes.pod.uid": uid,
        },
    }
    node["containers"].append(c)
    return c


def _stop_running(node: dict) -> None:
    for c in node.get("containers", []):
        if c["state"] == "CONTAINER_RUNNING":
            c["state"] = "CONTAINER_EXITED"


def _flag(pod, name: str) -> str | None:
    try:
        command = pod["spec"]["containers"][0]["command"]
    except (KeyError, IndexError, TypeError):
        return None
    for arg in command:
        if isinstance(arg, str) and arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def _audit_log_path(pod) -> str | None:
    return _flag(pod, "audit-log-path")


def policy_sha(rootfs: str) -> str | None:
    """sha256 of the policy file the manifest names (None without one)."""
    path = _flag(load_manifest(rootfs), "audit-policy-file")
    if not path:
        return None
    try:
        return hashlib.sha256((Path(rootfs) / path.lstrip("/")).read_bytes()).hexdigest()
    except OSError:
        return None


def stop_container(doc: dict, rootfs: str, cid: str) -> bool:
    node = doc["nodes"][rootfs]
    match = [c for c in node.get("containers", []) if c["id"].startswith(cid)]
    if not match:
        return False
    if match[0]["state"] == "CONTAINER_RUNNING":
        match[0]["state"] = "CONTAINER_EXITED"
        node["restarting"] = {"wait": int(node.get("restart_delay", 1)), "uid": match[0]["labels"]["io.kubernetes.pod.uid"]}
    return True


def advance_restart(node: dict, rootfs: str) -> None:
    """One step of kubelet bringing a stopped apiserver container back."""
    r = node.get("restarting")
    if not r:
        return
    attempt = max((c["metadata"]["attempt"] for c in node.get("containers", []) if c["labels"]["io.kubernetes.pod.uid"] == r["uid"]), default=0) + 1
    if node.get("policy_crash") and policy_sha(rootfs) != node.get("good_policy"):
        _container(node, r["uid"], "CONTAINER_EXITED", attempt=attempt)
        _journal(node, f'"Error syncing pod, skipping" err="failed to \\"StartContainer\\" for \\"kube-apiserver\\" with CrashLoopBackOff" pod="kube-system/kube-apiserver-{node["node"]}"')
        return
    if r["wait"] > 0:
        r["wait"] -= 1
        return
    _container(node, r["uid"], "CONTAINER_RUNNING", attempt=attempt)
    _journal(node, f'"Container started" containerName="kube-apiserver" pod="kube-system/kube-apiserver-{node["node"]}"')
    node["good_policy"] = policy_sha(rootfs)
    node["restarting"] = None
    pod = load_manifest(rootfs)
    if _audit_log_path(pod):
        node["log_pending"] = [_audit_log_path(pod), int(node.get("log_delay", 0))]
        _write_pending_log(node, rootfs)


def _write_pending_log(node: dict, rootfs: str) -> None:
    pending = node.get("log_pending")
    if not pending:
        return
    log, delay = pending
    if delay > 0:
        pending[1] = delay - 1
        return
    target = Path(rootfs) / log.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a") as f:
        f.write(json.dumps({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
                            "stage": "ResponseComplete", "verb": "get", "requestURI": "/readyz"}) + "\n")
    node["log_pending"] = None


def observe(doc: dict, rootfs: str, *, consume: bool) -> dict:
    """Advance the node's kubelet by one step (if consume) and return a view:
    {"api": bool, "pod": dict|None, "ready": bool, "hash": str}."""
    doc["current"] = rootfs
    node = doc["nodes"][rootfs]
    pod = load_manifest(rootfs)
    cur = config_hash(pod, node["node"]) if pod is not None else None
    if node.get("running") is None and cur is not None:
        node["running"] = cur  # the apiserver that was up before kaudit came
        node["boot"] = cur
        node["good_policy"] = policy_sha(rootfs)
        _container(node, cur, "CONTAINER_RUNNING")
    if cur is None:
        return {"api": False, "pod": None}
    if node.get("restarting") and cur == node["running"]:
        advance_restart(node, rootfs)
        if node.get("restarting"):
            return {"api": False, "pod": None}
    if cur == node["running"]:
        _write_pending_log(node, rootfs)
        if node.get("step") not in (None, "ready", "back"):
            # the manifest went back to the running config (a rollback): kubelet restarts the old pod
            _stop_running(node)
            _container(node, cur, "CONTAINER_RUNNING", attempt=0)
            _journal(node, f'"SyncLoop UPDATE" source="file" pods=["kube-system/kube-apiserver-{node["node"]}"]')
            node["step"] = "back"
        return {"api": True, "pod": pod, "hash": cur, "ready": True}
    if consume or node.get("step") is None:
        script = node.setdefault("script", [])
        step = script.pop(0) if script else node.get("after", "ready")
        node["step"] = step
        node["polls"] = node.get("polls", 0) + 1
        if step == "ready":
            _stop_running(node)
            _container(node, cur, "CONTAINER_RUNNING")
            node["running"] = cur
            node["good_policy"] = policy_sha(rootfs)
            _journal(node, f'"SyncLoop UPDATE" source="file" pods=["kube-system/kube-apiserver-{node["node"]}"]')
            log = _audit_log_path(pod)
            if log:
                # the first event lands after `log_delay` more API calls (0: at once)
                node["log_pending"] = [log, int(node.get("log_delay", 0))]
            _write_pending_log(node, rootfs)
            return {"api": True, "pod": pod, "hash": cur, "ready": True}
        if step in ("new-not-ready", "never-ready"):
            if not any(c["labels"]["io.kubernetes.pod.uid"] == cur for c in node.get("containers", [])):
                _stop_running(node)
                _container(node, cur, "CONTAINER_RUNNING")
        if step in ("crashloop", "crashloop-ha"):
            _stop_running(node)
            attempt = node.get("attempt", 0)
            _container(node, cur, "CONTAINER_EXITED", attempt=attempt)
            node["attempt"] = attempt + 1
            _journal(node, f'"Error syncing pod, skipping" err="failed to \\"StartContainer\\" for \\"kube-apiserver\\" with CrashLoopBackOff: \\"back-off 10s restarting failed container=kube-apiserver pod=kube-apiserver-{node["node"]}_kube-system({cur})\\"" pod="kube-system/kube-apiserver-{node["node"]}"')
    step = node["step"]
    if step == "ready":
        return {"api": True, "pod": pod, "hash": cur, "ready": True}
    if step in ("api-error", "crashloop"):
        return {"api": False, "pod": None}
    if step == "not-found":
        return {"api": True, "pod": None}
    if step == "crashloop-ha":
        return {"api": True, "pod": pod, "hash": cur, "ready": False, "waiting": "CrashLoopBackOff", "restarts": node.get("attempt", 0)}
    if step == "old-hash":
        return {"api": True, "pod": pod, "hash": node["running"], "ready": True}
    return {"api": True, "pod": pod, "hash": cur, "ready": False}  # new-not-ready, never-ready


def mirror_pod(node: dict, view: dict) -> dict:
    pod = view["pod"]
    meta = pod.get("metadata") or {}
    h = view["hash"]
    ready = "True" if view["ready"] else "False"
    name = f"{meta.get('name', 'kube-apiserver')}-{node['node']}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": meta.get("namespace", "kube-system"),
            "uid": hashlib.md5(f"mirror-{h}".encode()).hexdigest(),
            "labels": meta.get("labels") or {},
            "annotations": {
                **(meta.get("annotations") or {}),
                "kubernetes.io/config.hash": h,
                "kubernetes.io/config.mirror": h,
                "kubernetes.io/config.seen": _now(),
                "kubernetes.io/config.source": "file",
            },
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node["node"], "controller": True}],
        },
        "spec": {**(pod.get("spec") or {}), "nodeName": node["node"]},
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": ready},
                {"type": "ContainersReady", "status": ready},
                {"type": "PodScheduled", "status": "True"},
            ],
            "containerStatuses": [{
                "name": "kube-apiserver",
                "ready": view["ready"],
                "restartCount": view.get("restarts", 0),
                "started": "waiting" not in view,
                "state": {"waiting": {"reason": view["waiting"], "message": "back-off 10s restarting failed container=kube-apiserver"}}
                if "waiting" in view else {"running": {"startedAt": _now()}},
            }],
        },
    }

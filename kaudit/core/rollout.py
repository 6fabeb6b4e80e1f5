"""What a person looks for while `helm --wait` hangs, read from the namespace's objects.

Pure: the JSON of ``kubectl get pods,pvc -o json`` and ``kubectl get storageclass -o json``
in, a list of :class:`Finding` out. Each finding is one line naming the object and a hint
with the next thing to try. kaudit.adapters.rollout_watch polls and prints them while helm waits,
so a stuck rollout is explained in seconds instead of at the end of helm's timeout.

The states are the ones Kubernetes reports (field names from core/v1): a claim Pending with
no usable StorageClass, a container waiting in ErrImagePull/ImagePullBackOff/InvalidImageName,
one in CrashLoopBackOff, a pod whose PodScheduled condition is False with reason
Unschedulable (the scheduler's message says which taint or resource stopped it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Optional

DEFAULT_CLASS_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)
IMAGE_PULL_REASONS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
_TAINT = re.compile(r"untolerated taint|had taint|didn't tolerate", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    #: identifies the problem, so each is reported once (kind/name/what)
    key: str
    #: one line: the object, what is wrong
    message: str
    #: the next thing to try
    hint: str
    #: for a crash loop: (namespace, pod, container) whose previous log to append
    logs_of: Optional[tuple[str, str, str]] = field(default=None, compare=False)


def _items(doc: Optional[dict]) -> list[dict]:
    return list((doc or {}).get("items") or [])


def default_storage_class(classes: Iterable[dict]) -> Optional[str]:
    for sc in classes:
        ann = (sc.get("metadata") or {}).get("annotations") or {}
        if any(str(ann.get(a, "")).lower() == "true" for a in DEFAULT_CLASS_ANNOTATIONS):
            return (sc.get("metadata") or {}).get("name")
    return None


def _pvc_findings(pvc: dict, classes: list[dict], opts: str) -> Optional[Finding]:
    meta = pvc.get("metadata") or {}
    if (pvc.get("status") or {}).get("phase") != "Pending":
        return None
    name = f"pvc/{meta.get('name', '?')}"
    wanted = (pvc.get("spec") or {}).get("storageClassName")
    names = {(sc.get("metadata") or {}).get("name") for sc in classes}
    if wanted is None:
        default = default_storage_class(classes)
        if default is None:
            return Finding(
                f"{name}/no-class",
                f"{name} is Pending: it names no StorageClass and the cluster has no default one, so no volume will ever be provisioned",
                f"run kaudit up without --loki-size/--loki-storage-class (Loki on an emptyDir), or install a provisioner (e.g. local-path-provisioner) and name its class with --loki-storage-class{opts}",
            )
        return None  # the default class will serve it (or WaitForFirstConsumer waits for the pod)
    if wanted == "":
        return Finding(
            f"{name}/static",
            f"{name} is Pending: storageClassName \"\" asks for a pre-created PersistentVolume and none matches",
            f"create a PersistentVolume for it, or name a StorageClass with --loki-storage-class{opts}",
        )
    if wanted not in names:
        return Finding(
            f"{name}/missing-class",
            f"{name} is Pending: StorageClass {wanted} does not exist",
            f"list the classes with `kubectl get storageclass{opts}` and rerun with one of them in --loki-storage-class",
        )
    return None


def _container_findings(ns: str, pod: str, statuses: list[dict], opts: str) -> list[Finding]:
    out = []
    for cs in statuses:
        cname = cs.get("name", "?")
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason") or ""
        detail = " ".join(str(waiting.get("message") or "").split())
        if reason in IMAGE_PULL_REASONS:
            image = cs.get("image", "?")
            out.append(Finding(
                f"pod/{pod}/{cname}/image",
                f"pod/{pod}: image {image} cannot be pulled ({reason}{': ' + detail[:200] if detail else ''})",
                f"check that the node reaches the registry and the tag exists (`kubectl{opts} -n {ns} describe pod {pod}`); "
                "on an offline node import the image first (`ctr -n k8s.io images import`)",
            ))
        elif reason == "CrashLoopBackOff":
            restarts = int(cs.get("restartCount") or 0)
            out.append(Finding(
                f"pod/{pod}/{cname}/crash",
                f"pod/{pod}: container {cname} is crash-looping ({restarts} restarts)",
                f"read its log: `kubectl{opts} -n {ns} logs {pod} -c {cname} --previous`",
                logs_of=(ns, pod, cname),
            ))
    return out


def _scheduling_finding(ns: str, pod: str, conditions: list[dict], opts: str) -> Optional[Finding]:
    for c in conditions:
        if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable":
            msg = " ".join(str(c.get("message") or "").split())
            if _TAINT.search(msg):
                hint = (
                    "the pod does not tolerate a node taint: on a one-node lab remove the control-plane taint "
                    f"(`kubectl{opts} taint nodes --all node-role.kubernetes.io/control-plane-`), or add a node without it"
                )
            else:
                hint = f"see why with `kubectl{opts} -n {ns} describe pod {pod}` (resources, node selectors, claims)"
            return Finding(f"pod/{pod}/unschedulable", f"pod/{pod} cannot be scheduled: {msg[:300] or 'Unschedulable'}", hint)
    return None


def diagnose(objects: Optional[dict], storage_classes: Optional[dict], *, kubectl_opts: str = "") -> list[Finding]:
    """Findings for the pods and claims in ``objects`` (a v1 List), in a stable order.

    ``kubectl_opts`` (e.g. " --kubeconfig K") is put into the commands the hints print.
    """
    classes = _items(storage_classes)
    out: list[Finding] = []
    for obj in _items(objects):
        kind = obj.get("kind")
        meta = obj.get("metadata") or {}
        if kind == "PersistentVolumeClaim":
            f = _pvc_findings(obj, classes, kubectl_opts)
            if f:
                out.append(f)
        elif kind == "Pod":
            ns, name = meta.get("namespace", ""), meta.get("name", "?")
            status = obj.get("status") or {}
            statuses = list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or [])
            out += _container_findings(ns, name, statuses, kubectl_opts)
            f = _scheduling_finding(ns, name, list(status.get("conditions") or []), kubectl_opts)
            if f:
                out.append(f)
    return out

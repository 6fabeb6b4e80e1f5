"""kubectl through the node: the few API calls `kaudit up` and `kaudit down` make.

Everything runs as ``kubectl --kubeconfig /etc/kubernetes/admin.conf ...`` on the
control-plane node itself (through the Host seam), the way an operator on the
node would: it needs no kubeconfig on this machine and reaches the apiserver
kaudit is restarting. While kubelet restarts kube-apiserver the API refuses
connections for a while; the calls here return that as an :class:`ApiDown`
value the waiters tolerate instead of raising.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional, Union

from kaudit.core.errors import KauditError
from kaudit.adapters.hosts.base import Host, Result
from kaudit.core.node_paths import ADMIN_CONF

KUBECTL_TIMEOUT = 30.0
REQUEST_TIMEOUT = "10s"
COMPONENT = "kube-apiserver"
HASH_ANNOTATION = "kubernetes.io/config.hash"
ENDPOINT_ANNOTATION = "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"


@dataclass(frozen=True)
class ApiDown:
    """The API did not answer (or answered an error) this time; the text says why."""

    reason: str


@dataclass(frozen=True)
class PodState:
    name: str
    hash: Optional[str]
    phase: str
    ready: bool
    #: (waiting reason, restart count) of the apiserver container, if any
    waiting_reason: Optional[str] = None
    restarts: int = 0

    @classmethod
    def from_json(cls, doc: dict) -> "PodState":
        meta = doc.get("metadata") or {}
        status = doc.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        waiting, restarts = None, 0
        for cs in status.get("containerStatuses") or []:
            if cs.get("name") == COMPONENT:
                waiting = ((cs.get("state") or {}).get("waiting") or {}).get("reason")
                restarts = int(cs.get("restartCount") or 0)
        return cls(
            name=meta.get("name", ""),
            hash=(meta.get("annotations") or {}).get(HASH_ANNOTATION),
            phase=status.get("phase", ""),
            ready=ready and status.get("phase") == "Running",
            waiting_reason=waiting,
            restarts=restarts,
        )


def last_line(r: Result) -> str:
    lines = [line.strip() for line in (r.err or r.out).strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit {r.returncode}"


def kubeconfig_path(node: Host) -> str:
    """The admin kubeconfig as a command started by ``node`` must name it
    (under DIR for ``--host local --rootfs DIR``)."""
    return node.command_path(ADMIN_CONF)


class NodeKubectl:
    def __init__(self, node: Host, *, timeout: float = KUBECTL_TIMEOUT):
        self.node = node
        self.timeout = timeout

    @property
    def where(self) -> str:
        return f"kubectl on {self.node.name} ({ADMIN_CONF})"

    def run(self, args: list[str], *, input: bytes | None = None) -> Result:
        # a hung connection must not eat the whole wait: kubectl gives up after REQUEST_TIMEOUT
        argv = ["kubectl", "--kubeconfig", kubeconfig_path(self.node), f"--request-timeout={REQUEST_TIMEOUT}", *args]
        r = self.node.run(argv, input=input, check=False, timeout=self.timeout)
        # not a restart hiccup: waiting would only burn the whole timeout
        if r.returncode == 127:
            raise KauditError(
                f"{self.node.name}: kubectl is not installed on the node ({last_line(r)})",
                "install kubectl on the node, or write the files only with --no-wait",
            )
        if not r.ok and "no such file or directory" in r.err and kubeconfig_path(self.node) in r.err:
            raise KauditError(
                f"{self.node.name}: no {ADMIN_CONF} (kubeadm's admin kubeconfig)",
                "run kaudit against a kubeadm control-plane node, or use --no-wait",
            )
        return r

    def _json(self, args: list[str]) -> Union[dict, ApiDown, None]:
        """Parsed JSON, None for NotFound, ApiDown for anything else."""
        r = self.run(args)
        if not r.ok:
            if "(NotFound)" in r.err:
                return None
            return ApiDown(last_line(r))
        try:
            return json.loads(r.out)
        except ValueError:
            return ApiDown(f"kubectl {' '.join(args[:3])} printed something that is not JSON")

    # -- the apiserver mirror pod ---------------------------------------------
    def apiserver_pods(self) -> Union[list[dict], ApiDown]:
        doc = self._json(["get", "pods", "-n", "kube-system", "-l", f"component={COMPONENT}", "-o", "json"])
        if doc is None:
            return []
        if isinstance(doc, ApiDown):
            return doc
        return list(doc.get("items") or [])

    def pod(self, name: str) -> Union[PodState, ApiDown, None]:
        doc = self._json(["get", "pod", name, "-n", "kube-system", "-o", "json"])
        if doc is None or isinstance(doc, ApiDown):
            return doc
        return PodState.from_json(doc)

    def readyz(self) -> Union[bool, ApiDown]:
        r = self.run(["get", "--raw", "/readyz"])
        if r.ok and r.out.strip() == "ok":
            return True
        return ApiDown(last_line(r) if not r.ok else f"/readyz answered {r.out.strip()[:80]!r}")

    # -- ConfigMaps ------------------------------------------------------------
    def get_configmap(self, namespace: str, name: str) -> Optional[dict]:
        r = self.run(["get", "configmap", name, "-n", namespace, "-o", "json"])
        if not r.ok:
            if "(NotFound)" in r.err:
                return None
            raise KauditError(
                f"{self.where}: cannot read ConfigMap {namespace}/{name}: {last_line(r)}",
                "check that the apiserver answers: kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw /readyz",
            )
        try:
            return json.loads(r.out)
        except ValueError:
            raise KauditError(f"{self.where}: ConfigMap {namespace}/{name}: kubectl printed something that is not JSON") from None

    def replace(self, doc: dict) -> None:
        """kubectl replace with the object's resourceVersion: fails, rather than
        overwrites, if someone changed it since we read it."""
        meta = doc.get("metadata") or {}
        # --validate=false: the object is the server's own, with data changed; client-side
        # validation would only add a download of the OpenAPI schema
        r = self.run(["replace", "--validate=false", "-f", "-", "-o", "name"], input=json.dumps(doc).encode())
        if not r.ok:
            conflict = "(Conflict)" in r.err
            raise KauditError(
                f"{self.where}: cannot update {doc.get('kind')} {meta.get('namespace')}/{meta.get('name')}: {last_line(r)}",
                "it changed while kaudit worked; run the command again" if conflict else "run the same kubectl replace by hand to see the whole error",
            )


def find_apiserver_pod(kube: NodeKubectl, manifest_endpoint: Optional[str], hostname: Optional[str]) -> Union[str, ApiDown, None]:
    """The mirror pod of this node's apiserver: kube-apiserver-<nodeName>.

    Several control-plane nodes each have one; this node's is the one whose
    kubeadm endpoint annotation equals the manifest's, or else the one named
    after the node's hostname, or else the only one.
    """
    pods = kube.apiserver_pods()
    if isinstance(pods, ApiDown):
        return pods
    names = {(p.get("metadata") or {}).get("name", ""): p for p in pods}
    if manifest_endpoint:
        matching = [n for n, p in names.items() if ((p.get("metadata") or {}).get("annotations") or {}).get(ENDPOINT_ANNOTATION) == manifest_endpoint]
        if len(matching) == 1:
            return matching[0]
    if hostname and f"{COMPONENT}-{hostname.lower()}" in names:
        return f"{COMPONENT}-{hostname.lower()}"
    if len(names) == 1:
        return next(iter(names))
    return None

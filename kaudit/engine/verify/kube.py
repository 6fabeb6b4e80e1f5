"""kubectl for verify: where it runs, and the port-forward to Loki that verify opens and closes.

With --kubeconfig, kubectl runs on this machine against that file (the cluster
as the user sees it). Without it, kubectl runs on the control-plane node with
kubeadm's /etc/kubernetes/admin.conf (DIR/etc/kubernetes/admin.conf under
--rootfs), the way an operator on the node would check.

The port-forward must listen on this machine, so it is a local kubectl process:
``kubectl port-forward -n NS svc/NAME 0:3100`` picks a free port and prints
``Forwarding from 127.0.0.1:NNNN -> 3100``; verify reads that line, uses the
port, and ends the process when it is done.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional

from kaudit.core.errors import KauditError
from kaudit.adapters.hosts.base import Host, Result
from kaudit.adapters.kube import last_line
from kaudit.engine.verify.node import ADMIN_CONF, mapped

KUBECTL_TIMEOUT = 30.0


class Kubectl:
    def __init__(self, node: Optional[Host], kubeconfig: Optional[Path], local: Host):
        self.node = node
        self.kubeconfig = kubeconfig
        self.local = local

    @property
    def where(self) -> str:
        if self.kubeconfig is not None:
            return f"kubectl --kubeconfig {self.kubeconfig}"
        return f"kubectl on {self.node.name if self.node else 'this machine'} ({ADMIN_CONF})"

    def local_kubeconfig(self) -> Optional[str]:
        """A kubeconfig usable by a kubectl started on this machine, if kaudit knows one."""
        if self.kubeconfig is not None:
            return str(self.kubeconfig)
        from kaudit.adapters.hosts.local import LocalHost

        if isinstance(self.node, LocalHost) and self.node.exists(ADMIN_CONF):
            return mapped(self.node, ADMIN_CONF)
        name = getattr(self.node, "name", "") or ""
        if name.startswith("lima:"):
            # Lima's k8s template copies the admin kubeconfig to the host (server rewritten to 127.0.0.1)
            from kaudit.adapters.lima import kubeconfig_path

            home = Path(os.environ.get("LIMA_HOME") or Path.home() / ".lima")
            path = kubeconfig_path(home / name.split(":", 1)[1])
            if path.is_file():
                return str(path)
        return None  # kubectl's own default (KUBECONFIG, ~/.kube/config)

    def run(self, args: list[str], *, timeout: float = KUBECTL_TIMEOUT) -> Result:
        if self.kubeconfig is not None or self.node is None:
            argv = ["kubectl", *(["--kubeconfig", str(self.kubeconfig)] if self.kubeconfig else []), *args]
            return self.local.run(argv, check=False, sudo=False, timeout=timeout)
        argv = ["kubectl", "--kubeconfig", mapped(self.node, ADMIN_CONF), *args]
        return self.node.run(argv, check=False, timeout=timeout)

    def get_json(self, args: list[str]) -> dict:
        r = self.run(["get", *args, "-o", "json"])
        if not r.ok:
            raise KauditError(f"{self.where}: kubectl get {' '.join(args)} failed: {last_line(r)}", kubectl_hint(r))
        try:
            return json.loads(r.out)
        except ValueError:
            raise KauditError(f"{self.where}: kubectl get {' '.join(args)} printed something that is not JSON") from None


def kubectl_hint(r: Result) -> str:
    text = (r.err + r.out).lower()
    if "command not found" in text or r.returncode == 127:
        return "install kubectl, or pass --kubeconfig to run it on this machine"
    if "refused" in text or "unable to connect" in text or "no such host" in text:
        return "the API server is not answering; check kube-apiserver on the node (crictl ps -a --name kube-apiserver)"
    if "forbidden" in text or "unauthorized" in text:
        return "the kubeconfig's user lacks permission; use an admin kubeconfig (--kubeconfig)"
    return "run the same kubectl command by hand to see the whole error"


_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+)")


class PortForward:
    """A local `kubectl port-forward` to a service, started and stopped by kaudit."""

    def __init__(self, kubeconfig: Optional[str], namespace: str, service: str, port: int):
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.service = service
        self.port = port
        self.proc: Optional[subprocess.Popen] = None
        self.local_port: Optional[int] = None
        self._err: list[str] = []

    @property
    def target(self) -> str:
        return f"svc/{self.service} in namespace {self.namespace}"

    def start(self, timeout: float = 20.0) -> str:
        """Start kubectl and return the local URL once it says where it listens."""
        argv = ["kubectl"]
        if self.kubeconfig:
            argv += ["--kubeconfig", self.kubeconfig]
        argv += ["port-forward", "-n", self.namespace, f"svc/{self.service}", f"0:{self.port}"]
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, start_new_session=True,
            )
        except FileNotFoundError:
            raise KauditError(
                "cannot port-forward to Loki: kubectl is not installed on this machine",
                "install kubectl, or pass --loki-url",
            ) from None
        lines: list[str] = []
        found = threading.Event()

        def read_out() -> None:
            assert self.proc and self.proc.stdout
            for line in self.proc.stdout:
                lines.append(line)
                m = _FORWARDING.search(line)
                if m and self.local_port is None:
                    self.local_port = int(m.group(1))
                    found.set()
            found.set()  # stdout closed: kubectl ended

        def read_err() -> None:
            assert self.proc and self.proc.stderr
            for line in self.proc.stderr:
                self._err.append(line.rstrip("\n"))
                del self._err[:-20]

        threading.Thread(target=read_out, daemon=True).start()
        threading.Thread(target=read_err, daemon=True).start()
        found.wait(timeout)
        if self.local_port is None:
            code = self.proc.poll()
            self.stop()
            time.sleep(0.05)  # let the stderr reader take kubectl's last words
            why = next((e for e in reversed(self._err) if e.strip()), None) or (
                f"kubectl exited {code}" if code is not None else f"no 'Forwarding from' line within {timeout:g}s"
            )
            raise KauditError(
                f"cannot port-forward to Loki ({self.target}): {why}",
                "check that the stack is installed (kaudit up --only stack), or pass --loki-url",
            )
        return f"http://127.0.0.1:{self.local_port}"

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass
        self.proc = None


def collector_selectors() -> dict[str, str]:
    """Pod label selectors of each collector kaudit installs, from the collector phase's
    table (the one place that names the workloads it deploys)."""
    from kaudit.engine.phases.collector import WORKLOADS

    return {name: selector for name, (_workload, selector) in WORKLOADS.items()}


def control_plane_nodes(kube: Kubectl) -> list[str]:
    doc = kube.get_json(["nodes", "-l", "node-role.kubernetes.io/control-plane"])
    return sorted(i.get("metadata", {}).get("name", "") for i in doc.get("items") or [])


def pod_ready(pod: dict) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    for c in status.get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


"""Watch a namespace while `helm --wait` runs and say what is stuck, as it happens.

helm itself only reports "context deadline exceeded" when its --timeout ends. Meanwhile this
polls ``kubectl get pods,pvc`` (and the StorageClasses) every few seconds through the host
seam, runs the pure diagnosis of kaudit.core.rollout, and prints each new finding once as a
warning line with its hint. A crash loop gets the last lines of the container's previous log.
Errors of the watch itself are never fatal: the install goes on without it.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

from kaudit.core.rollout import Finding, diagnose
from kaudit.adapters.hosts.base import Host

T = TypeVar("T")
DEFAULT_INTERVAL = 3.0
LOG_LINES = 5


class RolloutWatch:
    def __init__(self, host: Host, namespace: str, *, kubeconfig: Optional[Path] = None, ui: Any = None, interval: float = DEFAULT_INTERVAL):
        self.host = host
        self.namespace = namespace
        self.kubeconfig = kubeconfig
        self.ui = ui
        self.interval = interval
        self.findings: list[Finding] = []
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def _kubectl(self, *args: str, timeout: float = 20) -> Optional[str]:
        kc = ["--kubeconfig", str(self.kubeconfig)] if self.kubeconfig else []
        argv = ["kubectl", *kc, "--request-timeout=10s", *args]
        try:
            r = self.host.run(argv, check=False, sudo=False, timeout=timeout)
        except Exception:  # a watch that cannot look must not break the install
            return None
        return r.out if r.ok else None

    def _json(self, *args: str) -> Optional[dict]:
        text = self._kubectl(*args, "-o", "json")
        try:
            return json.loads(text) if text else None
        except json.JSONDecodeError:
            return None

    @property
    def kubectl_opts(self) -> str:
        return f" --kubeconfig {self.kubeconfig}" if self.kubeconfig else ""

    def poll(self) -> list[Finding]:
        """Look once; report and return the findings not reported before."""
        objects = self._json("-n", self.namespace, "get", "pods,pvc")
        if objects is None:
            return []
        classes = None
        if any(o.get("kind") == "PersistentVolumeClaim" for o in objects.get("items") or []):
            classes = self._json("get", "storageclass")
        new = []
        for f in diagnose(objects, classes, kubectl_opts=self.kubectl_opts):
            with self._lock:
                if f.key in self._seen:
                    continue
                self._seen.add(f.key)
            if f.logs_of:
                ns, pod, container = f.logs_of
                tail = self._kubectl("-n", ns, "logs", pod, "-c", container, "--previous", f"--tail={LOG_LINES}")
                lines = [x.rstrip() for x in (tail or "").splitlines() if x.strip()][-LOG_LINES:]
                if lines:
                    f = Finding(f.key, f.message + "; last log lines:\n    " + "\n    ".join(lines), f.hint)
            self.findings.append(f)
            new.append(f)
            if self.ui is not None:
                self.ui.warn(f"{f.message}\n  hint: {f.hint}")
        return new

    def while_running(self, work: Callable[[], T]) -> T:
        """Run ``work`` (the blocking helm call) in a thread, polling until it returns."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="helm") as pool:
            future = pool.submit(work)
            while True:
                try:
                    return future.result(timeout=self.interval)
                except FutureTimeout:
                    self.poll()
                    if self.ui is not None:
                        self.ui.tick()

"""A pretend cluster for the stack and collector phases: the helm and kubectl doubles
(tests/doubles/helm, tests/doubles/cluster/kubectl) on PATH of a real LocalHost, with
their argv logs and state readable by the tests."""

from __future__ import annotations

import io
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

from kaudit.adapters.hosts.local import LocalHost
from kaudit.engine.ui import UI
from kaudit.engine.workflow import UpContext

DOUBLES = Path(__file__).parent / "doubles"
#: the cluster name the phase tests run with (the cluster label's value)
CLUSTER = "lab"


@dataclass
class Cluster:
    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def make(cls, root: Path, *, helm: bool = True) -> "Cluster":
        bin_dir = root / "bin"
        bin_dir.mkdir(parents=True)
        if helm:
            (bin_dir / "helm").symlink_to(DOUBLES / "helm")
        (bin_dir / "kubectl").symlink_to(DOUBLES / "cluster" / "kubectl")
        (root / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
        env = {
            # the doubles, and a python3 for their shebang; no real helm or kubectl is reachable
            "PATH": f"{bin_dir}:{os.path.dirname(sys.executable)}",
            "HELM_DOUBLE_DIR": str(root / "helm"),
            "KUBECTL_DOUBLE_DIR": str(root / "kube"),
        }
        return cls(root, env)

    def host(self, **extra_env: str) -> LocalHost:
        return LocalHost(env={**self.env, **extra_env})

    def context(self, options: Any = None, *, dry_run: bool = False, kubeconfig: bool = True, **extra_env: str) -> UpContext:
        host = self.host(**extra_env)
        options = options or SimpleNamespace()
        if isinstance(options, SimpleNamespace) and not hasattr(options, "cluster_name"):
            options.cluster_name = CLUSTER  # as `kaudit up --cluster-name lab` would set it
        return UpContext(
            node=host, local=host, ui=UI(stream=io.StringIO(), verbose=1), options=options or SimpleNamespace(),
            dry_run=dry_run, kubeconfig=self.root / "kubeconfig" if kubeconfig else None,
        )

    # -- what the doubles saw -------------------------------------------------
    def _log(self, tool: str) -> list[dict]:
        path = self.root / tool / "argv.log"
        if not path.exists():
            return []
        return [json.loads(x) for x in path.read_text().splitlines() if x]

    def helm_calls(self) -> list[dict]:
        return self._log("helm")

    def kubectl_calls(self) -> list[dict]:
        return self._log("kube")

    def upgrades(self) -> list[dict]:
        return [c for c in self.helm_calls() if c["argv"][1:3] == ["upgrade", "--install"]]

    def helm_state(self) -> dict:
        return json.loads((self.root / "helm" / "state.json").read_text())

    def set_helm_state(self, state: dict) -> None:
        (self.root / "helm" / "state.json").write_text(json.dumps(state))

    def objects(self) -> dict:
        return json.loads((self.root / "kube" / "objects.json").read_text())


def out(ctx: UpContext) -> str:
    return ctx.ui.stream.getvalue()


def argv_option(argv: list[str], name: str) -> Optional[str]:
    return argv[argv.index(name) + 1] if name in argv else None

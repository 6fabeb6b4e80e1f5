"""Several kubeadm control-plane nodes behind real sshd servers on loopback, for inventory tests.

Each node is a real OpenSSH sshd (tests/sshd.py) started inside its own mount namespace
(`unshare --mount`) in which /etc and /var/log are overlays: the node's writes (manifest,
policy, backups, audit log) land in a directory of the test, never in this machine's /etc.
In that namespace /etc/kubernetes is a copy of tests/data/node, and PATH starts with
tests/doubles, so `kubectl --kubeconfig /etc/kubernetes/admin.conf` on the node is the
scripted kubelet (tests/doubles/kubesim.py) with the node's own state file. The SSH
transport, the shell and the file operations are all real.

Needs root (mount namespaces and overlayfs); the fixture skips with one line otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from sshd import Sshd, SshdUnavailable, running_sshd

TESTS = Path(__file__).resolve().parent
NODE_TREE = TESTS / "data" / "node"
MANIFEST = "kubernetes/manifests/kube-apiserver.yaml"  # under the node's /etc


@dataclass
class SshNode:
    name: str
    server: Sshd
    dir: Path  # the overlays' upper dirs and the kubelet simulator's state

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def etc(self) -> Path:
        """What the node sees as /etc, as far as the node changed or kaudit wrote it."""
        return self.dir / "etc-upper"

    @property
    def varlog(self) -> Path:
        return self.dir / "log-upper"

    def manifest(self) -> str:
        return (self.etc / MANIFEST).read_text()

    def state(self) -> dict:
        return json.loads((self.dir / "kubesim.json").read_text())


def _cluster_configuration(cluster_name: str) -> str:
    return (
        "apiServer: {}\napiVersion: kubeadm.k8s.io/v1beta4\ncertificatesDir: /etc/kubernetes/pki\n"
        f"clusterName: {cluster_name}\ncontrollerManager: {{}}\nkind: ClusterConfiguration\n"
        "kubernetesVersion: v1.31.0\nnetworking:\n  dnsDomain: cluster.local\n  serviceSubnet: 10.96.0.0/12\n"
    )


def _prepare(d: Path, node_name: str, cluster_name: str) -> None:
    for sub in ("etc-upper", "etc-work", "log-upper", "log-work"):
        (d / sub).mkdir(parents=True)
    shutil.copytree(NODE_TREE / "etc" / "kubernetes", d / "etc-upper" / "kubernetes")
    os.chmod(d / "etc-upper" / MANIFEST, 0o600)
    state = {
        "nodes": {"/": {"node": node_name, "script": [], "after": "ready"}},
        "configmaps": {
            "kube-system/kubeadm-config": {
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "kubeadm-config", "namespace": "kube-system", "resourceVersion": "228"},
                "data": {"ClusterConfiguration": _cluster_configuration(cluster_name)},
            }
        },
        "calls": [],
    }
    (d / "kubesim.json").write_text(json.dumps(state))
    (d / "kubesim.json").chmod(0o666)


def _namespaced(d: Path):
    def wrap(argv: list[str]) -> list[str]:
        script = (
            f"mount -t overlay overlay -o lowerdir=/etc,upperdir={d}/etc-upper,workdir={d}/etc-work /etc && "
            f"mount -t overlay overlay -o lowerdir=/var/log,upperdir={d}/log-upper,workdir={d}/log-work /var/log && "
            'exec "$@"'
        )
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sshd", *argv]

    return wrap


def _site_packages() -> str:
    """The login shell may put another python3 first on PATH: give it this one's packages (ruamel)."""
    import sysconfig

    return sysconfig.get_paths()["purelib"]


def _can_namespace() -> str | None:
    if os.geteuid() != 0:
        return "kubeadm nodes behind sshd need root (mount namespaces and overlayfs)"
    if not shutil.which("unshare"):
        return "kubeadm nodes behind sshd need unshare (util-linux)"
    r = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    if r.returncode != 0:
        return f"kubeadm nodes behind sshd need mount namespaces: unshare --mount: {r.stderr.decode().strip()}"
    return None


@pytest.fixture
def ssh_nodes(tmp_path, monkeypatch):
    """make(node_name, cluster_name) -> SshNode: a kubeadm node with its own sshd on loopback."""
    reason = _can_namespace()
    if reason:
        pytest.skip(reason)
    monkeypatch.setenv("KAUDIT_POLL_INTERVAL", "10ms")
    path_prefix = f"{TESTS / 'doubles'}:{Path(sys.executable).parent}:"
    with contextlib.ExitStack() as stack:

        def make(node_name: str = "cp1", cluster_name: str = "kubernetes") -> SshNode:
            d = tmp_path / f"node-{node_name}"
            _prepare(d, node_name, cluster_name)
            try:
                server = stack.enter_context(running_sshd(
                    wrap=_namespaced(d), env={"KUBESIM_STATE": str(d / "kubesim.json"), "PYTHONPATH": _site_packages()}, path_prefix=path_prefix, unprivileged_user=False,
                ))
            except SshdUnavailable as e:
                pytest.fail(str(e), pytrace=False)
            return SshNode(node_name, server, d)

        yield make

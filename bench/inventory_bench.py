"""Wall time of `kaudit up -f` over several SSH kubeadm clusters, next to the same clusters
done one after another with `kaudit up --host` (what a shell loop over clusters does).

Each cluster is one control-plane node behind its own loopback sshd, in its own mount
namespace (tests/ssh_nodes.py), with the scripted kubelet taking a few seconds to restart
kube-apiserver (old pod, API down, new pod not ready, then ready: RESTART_STEPS polls at
--poll-interval), which is where a real `up` spends its time. Phases: policy, apiserver,
persist. Every measurement starts from fresh, unpatched nodes.

    .venv/bin/python bench/inventory_bench.py [--clusters 4] [--parallel 4]   # as root
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from sshd import running_sshd  # noqa: E402  (tests/sshd.py)
from ssh_nodes import _namespaced, _prepare, _site_packages  # noqa: E402  (tests/ssh_nodes.py)

#: what kubelet shows while it restarts kube-apiserver, one step per poll (tests/doubles/kubesim.py)
RESTART_STEPS = ["old-hash"] * 3 + ["api-error"] * 4 + ["not-found"] * 2 + ["new-not-ready"] * 3
POLL = "250ms"
PHASES = "policy,apiserver,persist"


@contextlib.contextmanager
def fresh_nodes(n: int):
    with tempfile.TemporaryDirectory(prefix="kaudit-inv-bench-") as tmp, contextlib.ExitStack() as stack:
        nodes = []
        for i in range(n):
            d = Path(tmp) / f"node{i}"
            _prepare(d, f"cp{i}", f"cluster{i}")
            state = json.loads((d / "kubesim.json").read_text())
            state["nodes"]["/"]["script"] = list(RESTART_STEPS)
            (d / "kubesim.json").write_text(json.dumps(state))
            server = stack.enter_context(running_sshd(
                wrap=_namespaced(d), env={"KUBESIM_STATE": str(d / "kubesim.json"), "PYTHONPATH": _site_packages()},
                path_prefix=f"{REPO / 'tests' / 'doubles'}:{Path(sys.executable).parent}:", unprivileged_user=False,
            ))
            nodes.append((f"cluster{i}", server))
        yield Path(tmp), nodes


def kaudit(*args: str) -> float:
    env = dict(os.environ, KAUDIT_POLL_INTERVAL=POLL)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "kaudit", *args], capture_output=True, text=True, env=env)
    took = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"kaudit {' '.join(args)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return took


def host_args(server) -> list[str]:
    return ["--host", server.url, "--ssh-key", str(server.key_path), "--ssh-known-hosts", str(server.known_hosts_path)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clusters", type=int, default=4)
    ap.add_argument("--parallel", type=int, default=4)
    a = ap.parse_args()

    with fresh_nodes(a.clusters) as (_, nodes):
        loop = sum(kaudit("up", *host_args(s), "--cluster-name", name, "--only", PHASES) for name, s in nodes)

    with fresh_nodes(a.clusters) as (tmp, nodes):
        inv = tmp / "clusters.yaml"
        inv.write_text("clusters:\n" + "".join(
            f"  - name: {name}\n    hosts: [{s.url}]\n    ssh_key: {s.key_path}\n    known_hosts: {s.known_hosts_path}\n"
            for name, s in nodes
        ))
        one = kaudit("up", "-f", str(inv), "--only", PHASES, "--parallel", "1")
    with fresh_nodes(a.clusters) as (tmp, nodes):
        inv = tmp / "clusters.yaml"
        inv.write_text("clusters:\n" + "".join(
            f"  - name: {name}\n    hosts: [{s.url}]\n    ssh_key: {s.key_path}\n    known_hosts: {s.known_hosts_path}\n"
            for name, s in nodes
        ))
        par = kaudit("up", "-f", str(inv), "--only", PHASES, "--parallel", str(a.parallel))

    print(f"{a.clusters} clusters, phases {PHASES}, kubelet restart of {len(RESTART_STEPS)} polls at {POLL}, load {os.getloadavg()[0]:.1f}")
    print(f"| run | wall s | × loop |\n|---|---:|---:|")
    for label, t in ((f"loop of `kaudit up --host` (peer)", loop), ("`kaudit up -f --parallel 1`", one),
                     (f"`kaudit up -f --parallel {a.parallel}`", par)):
        print(f"| {label} | {t:.1f} | {loop / t:.2f} |")


if __name__ == "__main__":
    main()

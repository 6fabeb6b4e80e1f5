"""Finding the running kube-apiserver on a live node: a real process found by pgrep and
/proc/<pid>/cmdline, and the crictl fallback (crictl double) where pgrep is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kaudit.adapters.hosts.local import LocalHost
from kaudit.engine.verify import node as N

DOUBLES = Path(__file__).resolve().parent / "doubles" / "verify"


@pytest.fixture
def fake_apiserver(tmp_path):
    """A real process whose program name is kube-apiserver (a symlink to Python: the kernel
    names the process after the path it was started by), carrying apiserver-style flags."""
    link = tmp_path / "kube-apiserver"
    link.symlink_to(sys.executable)
    argv = [str(link), "-c", "import time; time.sleep(60)", "--audit-log-path=/var/log/k a/audit.log",
            "--audit-policy-file", "/etc/kubernetes/audit-policy.yaml", "--profiling"]
    proc = subprocess.Popen(argv)
    try:
        for _ in range(200):  # until the kernel shows the new argv
            try:
                if b"--profiling" in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
                    break
            except OSError:
                pass
            time.sleep(0.01)
        yield proc
    finally:
        proc.kill()
        proc.wait(5)


def test_a_running_process_is_found_by_pgrep_and_proc(fake_apiserver):
    found = N.find_apiserver(LocalHost())
    mine = [p for p in found if p.pid == str(fake_apiserver.pid)]
    assert len(mine) == 1, found
    flags = N.parse_flags(mine[0].args)
    assert flags["audit-log-path"] == "/var/log/k a/audit.log"  # a space inside one argument
    assert flags["audit-policy-file"] == "/etc/kubernetes/audit-policy.yaml"
    assert flags["profiling"] == "true"
    assert mine[0].source == f"/proc/{fake_apiserver.pid}/cmdline"


def test_an_ended_process_is_not_found(fake_apiserver):
    assert any(p.pid == str(fake_apiserver.pid) for p in N.find_apiserver(LocalHost()))
    fake_apiserver.kill()
    fake_apiserver.wait(5)
    assert not any(p.pid == str(fake_apiserver.pid) for p in N.find_apiserver(LocalHost()))


@pytest.fixture
def no_pgrep_path(tmp_path, monkeypatch):
    """A PATH with the crictl double and python3 but no pgrep."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "crictl").symlink_to(DOUBLES / "crictl")
    (bin_dir / "python3").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


def test_crictl_fallback_reads_the_container_args(tmp_path, monkeypatch, no_pgrep_path):
    state = tmp_path / "cri.json"
    args = ["kube-apiserver", "--advertise-address=10.0.0.5", "--audit-log-path=/var/log/kubernetes-audit/audit.log"]
    state.write_text(json.dumps({"containers": [
        {"id": "a" * 64, "name": "kube-apiserver", "state": "CONTAINER_RUNNING", "args": args},
        {"id": "b" * 64, "name": "kube-apiserver", "state": "CONTAINER_EXITED", "args": args[:1]},
        {"id": "c" * 64, "name": "etcd", "state": "CONTAINER_RUNNING", "args": ["etcd"]},
    ]}))
    monkeypatch.setenv("KAUDIT_VERIFY_CRI", str(state))
    found = N.find_apiserver(LocalHost())
    assert [(p.pid, p.args, p.source) for p in found] == [("a" * 13, tuple(args), "crictl inspect " + "a" * 13)]


def test_crictl_unreachable_runtime_finds_nothing(monkeypatch, no_pgrep_path):
    monkeypatch.delenv("KAUDIT_VERIFY_CRI", raising=False)
    assert N.find_apiserver(LocalHost()) == []


def test_parse_flags_forms():
    flags = N.parse_flags(["kube-apiserver", "--a=1", "--b", "2", "--c", "--d=x=y", "--a=3", "positional"])
    assert flags == {"a": "3", "b": "2", "c": "true", "d": "x=y"}


def test_last_complete_line(tmp_path):
    host = LocalHost(tmp_path)
    f = tmp_path / "log"
    f.write_bytes(b'{"a":1}\n')
    assert N.last_complete_line(host, "/log", f.stat().st_size) == b'{"a":1}'
    f.write_bytes(b"partial only")
    assert N.last_complete_line(host, "/log", f.stat().st_size) is None
    f.write_bytes(b"one\ntwo\nthr")
    assert N.last_complete_line(host, "/log", f.stat().st_size) == b"two"


def test_mapped_paths(tmp_path):
    assert N.mapped(LocalHost(tmp_path), "/etc/kubernetes/admin.conf") == os.path.join(tmp_path, "etc/kubernetes/admin.conf")
    assert N.mapped(LocalHost(), "/etc/kubernetes/admin.conf") == "/etc/kubernetes/admin.conf"


def test_port_forward_uses_limas_copied_kubeconfig(tmp_path, monkeypatch):
    from kaudit.adapters.hosts.lima import LimaHost
    from kaudit.engine.verify.kube import Kubectl

    monkeypatch.setenv("LIMA_HOME", str(tmp_path))
    kube = Kubectl(LimaHost("k8s"), None, LocalHost())
    assert kube.local_kubeconfig() is None  # not copied yet: kubectl's own default
    copied = tmp_path / "k8s" / "copied-from-guest" / "kubeconfig.yaml"
    copied.parent.mkdir(parents=True)
    copied.write_text("apiVersion: v1\nkind: Config\n")
    assert kube.local_kubeconfig() == str(copied)
    assert Kubectl(LimaHost("k8s"), tmp_path / "mine", LocalHost()).local_kubeconfig() == str(tmp_path / "mine")

"""What verify reads on a node, through the Host seam only.

"The running kube-apiserver" means a process whose argv[0] is kube-apiserver,
read from ``/proc/<pid>/cmdline`` (NUL-separated, so arguments with spaces stay
whole). Under ``--host local --rootfs DIR`` that is ``DIR/proc/*/cmdline``: a
node image, a container's root seen from outside, or a test tree all look the
same, and a path in the flags is found at DIR + the node path. On a live node
the pids come from ``pgrep -x kube-apiserver``; where pgrep is missing, from
``crictl inspect`` of the running kube-apiserver container.
"""

from __future__ import annotations

import json
import posixpath
import time
from dataclasses import dataclass
from typing import Optional

from kaudit.adapters.hosts.base import Host
from kaudit.core.node_paths import ADMIN_CONF, APISERVER_MANIFEST as MANIFEST  # noqa: F401  (kubeadm's paths, re-exported)

PROGRAM = "kube-apiserver"


def rootfs_of(host: Host):
    """The rootfs directory of a LocalHost opened with --rootfs, else None."""
    return getattr(host, "rootfs", None)


def mapped(host: Host, node_path: str) -> str:
    """The path a command started by host must use for a node path: DIR + path under --rootfs."""
    return host.command_path(node_path)


def node_now(host: Host) -> float:
    """The node's clock (mtimes on the node are compared with it, not with ours)."""
    from kaudit.adapters.hosts.local import LocalHost

    if isinstance(host, LocalHost):
        return time.time()
    r = host.run(["date", "+%s"], check=False, sudo=False, timeout=15)
    try:
        return float(r.out.strip())
    except ValueError:
        return time.time()


def tail_bytes(host: Host, path: str, size: int) -> bytes:
    """The last `size` bytes of a node file without reading all of it."""
    from kaudit.adapters.hosts.local import LocalHost

    if isinstance(host, LocalHost):
        with open(host.path(path), "rb") as f:
            f.seek(0, 2)
            end = f.tell()
            f.seek(max(0, end - size))
            return f.read()
    r = host.run(["tail", "-c", str(size), "--", path], check=False, timeout=30)
    if not r.ok:
        from kaudit.core.errors import KauditError

        raise KauditError(f"{host.name}: cannot read {path}: {r.err.strip() or 'exit ' + str(r.returncode)}")
    return r.stdout


def last_complete_line(host: Host, path: str, file_size: int) -> Optional[bytes]:
    """The last newline-terminated line of a file (a line still being written is ignored).
    Reads a growing window from the end, up to 8 MiB (audit events can be ~400 KB)."""
    size = 64 * 1024
    while True:
        data = tail_bytes(host, path, size)
        body = data[: data.rfind(b"\n")] if b"\n" in data else b""
        start = body.rfind(b"\n")
        whole_file = size >= file_size
        if start >= 0 or (whole_file and body):
            return body[start + 1 :]
        if whole_file or size >= 8 * 1024 * 1024:
            return None
        size *= 4


@dataclass(frozen=True)
class Process:
    pid: str
    args: tuple[str, ...]
    source: str  # where the arguments were read, for the report


def parse_flags(args: tuple[str, ...] | list[str]) -> dict[str, str]:
    """--name=value and --name value (the next argument) -> {name: value}; the last one wins,
    as in kube-apiserver's flag parsing. A bare --flag is "true"."""
    flags: dict[str, str] = {}
    items = list(args[1:])
    i = 0
    while i < len(items):
        a = items[i]
        if a.startswith("--") and len(a) > 2:
            name, eq, value = a[2:].partition("=")
            if not eq:
                if i + 1 < len(items) and not items[i + 1].startswith("-"):
                    value = items[i + 1]
                    i += 1
                else:
                    value = "true"
            flags[name] = value
        i += 1
    return flags


def _is_apiserver(argv: list[str]) -> bool:
    return bool(argv) and posixpath.basename(argv[0]) == PROGRAM


def _from_proc(host: Host, pids: list[str]) -> list[Process]:
    found = []
    for pid in pids:
        try:
            raw = host.read_file(f"/proc/{pid}/cmdline")
        except Exception:  # the process ended between listing and reading
            continue
        argv = [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
        if _is_apiserver(argv):
            found.append(Process(pid, tuple(argv), f"/proc/{pid}/cmdline"))
    return found


def _from_crictl(host: Host) -> list[Process]:
    r = host.run(["crictl", "ps", "--name", PROGRAM, "--state", "Running", "-q"], check=False, timeout=30)
    if not r.ok:
        return []
    found = []
    for cid in r.out.split():
        ins = host.run(["crictl", "inspect", cid], check=False, timeout=30)
        if not ins.ok:
            continue
        try:
            info = json.loads(ins.out).get("info", {})
        except ValueError:
            continue
        argv = (info.get("runtimeSpec") or {}).get("process", {}).get("args")
        if not argv:
            cfg = info.get("config") or {}
            argv = list(cfg.get("command") or []) + list(cfg.get("args") or [])
        if argv and _is_apiserver(argv):
            found.append(Process(cid[:13], tuple(argv), f"crictl inspect {cid[:13]}"))
    return found


def find_apiserver(host: Host) -> list[Process]:
    """Every running kube-apiserver on the node, with its arguments."""
    if rootfs_of(host) is not None:
        pids = [p for p in host.listdir("/proc") if p.isdigit()]
        return _from_proc(host, sorted(pids, key=int))
    r = host.run(["pgrep", "-x", PROGRAM], check=False, timeout=30)
    if r.returncode == 0:
        return _from_proc(host, r.out.split())
    if r.returncode == 1:  # pgrep ran: no such process
        return []
    return _from_crictl(host)

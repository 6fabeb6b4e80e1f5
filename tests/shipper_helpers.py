"""Helpers for the shipper's fault tests: audit files written like kube-apiserver writes them,
and the real shipper run as a subprocess against the Loki double."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from conftest import DATA, REPO

TEMPLATES = [json.loads(l) for l in (DATA / "shipper" / "events.jsonl").read_bytes().splitlines()]
_T0 = datetime(2026, 11, 28, 23, 0, 0, tzinfo=timezone.utc)


def make_events(n: int, start: int = 0) -> list[bytes]:
    """n distinct apiserver-shaped events (real templates, fresh auditIDs, increasing stageTimestamp)."""
    out = []
    for i in range(start, start + n):
        ev = dict(TEMPLATES[i % len(TEMPLATES)])
        ev["auditID"] = str(uuid.UUID(int=i + 1))
        t = _T0 + timedelta(microseconds=i * 137)
        ev["stageTimestamp"] = t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        out.append(json.dumps(ev, separators=(",", ":")).encode())
    return out


def pairs_in_lines(lines) -> set[tuple[str, str]]:
    out = set()
    for l in lines:
        try:
            ev = json.loads(l)
        except ValueError:
            continue
        if isinstance(ev, dict) and "auditID" in ev:
            out.add((ev["auditID"], ev["stage"]))
    return out


def pairs_in_files(directory: Path) -> set[tuple[str, str]]:
    """(auditID, stage) over the active file and every rotated backup in a directory."""
    out = set()
    for p in directory.iterdir():
        if p.suffix == ".log" or ".log" in p.name and not p.name.endswith(".gz"):
            out |= pairs_in_lines(p.read_bytes().splitlines())
    return out


def pairs_in_loki(loki) -> set[tuple[str, str]]:
    return pairs_in_lines(e.line for e in loki.entries())


def append(path: Path, lines: list[bytes], end: bytes = b"\n") -> None:
    with open(path, "ab") as f:
        f.write(b"\n".join(lines) + end)


def rotate(path: Path, n: int) -> Path:
    """lumberjack's rename rotation: audit.log -> audit-<UTC time>.log, then a new audit.log."""
    stamp = (_T0 + timedelta(minutes=n)).strftime("%Y-%m-%dT%H-%M-%S.000")
    dest = path.with_name(f"{path.stem}-{stamp}{path.suffix}")
    os.rename(path, dest)
    path.touch(mode=0o600)
    return dest


def wait_for(cond, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class ShipperProc:
    """`python -m kaudit.shipper` (or `kaudit ship`) as a subprocess."""

    def __init__(self, args: list[str], *, via_kaudit: bool = False):
        cmd = [sys.executable, "-m", "kaudit", "ship"] if via_kaudit else [sys.executable, "-m", "kaudit.shipper"]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.p = subprocess.Popen(cmd + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)

    def wait(self, timeout: float = 30.0) -> tuple[int, str]:
        try:
            _, err = self.p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            _, err = self.p.communicate()
            raise AssertionError(f"shipper did not exit within {timeout}s; stderr:\n{err.decode()}")
        return self.p.returncode, err.decode()

    def term(self, timeout: float = 30.0) -> tuple[int, str]:
        self.p.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill9(self) -> None:
        self.p.kill()
        self.p.wait(10)

    def alive(self) -> bool:
        return self.p.poll() is None


def base_args(log: Path, loki, positions: Path, *extra) -> list[str]:
    return ["--path", log, "--loki-url", loki.url, "--positions", positions, "--node", "cp1",
            "--batch-wait", "100ms", "--backoff-min", "50ms", "--backoff-max", "500ms", *extra]

#!/usr/bin/env python3
"""Loki's own ingest rate on this machine: real audit events pushed by kaudit's shipper into a
real single-binary Loki, with Loki's CPU time, wall time and peak memory.

    KAUDIT_LOKI_BIN=/path/to/loki .venv/bin/python bench/loki_ingest.py [--events 100000] [--json]

The Loki binary comes from --loki-bin, $KAUDIT_LOKI_BIN or `loki` on PATH (none is committed:
build or download it yourself; Loki 2.6.1 built with a new Go needs
ASSUME_NO_MOVING_GC_UNSAFE_RISK_IT_WITH=go1.27 in the environment, which is passed through).
It runs on loopback with filesystem storage, one replica, and per-tenant limits far above
what is pushed, so Loki's capacity is measured, not its default 4 MiB/s tenant limit. Input:
../shared/corpus/kube-apiserver-v1.36-gce.jsonl repeated to --events (as ship_bench.py).
Loki's CPU time is read from /proc/<pid>/stat before and after; the shipper runs alongside it
on the same machine, so wall-clock figures are shared-machine figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ship_bench import REPO, corpus_lines, run_measured, ship_cmd, write_input  # noqa: E402

LIMITS = """limits_config:
  ingestion_rate_mb: 1024
  ingestion_burst_size_mb: 2048
  per_stream_rate_limit: 1024MB
  per_stream_rate_limit_burst: 2048MB
  max_line_size: 1MB
  reject_old_samples: false
{extra}"""

CONFIG = """auth_enabled: false
server:
  http_listen_address: 127.0.0.1
  http_listen_port: {http}
  grpc_listen_address: 127.0.0.1
  grpc_listen_port: {grpc}
  log_level: warn
common:
  path_prefix: {dir}
  storage:
    filesystem:
      chunks_directory: {dir}/chunks
      rules_directory: {dir}/rules
  replication_factor: 1
  ring:
    instance_addr: 127.0.0.1
    kvstore:
      store: inmemory
schema_config:
  configs:
    - from: 2020-10-24
      store: {store}
      object_store: filesystem
      schema: {schema}
      index:
        prefix: index_
        period: 24h
analytics:
  reporting_enabled: false
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loki_version(binary: str) -> str:
    # Loki reads its config before it looks at -version: give it an empty one
    out = subprocess.run([binary, "-config.file=/dev/null", "-version"], capture_output=True, text=True, timeout=30)
    m = re.search(r"version (\d+\.\d+\.\d+)", out.stdout + out.stderr)
    if not m:
        raise SystemExit(f"{binary} -version: no version in its output: {(out.stdout + out.stderr)[:200]!r}")
    return m.group(1)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    m = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024 if m else 0.0


def metrics(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    out = {"lines": 0.0, "bytes": 0.0, "pushes_ok": 0.0, "pushes_failed": 0.0}
    for line in text.splitlines():
        if line.startswith("loki_distributor_lines_received_total"):
            out["lines"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("loki_distributor_bytes_received_total"):
            out["bytes"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("loki_request_duration_seconds_count") and 'route="loki_api_v1_push"' in line:
            ok = 'status_code="204"' in line
            out["pushes_ok" if ok else "pushes_failed"] += float(line.rsplit(" ", 1)[1])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--loki-bin", default=os.environ.get("KAUDIT_LOKI_BIN") or shutil.which("loki"))
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if not a.loki_bin:
        print("no Loki binary: pass --loki-bin, set KAUDIT_LOKI_BIN or put loki on PATH", file=sys.stderr)
        return 2
    version = loki_version(a.loki_bin)
    major = int(version.split(".")[0])
    lines, source = corpus_lines()
    with tempfile.TemporaryDirectory(prefix="kaudit-loki-bench-") as tmp:
        work = Path(tmp)
        (work / "rules").mkdir()
        http, grpc = free_port(), free_port()
        store, schema = ("tsdb", "v13") if major >= 3 else ("boltdb-shipper", "v11")
        extra = "  allow_structured_metadata: true\n" if major >= 3 else ""
        (work / "loki.yaml").write_text(CONFIG.format(http=http, grpc=grpc, dir=work, store=store, schema=schema) + LIMITS.format(extra=extra))
        url = f"http://127.0.0.1:{http}"
        log = open(work / "loki.log", "wb")
        proc = subprocess.Popen([a.loki_bin, f"-config.file={work / 'loki.yaml'}"], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    if urllib.request.urlopen(f"{url}/ready", timeout=2).status == 200:
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"Loki did not become ready: {(work / 'loki.log').read_text()[-800:]}")
                time.sleep(0.5)
            path = work / "audit.log"
            size = write_input(path, lines, a.events)
            m0, c0, t0 = metrics(url), cpu_seconds(proc.pid), time.monotonic()
            shipper = run_measured(ship_cmd("python -m kaudit.shipper", path, url, work / "pos.json", "--once"), env=dict(os.environ, PYTHONPATH=str(REPO)))
            wall = time.monotonic() - t0
            m1, c1 = metrics(url), cpu_seconds(proc.pid)
            rss = peak_rss_mb(proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
    got = {k: m1[k] - m0[k] for k in m0}
    cpu = c1 - c0
    res = {
        "loki_version": version, "input": source, "events": a.events, "file_bytes": size,
        "lines_received": int(got["lines"]), "bytes_received": int(got["bytes"]),
        "pushes_ok": int(got["pushes_ok"]), "pushes_failed": int(got["pushes_failed"]),
        "loki_cpu_s": round(cpu, 2), "loki_peak_rss_mb": round(rss, 1), "wall_s": round(wall, 2),
        "shipper_cpu_s": round(shipper["cpu_s"], 2),
        "events_per_loki_cpu_s": round(got["lines"] / cpu) if cpu else None,
        "mb_per_loki_cpu_s": round(got["bytes"] / 1e6 / cpu, 1) if cpu else None,
        "events_per_s_wall": round(got["lines"] / wall) if wall else None,
    }
    print(f"Loki {version}, single binary, filesystem; input {a.events:,} events ({size / 1e6:.1f} MB) from {source}")
    print(f"received {res['lines_received']:,} lines, {res['bytes_received'] / 1e6:.1f} MB of line data; pushes: {res['pushes_ok']} ok, {res['pushes_failed']} failed")
    print(f"Loki CPU {res['loki_cpu_s']} s -> {res['events_per_loki_cpu_s']:,} events and {res['mb_per_loki_cpu_s']} MB per Loki CPU-second; peak RSS {res['loki_peak_rss_mb']} MB")
    print(f"wall {res['wall_s']} s with the shipper ({res['shipper_cpu_s']} CPU s) on the same machine -> {res['events_per_s_wall']:,} events/s")
    if a.json:
        print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

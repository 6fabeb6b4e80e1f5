"""Benchmark of `kaudit policy simulate` against a bare json.loads loop, on the same input.

    python bench/simulate_bench.py                  # 100,000 events, 3 policies
    python bench/simulate_bench.py --events 200000 --repeat 3

Each run is a subprocess measured alone (CPU seconds and peak RSS from os.wait4 in a
minimal parent, because a child's ru_maxrss starts at the RSS of whoever forked it):

  * parse limit: `for line in open(f, 'rb'): json.loads(line)` over the same file;
  * the simulation engine: kaudit.core.simulate over the file, 3 policies (gce,
    gce-modern, and "everything at RequestResponse, no stage omitted", which also
    infers every RequestReceived event the log lacks);
  * the command: `kaudit policy simulate --log FILE --profile gce --profile gce-modern
    --policy all.yaml -o json` (adds start-up, policy loading and the report);
  * the command on a quarter of the file: peak RSS must not grow with the input.

Input: ../shared/corpus/kube-apiserver-v1.36-gce.jsonl (real kube-apiserver v1.36 events,
3,582 lines, 6.4 MB, some 400 KB RequestResponse events) repeated up to --events. Without
that file the benchmark says so and stops. Not a test: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus" / "kube-apiserver-v1.36-gce.jsonl"
ALL_RR = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: RequestResponse\n"
PARSE_LOOP = "import json,sys\nfor line in open(sys.argv[1], 'rb'):\n    json.loads(line)\n"
ENGINE = """
import sys
from pathlib import Path
from kaudit.adapters.audit_files import read_lines
from kaudit.core.policy import policy_text
from kaudit.core.policy_eval import load_policy
from kaudit.core.simulate import Simulation
pols = [(load_policy(policy_text(p), p, p), p) for p in ("gce", "gce-modern")]
pols.append((load_policy(Path(sys.argv[2]).read_text(), sys.argv[2], "all"), sys.argv[2]))
sim = Simulation(pols)
sim.add_lines(read_lines([sys.argv[1]]))
sim.report([sys.argv[1]])
"""
_MEASURE = """
import json, os, subprocess, sys, time
t0 = time.monotonic()
p = subprocess.Popen(json.loads(sys.argv[1]), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = p.stderr.read()
_, status, ru = os.wait4(p.pid, 0)
print(json.dumps({"cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mb": ru.ru_maxrss / 1024,
                  "wall_s": time.monotonic() - t0, "rc": os.waitstatus_to_exitcode(status),
                  "stderr": err.decode(errors="replace")[-2000:]}))
"""


def measure(argv: list[str]) -> dict:
    """CPU seconds and peak RSS of one subprocess alone."""
    out = subprocess.run([sys.executable, "-S", "-c", _MEASURE, json.dumps(argv)], capture_output=True, cwd=REPO)
    if out.returncode != 0:
        raise SystemExit(out.stderr.decode())
    r = json.loads(out.stdout)
    if r["rc"] != 0:
        raise SystemExit(f"{argv[:4]} failed ({r['rc']}): {r['stderr']}")
    return r


def best(argv: list[str], repeat: int) -> dict:
    """The run with the median CPU time of `repeat` runs, so one noisy run does not decide."""
    runs = sorted((measure(argv) for _ in range(repeat)), key=lambda r: r["cpu_s"])
    return {**runs[len(runs) // 2], "cpu_runs": [round(r["cpu_s"], 2) for r in runs],
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs)}


def write_input(path: Path, events: int) -> int:
    lines = CORPUS.read_bytes().splitlines(keepends=True)
    with path.open("wb") as f:
        for i in range(events):
            f.write(lines[i % len(lines)])
    return path.stat().st_size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the median is reported")
    args = ap.parse_args()
    if not CORPUS.exists():
        print(f"skipped: {CORPUS} not found (the shared corpus sits next to the repository)", file=sys.stderr)
        return 0
    py = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable
    with tempfile.TemporaryDirectory(prefix="kaudit-simbench-") as tmp:
        big, small, policy = Path(tmp) / "audit.log", Path(tmp) / "quarter.log", Path(tmp) / "all.yaml"
        size = write_input(big, args.events)
        small_size = write_input(small, args.events // 4)
        policy.write_text(ALL_RR)
        cli = [py, "-m", "kaudit", "policy", "simulate", "--profile", "gce", "--profile", "gce-modern",
               "--policy", str(policy), "-o", "json", "--log"]
        rows = [
            ("json.loads loop (parse limit)", best([py, "-c", PARSE_LOOP, str(big)], args.repeat), args.events),
            ("simulation engine, 3 policies", best([py, "-c", ENGINE, str(big), str(policy)], args.repeat), args.events),
            ("kaudit policy simulate, 3 policies", best([*cli, str(big)], args.repeat), args.events),
            ("kaudit policy simulate, quarter of the file", best([*cli, str(small)], args.repeat), args.events // 4),
        ]
    base = rows[0][1]["cpu_s"] / rows[0][2]
    print(f"input: {args.events:,} events, {size / 1e6:.1f} MB ({CORPUS.name} repeated); quarter: {small_size / 1e6:.1f} MB")
    print(f"{'run':<45} {'CPU s':>7} {'events/CPU-s':>13} {'x parse loop':>13} {'peak RSS MB':>12}  CPU s of each run")
    for name, r, n in rows:
        ratio = base / (r["cpu_s"] / n)
        print(f"{name:<45} {r['cpu_s']:>7.2f} {n / r['cpu_s']:>13,.0f} {ratio:>13.2f} {r['peak_rss_mb']:>12.1f}  {r['cpu_runs']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

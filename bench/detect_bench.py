"""Benchmark of `kaudit detect --log` against the parse limit, on the same input.

    .venv/bin/python bench/detect_bench.py            # the v1.36 corpus file, and 100,000 events
    .venv/bin/python bench/detect_bench.py --events 200000

Runs, as subprocesses on the same file (CPU seconds from os.wait4, i.e. that process alone):
  * `python -m kaudit detect --log FILE` with every packaged rule on (text report to /dev/null);
  * the parse limit: a plain `for line in f: json.loads(line)` loop, the least any JSON audit
    tool in Python must do.
The ratio is parse-loop CPU / detect CPU: 1.0 would be "as fast as parsing alone"; the
target from issue 11 is >= 0.5. Start-up of the CLI is included (it is what a user pays);
the in-process rows time the library path alone (rules from the cache, read, parse, match)
against a json.loads loop in the same process, without either interpreter's start-up.

Input: ../shared/corpus/kube-apiserver-v1.36-gce.jsonl (real kube-apiserver v1.36 events,
6.4 MB), found next to the repository; the benchmark says so and stops when it is absent.
Not a test: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus" / "kube-apiserver-v1.36-gce.jsonl"
PARSE_LOOP = "import json,sys\nfor line in open(sys.argv[1], 'rb'):\n    json.loads(line)\n"
#: the library path alone, in one process: detect() over the file vs a json.loads loop over it
IN_PROCESS = """
import json, sys, time
from kaudit.adapters.rule_cache import packaged_rules
from kaudit.adapters.audit_files import read_lines
from kaudit.core.detect.match import detect
rules = packaged_rules()
best_loop = best_det = 1e9
for _ in range(int(sys.argv[2])):
    t = time.process_time()
    for line in open(sys.argv[1], 'rb'):
        json.loads(line)
    best_loop = min(best_loop, time.process_time() - t)
    t = time.process_time()
    findings, events = detect(rules, read_lines([sys.argv[1]]))
    best_det = min(best_det, time.process_time() - t)
print(best_loop, best_det, events, len(findings))
"""


#: as an installed kaudit runs: pip compiles .pyc files at install time, so a start-up reads
#: bytecode. With PYTHONDONTWRITEBYTECODE set (some sandboxes set it) an editable install
#: compiles kaudit's modules again on every start, which is not what users pay.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def measure(argv: list[str]) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, exit code) of one subprocess, stdout discarded."""
    start = time.perf_counter()
    with open(os.devnull, "wb") as devnull:
        proc = subprocess.Popen(argv, stdout=devnull, stderr=subprocess.PIPE, cwd=REPO, env=ENV)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode not in (0, 3):
        sys.exit(f"{' '.join(argv)} failed ({proc.returncode}): {err.strip()[-300:]}")
    return usage.ru_utime + usage.ru_stime, wall, proc.returncode


def best_of(argv: list[str], runs: int) -> tuple[float, float]:
    measure(argv)  # warm-up: writes the bytecode cache, fills the rule cache and the page cache
    results = [measure(argv) for _ in range(runs)]
    cpu = min(r[0] for r in results)
    wall = min(r[1] for r in results)
    return cpu, wall


def paired_median(a: list[str], b: list[str], pairs: int) -> float:
    """Median of CPU(a)/CPU(b) over runs taken in alternation: steadier than a ratio of two
    bests on a VM whose speed drifts by ±20 % from one second to the next."""
    import statistics

    return statistics.median(measure(a)[0] / measure(b)[0] for _ in range(pairs))


def bench(path: Path, events: int, runs: int) -> tuple[list[tuple[str, float, float, float]], float]:
    py = sys.executable
    loop_argv = [py, "-c", PARSE_LOOP, str(path)]
    det_argv = [py, "-m", "kaudit", "detect", "--log", str(path)]
    loop_cpu, loop_wall = best_of(loop_argv, runs)
    det_cpu, det_wall = best_of(det_argv, runs)
    paired = paired_median(loop_argv, det_argv, 15 if events < 20_000 else runs)
    cp = subprocess.run([py, "-c", IN_PROCESS, str(path), str(runs)], capture_output=True, text=True, cwd=REPO, check=True)
    lib_loop, lib_det, _n, _found = cp.stdout.split()
    return [
        ("json.loads loop (parse limit)", loop_cpu, loop_wall, events / loop_cpu),
        ("kaudit detect --log, all rules", det_cpu, det_wall, events / det_cpu),
        ("in-process: json.loads loop", float(lib_loop), float("nan"), events / float(lib_loop)),
        ("in-process: detect(), all rules", float(lib_det), float("nan"), events / float(lib_det)),
    ], paired


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000, help="events in the repeated-corpus run")
    ap.add_argument("--runs", type=int, default=5, help="runs per measurement; the best is kept")
    args = ap.parse_args()
    if not CORPUS.exists():
        print(f"skipped: {CORPUS} not found (the shared corpus lives next to the repository)")
        return 0
    lines = CORPUS.read_bytes().splitlines(keepends=True)
    sys.path.insert(0, str(REPO))
    from kaudit.core.detect.model import rule_pack

    print(f"rules: {len(rule_pack())} (all packaged rules), python {sys.version.split()[0]}, best of {args.runs}")
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "audit-100k.log"
        with open(big, "wb") as fh:
            for i in range(args.events):
                fh.write(lines[i % len(lines)])
        for label, path, n in ((f"{CORPUS.name} ({CORPUS.stat().st_size / 1e6:.1f} MB)", CORPUS, len(lines)),
                               (f"corpus repeated to {args.events:,} events ({big.stat().st_size / 1e6:.0f} MB)", big, args.events)):
            rows, paired = bench(path, n, args.runs)
            print(f"\n{label}")
            print(f"  {'run':<34} {'CPU s':>7} {'wall s':>7} {'events/CPU-s':>13} {'x parse loop':>13}")
            for i, (name, cpu, wall, rate) in enumerate(rows):
                base = rows[0][1] if i < 2 else rows[2][1]
                print(f"  {name:<34} {cpu:7.2f} {wall:7.2f} {rate:13,.0f} {base / cpu:13.2f}")
            print(f"  {'kaudit detect --log, paired median':<34} {'':>7} {'':>7} {'':>13} {paired:13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

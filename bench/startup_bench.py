"""Start-up time of `kaudit --help`, next to named peers on the same machine.

Peers: `kubectl --help` (a Go binary every kaudit user has) and the bare Python
interpreter (`python -c pass`, the floor any Python CLI pays). Reports medians
over N runs and the ratios kaudit/peer. Target from issue 2: well under 0.3 s.

    python bench/startup_bench.py [-n 20]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def median_seconds(argv: list[str], n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=20)
    args = ap.parse_args()
    runs = {
        "kaudit --help": [sys.executable, "-m", "kaudit", "--help"],
        "python -c pass": [sys.executable, "-c", "pass"],
    }
    if shutil.which("kubectl"):
        runs["kubectl --help"] = ["kubectl", "--help"]
    results = {name: median_seconds(argv, args.n) for name, argv in runs.items()}
    k = results["kaudit --help"]
    print(f"{'command':<18} {'median':>9}  kaudit/peer")
    for name, t in results.items():
        ratio = "" if name == "kaudit --help" else f"{k / t:.2f}x"
        print(f"{name:<18} {t * 1000:>7.1f}ms  {ratio}")
    print(f"target: kaudit --help < 300ms -> {'met' if k < 0.3 else 'NOT met'}")


if __name__ == "__main__":
    main()

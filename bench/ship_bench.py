"""Benchmark of the bundled shipper against named peers, on the same input.

    python bench/ship_bench.py                      # 100k events into the Loki double
    python bench/ship_bench.py --loki-url http://127.0.0.1:3100   # a real Loki instead

Measures, for `kaudit ship --once` and `python -m kaudit.shipper --once` as subprocesses
(CPU and peak RSS from os.wait4, i.e. that process alone):
  * events per CPU-second, and the ratio to the parse limit: a plain `json.loads` loop
    over the same lines, also a subprocess;
  * with a `promtail` on PATH (or $PROMTAIL): Promtail itself on the same file into the same
    Loki, with kaudit's rendered config, and every ratio to it; otherwise
  * the ratio to Promtail 3.6's reference figure from issue 4 (27,000 events per
    CPU-second, 98 MB peak RSS, 100k real events, json -> labels -> structured_metadata ->
    timestamp pipeline into Loki 3.x, measured on this machine class);
  * peak RSS on the full input and on a quarter of it (it must not grow with file size);
  * end-to-end lag (append to the file -> entry acknowledged by Loki) at a steady rate
    (2,000 events/s by default) with the default 1 s batch wait: p50 / p95 / max.

Input: ../shared/corpus/kube-apiserver-v1.36-gce.jsonl (real kube-apiserver v1.36 events)
repeated up to --events, when that directory exists next to the repository; generated
events of realistic size (tests/data/shipper templates, one ~400 KB RequestResponse event
in 600) otherwise. Not a test: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from doubles.loki import LokiDouble  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpus" / "kube-apiserver-v1.36-gce.jsonl"
PROMTAIL = {"name": "Promtail 3.6 (issue 4 reference)", "events_per_cpu_s": 27000.0, "peak_rss_mb": 98.0}
PARSE_LOOP = "import json,sys\nfor line in open(sys.argv[1], 'rb'):\n    json.loads(line)\n"


# ----------------------------------------------------------------------------- input

def corpus_lines() -> tuple[list[bytes], str]:
    if CORPUS.exists():
        return CORPUS.read_bytes().splitlines(), f"real events: {CORPUS.relative_to(REPO.parent)}"
    data = REPO / "tests" / "data" / "shipper"
    base = (data / "events.jsonl").read_bytes().splitlines()
    large = gzip.decompress((data / "large-event.jsonl.gz").read_bytes()).rstrip(b"\n")
    lines = []
    for i in range(600):
        lines.append(large if i == 599 else base[i % len(base)])
    return lines, "generated from tests/data/shipper templates (../shared/corpus not found)"


def write_input(path: Path, lines: list[bytes], n: int) -> int:
    """n lines cycling over `lines`; returns bytes written."""
    with open(path, "wb") as f:
        full, rest = divmod(n, len(lines))
        block = b"\n".join(lines) + b"\n"
        for _ in range(full):
            f.write(block)
        if rest:
            f.write(b"\n".join(lines[:rest]) + b"\n")
    return path.stat().st_size


# ----------------------------------------------------------------------------- measurement

# Run through a small fresh interpreter: on Linux a child's ru_maxrss starts from the RSS of
# the process that forked it (the vfork'd memory counts at exec), so forking from this
# benchmark (which holds the double and the corpus) would inflate every figure.
_MEASURE = """
import json, os, subprocess, sys, time
t0 = time.monotonic()
p = subprocess.Popen(json.loads(sys.argv[1]), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = p.stderr.read()
_, status, ru = os.wait4(p.pid, 0)
print(json.dumps({"cpu_s": ru.ru_utime + ru.ru_stime, "user_s": ru.ru_utime, "sys_s": ru.ru_stime,
                  "peak_rss_mb": ru.ru_maxrss / 1024, "wall_s": time.monotonic() - t0,
                  "rc": os.waitstatus_to_exitcode(status), "stderr": err.decode(errors="replace")[-4000:]}))
"""


def run_measured(argv: list[str], env=None) -> dict:
    """CPU seconds and peak RSS of one subprocess alone (os.wait4 in a minimal parent)."""
    out = subprocess.run([sys.executable, "-S", "-c", _MEASURE, json.dumps(argv)], capture_output=True, env=env, cwd=REPO)
    if out.returncode != 0:
        raise SystemExit(out.stderr.decode())
    r = json.loads(out.stdout)
    if r["rc"] != 0:
        raise SystemExit(f"{' '.join(argv)} exited {r['rc']}:\n{r['stderr']}")
    return r


def kaudit_script() -> list[str]:
    """The `kaudit` console script as a user runs it (next to this interpreter), else python -m kaudit."""
    script = Path(sys.executable).parent / "kaudit"
    return [str(script)] if script.exists() else [sys.executable, "-m", "kaudit"]


def ship_cmd(entry: str, path: Path, url: str, positions: Path, *extra: str) -> list[str]:
    head = kaudit_script() + ["ship"] if entry == "kaudit ship" else [sys.executable, "-m", "kaudit.shipper"]
    return head + ["--path", str(path), "--loki-url", url, "--positions", str(positions), "--node", "bench", *extra]


# A long-running peer (Promtail does not exit at the end of a file): the parent prints the
# child's pid, the bench stops it once Loki holds every entry, then gets its rusage.
_MEASURE_UNTIL_STOPPED = """
import json, os, subprocess, sys, time
t0 = time.monotonic()
p = subprocess.Popen(json.loads(sys.argv[1]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(p.pid, flush=True)
_, status, ru = os.wait4(p.pid, 0)
print(json.dumps({"cpu_s": ru.ru_utime + ru.ru_stime, "user_s": ru.ru_utime, "sys_s": ru.ru_stime,
                  "peak_rss_mb": ru.ru_maxrss / 1024, "wall_s": time.monotonic() - t0, "rc": 0, "stderr": ""}))
"""


def promtail_binary() -> str | None:
    """A promtail on PATH (or $PROMTAIL), for measuring it on the same input and Loki."""
    import shutil

    return os.environ.get("PROMTAIL") or shutil.which("promtail")


def run_promtail(binary: str, work: Path, path: Path, n: int, url: str, loki: LokiDouble | None) -> dict:
    """Promtail with kaudit's rendered config (json -> labels -> structured_metadata -> timestamp),
    stopped once the Loki double holds all n entries; CPU and peak RSS of Promtail alone."""
    from kaudit.core import render

    settings = render.CollectorSettings(log_path=str(path), loki_url=url.rstrip("/") + "/loki/api/v1/push",
                                        structured_metadata=True, node="bench").checked()
    config = render.render_collector_config("promtail-config", settings)
    config = config.replace("/var/lib/promtail/positions.yaml", str(work / "promtail-positions.yaml"))
    (work / "promtail.yaml").write_text(config)
    argv = [binary, f"-config.file={work / 'promtail.yaml'}", "-server.disable", f"-positions.file={work / 'promtail-positions.yaml'}"]
    before = loki.received if loki else 0
    parent = subprocess.Popen([sys.executable, "-S", "-c", _MEASURE_UNTIL_STOPPED, json.dumps(argv)], stdout=subprocess.PIPE, cwd=REPO)
    pid = int(parent.stdout.readline())
    # Promtail does not trim events over Loki 3's 256 KB line limit: Loki refuses those (400) and
    # Promtail drops them, so "done" is all n, or no new entry for 5 s
    deadline = time.monotonic() + 600
    last, still_since = -1, time.monotonic()
    while loki is not None and loki.received - before < n and time.monotonic() < deadline and parent.poll() is None:
        got = loki.received
        if got != last:
            last, still_since = got, time.monotonic()
        elif got > before and time.monotonic() - still_since > 5:
            break
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:  # it exited by itself (a bad flag or config): reported below
        pass
    out = parent.communicate(timeout=60)[0]
    r = json.loads(out.splitlines()[-1])
    got = loki.received - before if loki else n
    if got < n * 0.99:
        raise SystemExit(f"promtail delivered {got} of {n} entries")
    r["delivered"] = got
    return r


def throughput(work: Path, lines: list[bytes], n: int, url: str | None, loki: LokiDouble | None) -> dict:
    big, quarter = work / "audit-full.log", work / "audit-quarter.log"
    size = write_input(big, lines, n)
    write_input(quarter, lines, n // 4)
    res = {"events": n, "bytes": size}
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res["floor"] = run_measured([sys.executable, "-c", "pass"])
    res["parse_loop"] = run_measured([sys.executable, "-c", PARSE_LOOP, str(big)])
    runs = (("python -m kaudit.shipper", "full", big, n, ()), ("kaudit ship", "full", big, n, ()),
            ("python -m kaudit.shipper", "quarter", quarter, n // 4, ()),
            ("python -m kaudit.shipper", "full, --structured-metadata off", big, n, ("--structured-metadata", "off")))
    for entry, label, path, count, extra in runs:
        if True:
            pos = work / f"pos-{len(res)}.json"
            before = loki.received if loki else 0
            r = run_measured(ship_cmd(entry, path, url, pos, "--once", *extra), env=env)
            if loki is not None and loki.received - before != count:
                raise SystemExit(f"{entry}: Loki received {loki.received - before} entries, expected {count}")
            res[f"{entry} ({label})"] = r
    binary = promtail_binary()
    if binary and loki is not None:
        res["promtail"] = run_promtail(binary, work, big, n, url, loki)
    return res


def lag(work: Path, lines: list[bytes], url: str | None, loki: LokiDouble | None, rate: int, seconds: float) -> dict:
    """Append `rate` events/s for `seconds`; lag = Loki's receive time - append time, per event."""
    if loki is None:
        return {"skipped": "needs the Loki double (it records when each entry arrived)"}
    path = work / "audit-lag.log"
    path.touch()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.Popen(ship_cmd("python -m kaudit.shipper", path, url, work / "pos-lag.json"),
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, cwd=REPO)
    deadline = time.monotonic() + 10
    while not (work / "pos-lag.json").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    templates = [json.loads(l) for l in lines[:500] if len(l) < 20000]
    t0 = datetime(2026, 11, 28, tzinfo=timezone.utc)
    appended: dict[int, int] = {}
    total = int(rate * seconds)
    tick = 0.01
    per_tick = max(1, int(rate * tick))
    start = time.monotonic()
    i = 0
    with open(path, "ab", buffering=0) as f:
        while i < total:
            target = start + (i / rate)
            now = time.monotonic()
            if target > now:
                time.sleep(target - now)
            chunk = []
            for j in range(i, min(total, i + per_tick)):
                ev = dict(templates[j % len(templates)])
                ev["auditID"] = str(uuid.UUID(int=j + 1))
                ev["stageTimestamp"] = (t0 + timedelta(microseconds=j)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                chunk.append(json.dumps(ev, separators=(",", ":")).encode())
            stamp = time.time_ns()
            f.write(b"\n".join(chunk) + b"\n")
            for j in range(i, i + len(chunk)):
                appended[int(t0.timestamp()) * 10**9 + j * 1000] = stamp
            i += len(chunk)
    wall = time.monotonic() - start
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = {e.ts: e.received_ns for e in loki.entries() if e.ts in appended}
        if len(got) == total:
            break
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    p.wait(30)
    lags = sorted((got[ts] - appended[ts]) / 1e9 for ts in got)
    if len(lags) != total:
        return {"error": f"only {len(lags)} of {total} events arrived"}
    pick = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))]
    return {"events": total, "rate": rate, "achieved_rate": round(total / wall), "p50_s": pick(0.50),
            "p95_s": pick(0.95), "p99_s": pick(0.99), "max_s": lags[-1]}


# ----------------------------------------------------------------------------- report

def report(res: dict, lagres: dict, source: str, args) -> str:
    pl = res["parse_loop"]
    n = res["events"]
    eps = lambda r, k=n: k / r["cpu_s"]
    rows = [("json.loads loop (parse limit)", pl, n)]
    for k in ("python -m kaudit.shipper (full)", "kaudit ship (full)", "python -m kaudit.shipper (quarter)",
              "python -m kaudit.shipper (full, --structured-metadata off)"):
        if k in res:
            rows.append((k, res[k], n // 4 if "quarter" in k else n))
    out = [f"input: {n:,} events, {res['bytes'] / 1e6:.0f} MB ({source})", "",
           "| run | CPU s | events / CPU-s | × parse loop | × Promtail | peak RSS MB | wall s |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r, k in rows:
        e = eps(r, k)
        out.append(f"| {name} | {r['cpu_s']:.2f} | {e:,.0f} | {e / eps(pl):.2f} | {e / PROMTAIL['events_per_cpu_s']:.2f} "
                   f"| {r['peak_rss_mb']:.0f} | {r['wall_s']:.1f} |")
    if "promtail" in res:
        r = res["promtail"]
        e = eps(r)
        out.append(f"| Promtail (`{promtail_binary()}`, measured here; {r['delivered']:,} entries accepted, the rest over "
                   f"Loki's line limit) | {r['cpu_s']:.2f} | {e:,.0f} | {e / eps(pl):.2f} | "
                   f"{e / PROMTAIL['events_per_cpu_s']:.2f} | {r['peak_rss_mb']:.0f} | {r['wall_s']:.1f} |")
        for name, r2, k in rows[1:]:
            out.append(f"| ↳ {name} ÷ measured Promtail | | | | {eps(r2, k) / e:.2f} | | |")
    else:
        out.append(f"| {PROMTAIL['name']} | 3.66 | {PROMTAIL['events_per_cpu_s']:,.0f} | – | 1.00 | {PROMTAIL['peak_rss_mb']:.0f} | – |")
    if "python -m kaudit.shipper (quarter)" in res:
        full, quarter = res["python -m kaudit.shipper (full)"], res["python -m kaudit.shipper (quarter)"]
        out += ["", f"peak RSS: {full['peak_rss_mb']:.1f} MB on the full file vs {quarter['peak_rss_mb']:.1f} MB on a quarter of it "
                    f"({full['peak_rss_mb'] / PROMTAIL['peak_rss_mb']:.2f} × Promtail's {PROMTAIL['peak_rss_mb']:.0f} MB); "
                    f"a bare `python -c pass` measures {res['floor']['peak_rss_mb']:.1f} MB the same way"]
    if "p95_s" in lagres:
        out += ["", f"lag (append -> acknowledged push) at {lagres['rate']:,} events/s (achieved {lagres['achieved_rate']:,}), "
                    f"{lagres['events']:,} events, --batch-wait 1s: p50 {lagres['p50_s']:.2f} s, p95 {lagres['p95_s']:.2f} s, "
                    f"p99 {lagres['p99_s']:.2f} s, max {lagres['max_s']:.2f} s"]
    else:
        out += ["", f"lag: {lagres}"]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--loki-url", help="push to this Loki instead of the in-process double (lag is then skipped)")
    ap.add_argument("--loki-version", default="3.5.0", help="version the double behaves as (default 3.5.0)")
    ap.add_argument("--lag-rate", type=int, default=2000)
    ap.add_argument("--lag-seconds", type=float, default=15.0)
    ap.add_argument("--skip-lag", action="store_true")
    ap.add_argument("--json", action="store_true", help="print the raw results as JSON too")
    args = ap.parse_args(argv)
    lines, source = corpus_lines()
    loki = None
    if args.loki_url:
        url = args.loki_url
    else:
        loki = LokiDouble(args.loki_version, store_lines=False, reject_old_samples_max_age_ns=0).start()
        url = loki.url
    try:
        with tempfile.TemporaryDirectory(prefix="ship-bench-") as tmp:
            work = Path(tmp)
            res = throughput(work, lines, args.events, url, loki)
            lagres = {"skipped": "--skip-lag"} if args.skip_lag else lag(work, lines, url, loki, args.lag_rate, args.lag_seconds)
    finally:
        if loki:
            loki.stop()
    print(report(res, lagres, source, args))
    if args.json:
        for r in res.values():
            if isinstance(r, dict):
                r.pop("stderr", None)
        print(json.dumps({"throughput": res, "lag": lagres}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Bytes per audit event under each packaged policy profile, from the real corpus.

    .venv/bin/python bench/audit_volume.py            # ../shared/corpus/kube-apiserver-v1.36-gce.jsonl
    .venv/bin/python bench/audit_volume.py FILE.jsonl --json

The corpus was written by a real kube-apiserver v1.36 running GCE's policy (policies/gce.yaml).
For each event this re-decides the level under each profile with kaudit.core.policy_eval (the
evaluator of `kaudit policy simulate`, kube-apiserver's policy checker semantics), then:

* gce: checks that the re-decided level is the recorded one (it validates the evaluator);
* gce-modern: drops None events, removes responseObject below RequestResponse and
  requestObject below Request, and removes metadata.managedFields from bodies
  (omitManagedFields). A level above the recorded one cannot be rebuilt: such events keep
  their recorded size and are counted.

Sizes are line bytes with the newline, as Loki receives them; a changed event is measured as
its recorded size minus what was removed (so the apiserver's own JSON escaping is kept).
Also prints gzip -6 of the kept lines (an indication of compressed size: Loki's own chunk
encoding, snappy by default, compresses less). Prints the figures docs/scale.md uses.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

LEVELS = ("None", "Metadata", "Request", "RequestResponse")
CORPUS = REPO.parent / "shared" / "corpus" / "kube-apiserver-v1.36-gce.jsonl"


def load_policy(profile: str):
    from kaudit.core.policy import policy_text
    from kaudit.core.policy_eval import load_policy as compile_text

    return compile_text(policy_text(profile), f"<profile {profile}>", profile)


def decide(policy, e: dict) -> tuple[str, frozenset, bool]:
    """(level, omitStages, omitManagedFields) for an event, as the apiserver decides them:
    kaudit.core.policy_eval, the evaluator `kaudit policy simulate` uses."""
    from kaudit.core.policy_eval import evaluate, request_from_event

    d = evaluate(policy, request_from_event(e))
    return d.level, d.omit_stages, d.omit_managed_fields


def _strip_managed_fields(obj):
    if isinstance(obj, dict):
        meta = obj.get("metadata")
        if isinstance(meta, dict):
            meta.pop("managedFields", None)
        for item in obj.get("items") or []:
            _strip_managed_fields(item)


def _json_len(obj) -> int:
    return len(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode())


def reshape(e: dict, line_len: int, level: str, omit_managed: bool) -> int:
    """The line length of `e` re-recorded at `level` (never above the recorded one)."""
    new = copy.deepcopy(e)
    rank = LEVELS.index(level)
    if rank < LEVELS.index("RequestResponse"):
        new.pop("responseObject", None)
    if rank < LEVELS.index("Request"):
        new.pop("requestObject", None)
    if omit_managed:
        for key in ("requestObject", "responseObject"):
            _strip_managed_fields(new.get(key))
    new["level"] = level
    removed = _json_len(e) - _json_len(new)
    return line_len - removed


def measure(lines: list[bytes], profile: str) -> dict:
    policy = load_policy(profile)
    kept, sizes, levels, mismatched, above = [], [], {}, 0, 0
    for raw in lines:
        e = json.loads(raw)
        n = len(raw) + (0 if raw.endswith(b"\n") else 1)
        level, stages, omit_managed = decide(policy, e)
        if level == "None" or e.get("stage") in stages:
            continue
        recorded = e.get("level")
        if profile == "gce" and level != recorded:
            mismatched += 1
        if LEVELS.index(level) > LEVELS.index(recorded):
            above += 1
            size = n
        elif level == recorded and not omit_managed:
            size = n
        else:
            size = reshape(e, n, level, omit_managed)
        kept.append(raw.rstrip(b"\n"))
        sizes.append(size)
        levels[level] = levels.get(level, 0) + 1
    total = sum(sizes)
    raw_kept = b"\n".join(kept) + b"\n"
    return {
        "profile": profile,
        "events_in": len(lines),
        "events_kept": len(sizes),
        "bytes": total,
        "mean_bytes": round(total / len(sizes)) if sizes else 0,
        "median_bytes": statistics.median(sizes) if sizes else 0,
        "max_bytes": max(sizes) if sizes else 0,
        "levels": levels,
        "gce_level_mismatches": mismatched if profile == "gce" else None,
        "levels_above_recorded": above,
        "gzip_ratio_of_recorded_lines": round(len(raw_kept) / len(gzip.compress(raw_kept, 6)), 1) if kept else None,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", nargs="?", type=Path, default=CORPUS)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if not a.file.is_file():
        print(f"{a.file}: no such file (the shared corpus lives in ../shared/corpus next to the repository)", file=sys.stderr)
        return 2
    lines = [x for x in a.file.read_bytes().splitlines(keepends=True) if x.strip()]
    results = [measure(lines, p) for p in ("gce", "gce-modern")]
    print(f"input: {a.file.name}, {len(lines):,} events, {sum(len(x) for x in lines):,} bytes")
    print("| profile | events kept | bytes | mean B/event | median | max | levels | gzip ratio |")
    print("|---|---:|---:|---:|---:|---:|---|---:|")
    for r in results:
        lv = ", ".join(f"{k} {v}" for k, v in sorted(r["levels"].items(), key=lambda kv: LEVELS.index(kv[0])))
        print(f"| {r['profile']} | {r['events_kept']:,} | {r['bytes']:,} | {r['mean_bytes']:,} | {r['median_bytes']:,.0f} | {r['max_bytes']:,} | {lv} | {r['gzip_ratio_of_recorded_lines']}:1 |")
    g = results[0]
    print(f"gce re-decided levels that differ from the recorded ones: {g['gce_level_mismatches']} (0 = the evaluator agrees with the apiserver)")
    print(f"gce-modern events whose level is above the recorded one (size kept as recorded): {results[1]['levels_above_recorded']}")
    if a.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What candidate audit policies would have written for a recorded audit log.

Each recorded event is evaluated against every policy (kaudit.core.policy_eval)
and, when the policy writes its stage, sized as the apiserver would encode it at
the policy's level (kaudit.core.event_bytes). The result is a plain dict (the
`--output json` document, described in docs/simulate.md) built from counters
whose size does not grow with the input: memory stays flat however long the log.

Two things a log cannot tell are kept apart rather than guessed:

* unjudged: the policy wants a higher level than the event was recorded at, so the
  bodies it would add are unknown. Counted per rule with a lower bound on bytes,
  never mixed into the byte totals.
* inferred RequestReceived: a log recorded with RequestReceived omitted (as GCE's
  policy does) still tells that the stage happened; for a policy that keeps the
  stage, its event is inferred from the request's final event and counted, marked
  as inferred.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Iterable, Optional, Tuple

from kaudit.core.event_bytes import GO_PREFIX, LEVEL_RANK, EventSizes, request_received_on_line
from kaudit.core.policy_eval import Policy, Request, evaluate, request_from_event

#: (source name, line number, raw bytes): what kaudit.adapters.audit_files.read_lines yields
Line = Tuple[str, int, bytes]

TOP = 10
KEY_LIMIT = 200_000  # distinct (rule, stage, level, resource, user) per policy; then users/resources fold into "(other)"
MEMO_LIMIT = 100_000  # memoised plans (distinct request shapes); flushed into the counters when full
PENDING_LIMIT = 1_000_000  # auditIDs of RequestReceived events waiting for their final stage
_EMPTY: dict = {}
_DECODER = json.JSONDecoder()


def _add(table: dict, key, events: int, nbytes: int) -> None:
    cell = table.get(key)
    if cell is None:
        table[key] = [events, nbytes]
    else:
        cell[0] += events
        cell[1] += nbytes


class PolicyTally:
    """Counts for one policy, in one table keyed by (kind, rule, stage, level, resource, user),
    filled from the plans' sums; the per-stage/level/rule/resource/user views are summed at the end.
    kind: "w" written, "i" inferred RequestReceived (also written), "u:<recorded level>"
    unjudged, "n" matched but not written."""

    def __init__(self, policy: Policy, source: str):
        self.policy = policy
        self.source = source
        self.cells: dict = {}

    def add(self, key: tuple, events: int, nbytes: int) -> None:
        cell = self.cells.get(key)
        if cell is None:
            if len(self.cells) >= KEY_LIMIT:
                key = (*key[:4], "(other)", "(other)")
                cell = self.cells.get(key)
            if cell is None:
                self.cells[key] = [events, nbytes]
                return
        cell[0] += events
        cell[1] += nbytes

    def view(self, fields: tuple[int, ...], kinds: tuple[str, ...] = ("w", "i")) -> dict:
        out: dict = {}
        for key, (n, b) in self.cells.items():
            if key[0] in kinds or (kinds == ("u",) and key[0].startswith("u:")):
                _add(out, key[fields[0]] if len(fields) == 1 else tuple(key[f] for f in fields), n, b)
        return out


class Plan:
    """What every policy does with one shape of event (same request attributes, stage and
    recorded level), and the sums of the sizes the events of that shape need. Sizes add up,
    so the per-policy counters are filled from these sums only when the plan is flushed."""

    __slots__ = ("entries", "variants", "deltas", "plain_ok", "infer_rr", "stage", "recorded", "count", "sums", "rr_sum",
                 "plain_count", "plain_sum")

    def __init__(self, entries: tuple, variants: tuple, infer_rr: bool, stage: str, recorded: str):
        # entries, per policy: (tally, key, variant index or -1 (not written), bytes to add per
        # event, kind, key of the inferred RequestReceived or None, its level, rule)
        self.entries = entries
        self.variants = variants  # the (level, omit managedFields) sizes to measure per event
        # an event without bodies on the apiserver's own line: its size at a level is its
        # length plus the difference in the level's name (kept as plain_sum/plain_count)
        self.deltas = tuple(len(level) - len(recorded) for level, _omf in variants)
        # ... and so is an event with bodies when every size wanted is the one recorded
        self.plain_ok = all(level == recorded and not omf for level, omf in variants)
        self.infer_rr = infer_rr
        self.stage, self.recorded = stage, recorded
        self.count = self.rr_sum = self.plain_count = self.plain_sum = 0
        self.sums = [0] * len(variants)


class Simulation:
    """Feed recorded lines with add_lines(); report() gives the result document."""

    def __init__(self, policies: list[tuple[Policy, str]]):
        self.tallies = [PolicyTally(p, src) for p, src in policies]
        self.names = any(p.uses_resource_names for p, _ in policies)
        self.plans: dict = {}
        self.pending: set = set()
        self.events = 0
        self.bytes = 0
        self.skipped = 0
        self.first_skips: list[str] = []
        self.recorded: dict = {}  # (level, stage) -> [events, 0], filled by _flush
        self.first: Optional[str] = None
        self.last: Optional[str] = None
        self.diffs = [{"dropped": [0, 0], "added": [0, 0], "both": [0, 0, 0], "unjudged": 0, "by_rule": {}}
                      for _ in self.tallies[1:]]

    def _plan(self, req: Request, stage: str, recorded: str, infer_rr: bool) -> Plan:
        if req.resource_request:
            res = f"{req.resource}/{req.subresource}" if req.subresource else req.resource
            resource = f"{req.group or 'core'}/{res}"
        else:
            resource = req.path or "(non-resource)"
        user = req.user or "(unauthenticated)"
        variants: list = []
        entries = []
        for tally in self.tallies:
            d = evaluate(tally.policy, req)
            level, rule = d.level, d.rule
            delta = len(level) - len(recorded)
            if level == "None" or stage in d.omit_stages:
                kind, variant, delta = "n", None, 0
            elif stage == "RequestReceived":  # no bodies at this stage: any level can be judged
                kind, variant = "w", (recorded, False)
            elif LEVEL_RANK[level] > LEVEL_RANK[recorded]:  # bodies never recorded: a lower bound
                kind, variant = "u:" + recorded, (recorded, d.omit_managed_fields)
            else:
                kind, variant, delta = "w", (level, d.omit_managed_fields), 0
            if variant is not None and variant not in variants:
                variants.append(variant)
            rr = None
            if infer_rr and level != "None" and "RequestReceived" not in d.omit_stages:
                rr = ("i", rule, "RequestReceived", level, resource, user)
            entries.append((tally, (kind, rule, stage, level, resource, user),
                            -1 if variant is None else variants.index(variant), delta, kind, rr, level, rule))
        return Plan(tuple(entries), tuple(variants), any(e[5] is not None for e in entries), stage, recorded)

    def _flush(self) -> None:
        """Move the plans' sums into the per-policy counters and the comparisons."""
        for plan in self.plans.values():
            n = plan.count
            if not n:
                continue
            _add(self.recorded, (plan.recorded, plan.stage), n, 0)
            variant_bytes = [s + plan.plain_sum + plan.plain_count * d for s, d in zip(plan.sums, plan.deltas)]
            sizes = []
            for tally, key, vi, delta, kind, rr, level, _rule in plan.entries:
                nbytes = variant_bytes[vi] + n * delta if vi >= 0 else 0
                sizes.append(nbytes)
                tally.add(key, n, nbytes)
                if rr is not None:
                    tally.add(rr, n, plan.rr_sum + n * len(level))
            base = plan.entries[0]
            for diff, other, nbytes in zip(self.diffs, plan.entries[1:], sizes[1:]):
                a_kind, b_kind = base[4], other[4]
                if a_kind.startswith("u") or b_kind.startswith("u"):
                    diff["unjudged"] += n
                elif a_kind == "w" and b_kind == "n":
                    diff["dropped"][0] += n
                    diff["dropped"][1] += sizes[0]
                    _add(diff["by_rule"], (base[7], other[7]), n, sizes[0])
                elif a_kind == "n" and b_kind == "w":
                    diff["added"][0] += n
                    diff["added"][1] += nbytes
                elif a_kind == "w":
                    both = diff["both"]
                    both[0] += n
                    both[1] += sizes[0]
                    both[2] += nbytes
            plan.count = plan.rr_sum = plan.plain_count = plan.plain_sum = 0
            plan.sums = [0] * len(plan.variants)

    def skip(self, line: Line, why: str) -> None:
        self.skipped += 1
        if len(self.first_skips) < 5:
            self.first_skips.append(f"{line[0]}:{line[1]}: {why}")

    def add_lines(self, lines: Iterable[Line]) -> None:
        """The hot loop: one json.loads per line, a memoised plan, and the sizes it needs."""
        plans, pending, names = self.plans, self.pending, self.names
        raw_decode = _DECODER.raw_decode  # json.loads without its wrapper: the same parser
        events = total = 0
        first, last = self.first, self.last
        try:
            for line in lines:
                data = line[2]
                try:
                    text = data.decode()
                    if text[0] in " \t":
                        text = text.lstrip()
                    ev, end = raw_decode(text)
                    if end != len(text) and text[end:].strip():
                        raise ValueError(f"extra data after the JSON value, at column {end + 1}")
                except ValueError as e:  # UnicodeDecodeError too
                    self.skip(line, f"not JSON ({e})")
                    continue
                if ev.__class__ is not dict or ev.get("kind") != "Event" or "stage" not in ev or ev.get("level") not in LEVEL_RANK:
                    self.skip(line, "not an audit Event (kind, a known level and stage are required)")
                    continue
                recorded, stage = ev["level"], ev["stage"]
                events += 1
                n = len(data)  # as written: ending in one newline
                if data[-1] == 10:
                    if n > 1 and data[-2] == 13:
                        n -= 1
                else:
                    n += 1
                total += n
                ts = ev.get("stageTimestamp") or ev.get("timestamp")
                if ts.__class__ is str:
                    if first is None or ts < first:
                        first = ts
                    if last is None or ts > last:
                        last = ts
                # was this request's RequestReceived recorded? (it is written before any later stage)
                infer_rr = False
                if stage == "RequestReceived":
                    audit_id = ev.get("auditID")
                    if audit_id and len(pending) < PENDING_LIMIT:
                        pending.add(audit_id)
                elif stage == "ResponseComplete" or stage == "Panic":
                    audit_id = ev.get("auditID")
                    if audit_id in pending:
                        pending.discard(audit_id)
                    else:
                        infer_rr = True
                # the plan depends only on these fields (the request's attributes, stage and level)
                user = ev.get("user") or _EMPTY
                groups = user.get("groups")
                ref = ev.get("objectRef")
                if ref is not None:
                    pkey = (user.get("username"), tuple(groups) if groups else None, ev.get("verb"), stage, recorded,
                            infer_rr, ref.get("apiGroup"), ref.get("resource"), ref.get("subresource"),
                            ref.get("namespace"), ref.get("name") if names else None)
                else:
                    pkey = (user.get("username"), tuple(groups) if groups else None, ev.get("verb"), stage, recorded,
                            infer_rr, (ev.get("requestURI") or "").partition("?")[0])
                plan = plans.get(pkey)
                if plan is None:
                    if len(plans) >= MEMO_LIMIT:
                        self._flush()
                        plans.clear()  # keeps memory flat whatever the input size
                    req = request_from_event(ev)
                    if not names and req.name:
                        req = req._replace(name="")  # no policy looks at names: one plan for every object
                    plan = plans[pkey] = self._plan(req, stage, recorded, infer_rr)
                plan.count += 1
                variants = plan.variants
                if not variants:
                    continue
                go = data.startswith(GO_PREFIX) and b"&" not in data and b"<" not in data and b">" not in data
                sizes = None
                if go and (plan.plain_ok or ("requestObject" not in ev and "responseObject" not in ev)):
                    plan.plain_count += 1
                    plan.plain_sum += n
                else:
                    sizes = EventSizes(ev, data)
                    sums = plan.sums
                    for i, (level, omf) in enumerate(variants):
                        sums[i] += sizes.size(level, omf)
                if plan.infer_rr:
                    rr = request_received_on_line(data, n, stage, recorded) if go and "responseStatus" in ev else None
                    plan.rr_sum += rr if rr is not None else (sizes or EventSizes(ev, data)).request_received_size("")
        finally:
            self.events += events
            self.bytes += total
            self.first, self.last = first, last

    # ------------------------------------------------------------ the report

    def seconds(self) -> Optional[float]:
        if not self.first or not self.last:
            return None
        try:
            a, b = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (self.first, self.last))
        except ValueError:
            return None
        span = (b - a).total_seconds()
        return span if span > 0 else None

    def report(self, sources: list[str]) -> dict:
        self._flush()
        seconds = self.seconds()
        per_day = (lambda n: round(n * 86400 / seconds)) if seconds else (lambda n: None)
        doc = {
            "kind": "PolicySimulation",
            "version": 1,
            "input": {
                "sources": sources, "events": self.events, "bytes": self.bytes, "skipped_lines": self.skipped,
                "skipped_examples": self.first_skips, "first": self.first, "last": self.last, "seconds": seconds,
                "bytes_per_day": per_day(self.bytes),
                "levels": {k: v[0] for k, v in _ordered(self._recorded(0), LEVEL_RANK)},
                "stages": {k: v[0] for k, v in sorted(self._recorded(1).items())},
            },
            "policies": [self._policy(t, per_day) for t in self.tallies],
            "diffs": [self._diff(i, d) for i, d in enumerate(self.diffs, 1)],
        }
        return doc

    def _recorded(self, field: int) -> dict:
        out: dict = {}
        for key, (n, _b) in self.recorded.items():
            _add(out, key[field], n, 0)
        return out

    def _policy(self, t: PolicyTally, per_day) -> dict:
        stages, levels = t.view((2,)), t.view((3,))
        events = sum(v[0] for v in stages.values())
        nbytes = sum(v[1] for v in stages.values())
        matched = t.view((1,), ("w", "n", "u"))
        for (kind, rule, *_), (n, _b) in t.cells.items():
            if kind.startswith("u:"):
                _add(matched, rule, n, 0)
        written, unjudged = t.view((1,)), t.view((1,), ("u",))
        inferred = t.view((0,), ("i",)).get("i", [0, 0])
        rules = []
        for rule in [*t.policy.rules, None]:
            index = None if rule is None else rule.index
            rules.append({
                "index": index, "level": "None" if rule is None else rule.level,
                "description": "no rule matched: not logged" if rule is None else rule.description,
                "matched": matched.get(index, [0])[0], "written": written.get(index, [0, 0])[0],
                "bytes": written.get(index, [0, 0])[1], "unjudged": unjudged.get(index, [0])[0],
            })
        unj_levels = {}
        for (kind, _r, _s, level, *_), (n, b) in t.cells.items():
            if kind.startswith("u:"):
                _add(unj_levels, f"{kind[2:]}->{level}", n, b)
        return {
            "name": t.policy.name, "source": t.source,
            "written": {"events": events, "bytes": nbytes}, "bytes_per_day": per_day(nbytes),
            "stages": {k: _cell(v) for k, v in sorted(stages.items())},
            "levels": {k: _cell(v) for k, v in _ordered(levels, LEVEL_RANK)},
            "rules": rules,
            "top_resources": _top(t.view((4,)), "resource"),
            "top_users": _top(t.view((5,)), "user"),
            "unjudged": {"events": sum(v[0] for v in unj_levels.values()),
                         "bytes_at_least": sum(v[1] for v in unj_levels.values()),
                         "levels": {k: _cell(v) for k, v in sorted(unj_levels.items())}},
            "inferred_request_received": _cell(inferred),
        }

    def _diff(self, i: int, d: dict) -> dict:
        a, b = self.tallies[0], self.tallies[i]
        by_rule = sorted(d["by_rule"].items(), key=lambda kv: -kv[1][1])
        both = d["both"]
        return {
            "from": a.policy.name, "to": b.policy.name,
            "dropped": _cell(d["dropped"]), "added": _cell(d["added"]),
            "kept_by_both": {"events": both[0], "bytes_from": both[1], "bytes_to": both[2]},
            "not_compared_unjudged": d["unjudged"],
            "dropped_by_rule": [{"from_rule": k[0], "to_rule": k[1], "events": v[0], "bytes": v[1]} for k, v in by_rule],
        }


def _cell(v) -> dict:
    return {"events": v[0], "bytes": v[1]}


def _ordered(table: dict, rank: dict):
    return sorted(table.items(), key=lambda kv: rank.get(kv[0], 99))


def _top(table: dict, name: str) -> list[dict]:
    best = sorted(table.items(), key=lambda kv: (-kv[1][1], -kv[1][0], kv[0]))[:TOP]
    return [{name: k, "events": v[0], "bytes": v[1]} for k, v in best]

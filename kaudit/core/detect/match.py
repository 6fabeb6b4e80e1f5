"""The in-process backend: rules compiled to Python predicates over decoded Event JSON.

Arrays are matched exactly: ``containers[].securityContext.privileged: true`` holds
when some container sets it, and ``element`` checks conditions within one element.
Equality is type-strict (``true`` is not ``1``, ``"403"`` is not ``403``).

Findings are one per rule and auditID (an exec appears as ResponseStarted and
ResponseComplete; it is one finding with both stages). Aggregate rules count matching
requests per key in a sliding window and fire once per burst.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any, Callable, Iterable, Iterator, Optional

from kaudit.core.detect.findings import Finding, Hit, event_time, hit_from_event, parse_time
from kaudit.core.detect.model import Condition, Group, Path, Rule

__all__ = ["Detector", "Finding", "Hit", "compile_rule", "detect", "event_time", "hit_from_event", "iter_events", "parse_time"]

Pred = Callable[[Any], bool]


def resolve(doc: Any, path: Path) -> list:
    """Every value at path (fanning out over []); missing keys give nothing."""
    cur = [doc]
    for seg in path.segments:
        nxt = []
        kind = seg[0]
        for v in cur:
            if kind == "key":
                if isinstance(v, dict) and seg[1] in v:
                    nxt.append(v[seg[1]])
            elif kind == "each":
                if isinstance(v, list):
                    nxt.extend(v)
            elif isinstance(v, list) and -len(v) <= seg[1] < len(v):
                nxt.append(v[seg[1]])
        cur = nxt
        if not cur:
            return cur
    return [v for v in cur if v is not None]


def strict_eq(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, str) != isinstance(b, str):
        return False
    return a == b


def _value_pred(c: Condition) -> Callable[[Any], bool]:
    """A predicate on one value for the positive form of c's operator (type-strict)."""
    op, arg = c.op, c.value
    if op == "eq":
        if isinstance(arg, str):
            return lambda v: v == arg  # a str never equals a non-str
        if isinstance(arg, bool):
            return lambda v: v is arg
        if arg is None:
            return lambda v: False  # missing and null values are never there
        kind = type(arg)
        return lambda v: type(v) is kind and v == arg
    if op in ("in", "not_in"):
        kinds = {type(a) for a in arg}
        if kinds == {str}:
            strs = frozenset(arg)
            return lambda v: type(v) is str and v in strs
        hashable = frozenset((type(a), a) for a in arg)
        return lambda v: not isinstance(v, (list, dict)) and (type(v), v) in hashable
    if op in ("prefix", "not_prefix"):
        return lambda v: type(v) is str and v.startswith(arg)
    if op == "contains":
        return lambda v: type(v) is str and any(a in v for a in arg)
    if op == "element":
        inner = compile_group(arg)
        return lambda v: type(v) is dict and inner(v)
    raise ValueError(op)


def _getter(keys: tuple[str, ...]) -> Callable[[Any], Any]:
    """The value at a path of plain keys, or None; unrolled for the usual depths."""
    if len(keys) == 1:
        (k1,) = keys
        return lambda doc: doc.get(k1)
    if len(keys) == 2:
        k1, k2 = keys

        def get2(doc):
            d = doc.get(k1)
            return d.get(k2) if type(d) is dict else None

        return get2
    if len(keys) == 3:
        k1, k2, k3 = keys

        def get3(doc):
            d = doc.get(k1)
            if type(d) is not dict:
                return None
            d = d.get(k2)
            return d.get(k3) if type(d) is dict else None

        return get3

    def get(doc):
        cur = doc
        for k in keys:
            if type(cur) is not dict:
                return None
            cur = cur.get(k)
            if cur is None:
                return None
        return cur

    return get


def compile_condition(c: Condition) -> Pred:
    path = c.path
    if c.op == "exists":
        want = c.value
        if not path.has_array:
            get = _getter(path.keys)
            return (lambda doc: get(doc) is not None) if want else (lambda doc: get(doc) is None)
        return lambda doc: bool(resolve(doc, path)) == want
    if c.op == "element":
        # the path ends in []: match each element
        parent = Path(path.text, path.segments[:-1])
        inner = compile_group(c.value)

        def element(doc):
            for arr in resolve(doc, parent):
                if isinstance(arr, list) and any(isinstance(e, dict) and inner(e) for e in arr):
                    return True
            return False

        return element
    vp = _value_pred(c)
    if not path.has_array:
        get = _getter(path.keys)
        if c.negative:
            def negative(doc):
                v = get(doc)
                return v is None or not vp(v)

            return negative

        def positive(doc):
            v = get(doc)
            return v is not None and vp(v)

        return positive
    if c.negative:
        return lambda doc: not any(vp(v) for v in resolve(doc, path))
    return lambda doc: any(vp(v) for v in resolve(doc, path))


def compile_group(g: Group) -> Pred:
    preds = tuple(compile_condition(c) for c in g.conditions)
    anys = tuple(compile_group(a) for a in g.any)
    if len(preds) == 1 and not anys:
        return preds[0]

    def group(doc):
        for p in preds:
            if not p(doc):
                return False
        if not anys:
            return True
        for a in anys:
            if a(doc):
                return True
        return False

    return group


#: top-level conditions the Detector's dispatch on (verb, objectRef.resource) already settles
DISPATCHED = ("verb", "objectRef.resource")


def compile_rule(rule: Rule, *, dispatched: bool = False) -> Pred:
    """The rule as one predicate over a decoded event. dispatched: leave out the top-level
    verb/resource conditions the Detector's dispatch table has already checked."""
    when_group = rule.when
    if dispatched:
        keep = tuple(c for c in when_group.conditions if not (c.path.text in DISPATCHED and c.op in ("eq", "in")))
        when_group = Group(keep, when_group.any)
    when = compile_group(when_group) if (when_group.conditions or when_group.any) else (lambda doc: True)
    unless = tuple(compile_group(g) for g in rule.unless)
    stages = frozenset(rule.stages)
    if not stages and not unless:
        return when

    def pred(event):
        if stages and event.get("stage") not in stages:
            return False
        if not when(event):
            return False
        for u in unless:
            if u(event):
                return False
        return True

    return pred


# -- findings ------------------------------------------------------------------------
def _key(event: dict, paths) -> tuple[str, ...]:
    out = []
    for p in paths:
        vals = resolve(event, p)
        out.append(str(vals[0]) if vals else "")
    return tuple(out)


class Detector:
    """Feed decoded events; collect findings. Events may arrive in any order:
    aggregate rules sort their matches by time before counting.

    Rules are dispatched on (verb, objectRef.resource): the rules whose top-level
    conditions admit a pair are worked out once per pair, so an event is only
    offered to the few rules that can match it."""

    def __init__(self, rules: Iterable[Rule]):
        self.rules = list(rules)
        self._compiled = [(r, compile_rule(r), _admits(r)) for r in self.rules]
        self._fast = [(r, compile_rule(r, dispatched=True), adm) for r, _, adm in self._compiled]
        self._dispatch: dict[tuple, list] = {}
        self._single: dict[str, dict[str, Finding]] = {r.id: {} for r in self.rules if r.aggregate is None}
        self._agg: dict[str, list[tuple[float, tuple, Hit]]] = {r.id: [] for r in self.rules if r.aggregate}
        self.events = 0

    def _candidates(self, event: dict) -> list:
        ref = event.get("objectRef")
        key = (event.get("verb"), ref.get("resource") if isinstance(ref, dict) else None)
        try:
            return self._dispatch[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable verb or resource: offer it to every rule
            return self._compiled
        out = [c for c in self._fast if c[2](*key)]
        self._dispatch[key] = out
        return out

    def feed(self, event: dict, source: str = "", line: int = 0, todo: Optional[list] = None) -> None:
        self.events += 1
        hit: Optional[Hit] = None
        for rule, pred, _ in (self._candidates(event) if todo is None else todo):
            if not pred(event):
                continue
            if hit is None:
                hit = hit_from_event(event, f"{source}:{line}" if source else "")
            if rule.aggregate is None:
                seen = self._single[rule.id]
                prev = seen.get(hit.audit_id) if hit.audit_id else None
                if prev is not None:
                    if hit.stages[0] not in prev.hits[0].stages:
                        prev.hits[0].stages.append(hit.stages[0])
                    continue
                seen[hit.audit_id or f"#{len(seen)}"] = Finding(rule, [Hit(**{**hit.__dict__, "stages": list(hit.stages)})])
            else:
                self._agg[rule.id].append((parse_time(hit.time), _key(event, rule.aggregate.by), hit))

    def findings(self) -> list[Finding]:
        out: list[Finding] = []
        for rule in self.rules:
            if rule.aggregate is None:
                out.extend(self._single[rule.id].values())
            else:
                out.extend(self._bursts(rule))
        return out

    def _bursts(self, rule: Rule) -> list[Finding]:
        """Per key: fire when `threshold` matching requests (distinct auditIDs) fall within
        `window`; the finding keeps growing while requests keep coming within the window."""
        agg = rule.aggregate
        per_key: dict[tuple, list[tuple[float, Hit]]] = {}
        seen: set[tuple] = set()
        for ts, key, hit in sorted(self._agg[rule.id], key=lambda x: x[0]):
            ident = (key, hit.audit_id)
            if hit.audit_id and ident in seen:
                continue
            seen.add(ident)
            per_key.setdefault(key, []).append((ts, hit))
        out = []
        for key, items in per_key.items():
            window: deque = deque()
            current: Optional[Finding] = None
            last = None
            for ts, hit in items:
                window.append((ts, hit))
                while window and ts - window[0][0] > agg.window_s:
                    window.popleft()
                if current is not None and last is not None and ts - last <= agg.window_s:
                    current.hits.append(hit)
                    current.count += 1
                    last = ts
                    continue
                current = None
                if len(window) >= agg.threshold:
                    current = Finding(rule, [h for _, h in window], key=key, count=len(window))
                    out.append(current)
                    last = ts
        return out


def _admits(rule: Rule) -> Callable[[Any, Any], bool]:
    """A cheap test on (verb, resource) that every event the rule matches passes."""
    verbs = resources = None
    for c in rule.when.conditions:
        if c.op not in ("eq", "in"):
            continue
        vals = frozenset([c.value] if c.op == "eq" else c.value)
        if c.path.text == "verb":
            verbs = vals
        elif c.path.text == "objectRef.resource":
            resources = vals
    return lambda verb, resource: (verbs is None or verb in verbs) and (resources is None or resource in resources)


def iter_events(lines: Iterable[tuple[str, int, Any]]) -> Iterator[tuple[dict, str, int]]:
    """Decode (source, line number, text or bytes) triples; lines that are not audit Events are skipped."""
    loads = json.loads
    for source, n, line in lines:
        try:
            event = loads(line)
        except ValueError:  # UnicodeDecodeError and JSONDecodeError both are
            continue
        if type(event) is dict and event.get("kind") == "Event":
            yield event, source, n


def detect(rules: Iterable[Rule], lines: Iterable[tuple[str, int, Any]]) -> tuple[list[Finding], int]:
    """Run every rule over the lines; findings and the number of events read.
    The loop is the hot path: it picks the candidate rules itself and calls feed()
    only for events some rule may match."""
    det = Detector(rules)
    feed = det.feed
    dispatch = det._dispatch
    candidates = det._candidates
    loads = json.loads
    events = 0
    for source, n, line in lines:
        try:
            event = loads(line)
        except ValueError:
            continue
        if type(event) is not dict or event.get("kind") != "Event":
            continue
        events += 1
        ref = event.get("objectRef")
        try:
            todo = dispatch[(event.get("verb"), ref.get("resource") if type(ref) is dict else None)]
        except (KeyError, TypeError):
            todo = candidates(event)
        for rule, pred, _ in todo:
            if pred(event):
                feed(event, source, n, todo)  # records every rule that matches this event
                break
    det.events = events
    return det.findings(), events

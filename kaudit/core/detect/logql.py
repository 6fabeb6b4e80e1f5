"""The Loki backend: each rule compiled to a LogQL log query, an alert expression, and
Prometheus-format rule groups for the Loki ruler.

What maps exactly:

* verb, stage and level are stream labels every collector sets (fields.DEFAULT_LABELS),
  so they go into the stream selector ``{job="kubernetes-audit", verb=~"create|patch"}``;
* scalar fields are extracted with ``| json name="path"`` (only the fields the rule
  reads) and compared with label filters: ``=``, ``!=``, anchored ``=~``/``!~`` with
  RE2-escaped values; a missing field compares as "" as in Loki.

What is approximated: Loki's json parser does not look into arrays, so a condition on an
array path (``containers[].securityContext.privileged``, ``rules[].verbs[]``) becomes a
line filter ``|~`` over the raw JSON, written from the last keys of the path (e.g.
``"securityContext":{... "privileged":true``). It matches wherever the line has that
shape (also in responseObject, or in another element than Python would pick), and it can
miss when the encoder nests objects deeper than one level before the key. ``element``
conditions lose their "same element" meaning. Every approximation is written into the
compiled rule (``approximations``) and into the alert's annotations.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from kaudit.core.detect.model import LABEL_PATHS, Condition, Group, Path, Rule
from kaudit.core.query import logql_string
from kaudit.shipper import fields as F

#: the range every single-event alert counts over: longer than the ruler's interval, so
#: events that reach Loki late still fire once
ALERT_RANGE = "5m"
EVAL_INTERVAL = "1m"
#: labels single-event alerts keep: who, and what object
ALERT_BY = ("user.username", "objectRef.namespace", "objectRef.name")

_RE2_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")


def re2_escape(text: str) -> str:
    """Escape the characters RE2 (and Python's re) treat specially; nothing else."""
    return _RE2_SPECIAL.sub(r"\\\1", text)


def label_name(path: Path) -> str:
    """The label a parameterised ``| json`` stage writes a path to."""
    parts = []
    for seg in path.segments:
        if seg[0] == "key":
            parts.append(re.sub(r"[^A-Za-z0-9_]", "_", seg[1]))
        elif seg[0] == "index":
            parts.append(str(seg[1]))
    name = "_".join(parts)
    return name if not name[:1].isdigit() else "_" + name


def json_expression(path: Path) -> str:
    """Loki's json expression for a path without fan-out: a.b, a["x.y"], a[0]."""
    out = ""
    for seg in path.segments:
        if seg[0] == "key":
            k = seg[1]
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
                out += ("." if out else "") + k
            else:
                out += "[" + json.dumps(k) + "]"
        else:
            out += f"[{seg[1]}]"
    return out


def label_value(v: Any) -> str:
    """How Loki's json parser renders a scalar as a label value."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return ""
    return str(v)


def go_json(v: Any) -> str:
    """A scalar as kube-apiserver's Go encoder writes it (HTML-safe escapes)."""
    text = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# -- label filters (exact) ----------------------------------------------------------------
def _alternation(values: Iterable[Any]) -> str:
    vals = [re2_escape(label_value(v)) for v in values]
    return vals[0] if len(vals) == 1 else "(" + "|".join(vals) + ")"


def label_filter(c: Condition, negate: bool = False) -> str:
    """One label filter for a non-array condition (negate: its opposite)."""
    name = label_name(c.path)
    op, v = c.op, c.value
    positive = not c.negative
    if negate:
        positive = not positive
    if op == "eq":
        return f"{name}{'=' if positive else '!='}{logql_string(label_value(v))}"
    if op == "exists":
        want = v if not negate else not v
        return f"{name}{'!=' if want else '='}\"\""
    if op in ("in", "not_in"):
        pattern = _alternation(v)
    elif op in ("prefix", "not_prefix"):
        pattern = _alternation(v) + ".*"
    elif op == "contains":
        pattern = ".*" + _alternation(v) + ".*"
    else:  # pragma: no cover - element conditions have array paths
        raise ValueError(op)
    return f"{name}{'=~' if positive else '!~'}{logql_string(pattern)}"


# -- line filters (approximations of array conditions) --------------------------------------
def _value_regex(c: Condition) -> str:
    if c.op in ("eq", "in", "not_in"):
        values = [c.value] if c.op == "eq" else list(c.value)
        alts = []
        for v in values:
            enc = re2_escape(go_json(v))
            # a number or literal must not run on into more digits
            alts.append(enc if isinstance(v, str) else enc + r"[,}\]]")
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
    if c.op in ("prefix", "not_prefix"):
        return '"(?:' + "|".join(re2_escape(go_json(v)[1:-1]) for v in c.value) + ")"
    if c.op == "contains":
        return '"[^"]*(?:' + "|".join(re2_escape(go_json(v)[1:-1]) for v in c.value) + ")"
    return ""  # exists: the key alone


def line_regex(c: Condition) -> str:
    """A regex over the raw JSON line that every event matching c (positively) matches,
    as far as the encoder's layout allows; see the module docstring."""
    segs = c.path.segments
    val = _value_regex(c)
    last = segs[-1]
    if last[0] == "each":
        key = segs[-2][1] if len(segs) >= 2 and segs[-2][0] == "key" else None
        if not val:
            return f'"{re2_escape(key)}":\\[' if key else ""
        return f'"{re2_escape(key)}":\\[(?:[^\\]]*,)?{val}' if key else val
    if last[0] == "index":
        key = segs[-2][1]
        return f'"{re2_escape(key)}":\\[' + ("(?:[^\\]]*,){%d}" % last[1] if last[1] else "") + val
    key = re2_escape(last[1])
    head = f'"{key}":{val}'
    parent = segs[-2] if len(segs) >= 2 else None
    if parent is not None and parent[0] == "key":
        # the key directly inside the parent object; one level of nested objects may come first
        return f'"{re2_escape(parent[1])}":\\{{(?:[^{{}}]|\\{{[^{{}}]*\\}})*?' + head
    return head


def condition_regexes(c: Condition) -> list[str]:
    """The line filters that approximate a positive condition (element: one per inner condition)."""
    if c.op == "element":
        return [r for inner in c.value.conditions for r in condition_regexes(inner) if r]
    r = line_regex(c)
    return [r] if r else []


@dataclass
class Compiled:
    rule: Rule
    selector: str
    query: str  # the log query: every line it returns is a match
    expr: str  # the alert expression (a metric query with a threshold)
    approximations: list[str] = field(default_factory=list)
    by: tuple[str, ...] = ()  # the labels the alert expression keeps

    @property
    def exact(self) -> bool:
        return not self.approximations


class _Builder:
    def __init__(self, rule: Rule, job: str):
        self.rule = rule
        self.selector: list[str] = [f"{F.JOB_LABEL}={logql_string(job)}"]
        self.lines: list[str] = []
        self.labels: list[str] = []
        self.extract: dict[str, str] = {}
        self.notes: list[str] = []
        self.prefilter: Optional[str] = None

    def need(self, path: Path) -> None:
        self.extract[label_name(path)] = json_expression(path)

    def selector_matcher(self, c: Condition, negate: bool) -> None:
        label = LABEL_PATHS[c.path.text]
        values = [c.value] if c.op == "eq" else list(c.value)
        positive = (c.op != "not_in") != negate
        if len(values) == 1:
            self.selector.append(f"{label}{'=' if positive else '!='}{logql_string(label_value(values[0]))}")
        else:
            self.selector.append(f"{label}{'=~' if positive else '!~'}{logql_string(_alternation(values))}")

    def top(self, c: Condition) -> None:
        if c.path.text in LABEL_PATHS:
            self.selector_matcher(c, negate=False)
        elif not c.path.has_array:
            self.need(c.path)
            self.labels.append(label_filter(c))
            if c.op == "eq" and isinstance(c.value, str) and len(c.value) >= 4 and re.fullmatch(r"[A-Za-z0-9._:/@-]+", c.value):
                if self.prefilter is None or len(c.value) > len(self.prefilter):
                    self.prefilter = c.value
        elif c.negative:
            self.notes.append(f"{c.path.text}: a negative condition on an array is not checked in LogQL (matches more)")
        else:
            for r in condition_regexes(c):
                self.lines.append(f"|~ {logql_string(r)}")
            self.notes.append(self._approx(c))

    def _approx(self, c: Condition) -> str:
        if c.op == "element":
            return f"{c.path.text}: each inner condition is a separate line filter, not checked within one element"
        return f"{c.path.text}: line filter on the raw JSON, wherever that key and value appear"

    def any_group(self, groups: tuple[Group, ...]) -> None:
        simple = all(len(g.conditions) == 1 and not g.any and not g.conditions[0].path.has_array
                     and g.conditions[0].path.text not in LABEL_PATHS for g in groups)
        if simple:
            for g in groups:
                self.need(g.conditions[0].path)
            self.labels.append("(" + " or ".join(label_filter(g.conditions[0]) for g in groups) + ")")
            return
        alts = []
        for g in groups:
            regs = [r for c in g.conditions if not c.negative for r in condition_regexes(c)]
            if len(g.conditions) > 1 or g.any:
                self.notes.append("any: a group of several conditions is approximated by its first one")
            if not regs:
                self.notes.append("any: a group without a positive condition matches everything in LogQL")
                return
            alts.append(regs[0])
        self.lines.append(f"|~ {logql_string('|'.join('(?:' + a + ')' for a in alts))}")
        self.notes.append("any: one line filter with the alternatives: " + ", ".join(c.path.text for g in groups for c in g.conditions))

    def unless_group(self, g: Group) -> None:
        conds = g.conditions
        if len(conds) == 1 and not g.any:
            c = conds[0]
            if c.path.text in LABEL_PATHS:
                self.selector_matcher(c, negate=True)
            elif not c.path.has_array:
                self.need(c.path)
                self.labels.append(label_filter(c, negate=True))
            else:
                regs = condition_regexes(c)
                if len(regs) == 1 and not c.negative:
                    self.lines.append(f"!~ {logql_string(regs[0])}")
                    self.notes.append(f"unless {c.path.text}: excluded by a line filter (may exclude more)")
                else:
                    self.notes.append(f"unless {c.path.text}: not checked in LogQL (matches more)")
            return
        if not g.any and all(not c.path.has_array and c.path.text not in LABEL_PATHS for c in conds):
            for c in conds:
                self.need(c.path)
            self.labels.append("(" + " or ".join(label_filter(c, negate=True) for c in conds) + ")")
            return
        self.notes.append("unless: a group with arrays or nested any is not checked in LogQL (matches more)")

    def build(self) -> tuple[str, str]:
        r = self.rule
        for c in r.when.conditions:
            self.top(c)
        if r.when.any:
            self.any_group(r.when.any)
        for g in r.unless:
            self.unless_group(g)
        if r.stages:
            self.selector.append(
                f"stage={logql_string(r.stages[0])}" if len(r.stages) == 1 else f"stage=~{logql_string(_alternation(r.stages))}"
            )
        if r.aggregate:
            for p in r.aggregate.by:
                self.need(p)
        else:
            for p in ALERT_BY:
                from kaudit.core.detect.model import parse_path

                self.need(parse_path(p))
        selector = "{" + ", ".join(self.selector) + "}"
        parts = [selector]
        if self.prefilter:
            parts.append(f"|= {logql_string(json.dumps(self.prefilter))}")
        parts += self.lines
        parts.append("| json " + ", ".join(f"{k}={logql_string(v)}" for k, v in sorted(self.extract.items())))
        parts += [f"| {lf}" for lf in self.labels]
        return selector, " ".join(parts)


def compile_rule(rule: Rule, *, job: str = F.DEFAULT_JOB, cluster: Optional[str] = None) -> Compiled:
    """The rule as LogQL; with ``cluster``, only that cluster's streams (the label every
    collector sets, kaudit up --cluster-name), as kaudit query --cluster selects them."""
    b = _Builder(rule, job)
    if cluster is not None:
        F.check_cluster_name(cluster)
        b.selector.insert(1, f"{F.CLUSTER_LABEL}={logql_string(cluster)}")
    selector, query = b.build()
    notes = list(dict.fromkeys(b.notes))
    if rule.aggregate:
        by = tuple(label_name(p) for p in rule.aggregate.by)
        expr = (f"sum by ({', '.join(by)}) (count_over_time({query} [{rule.aggregate.window}]))"
                f" >= {rule.aggregate.threshold}")
        notes.append("LogQL counts log lines; a request logged at two stages counts twice (Python counts auditIDs)")
    else:
        from kaudit.core.detect.model import parse_path

        by = tuple(label_name(parse_path(p)) for p in ALERT_BY)
        expr = f"sum by ({', '.join(by)}) (count_over_time({query} [{ALERT_RANGE}])) > 0"
    return Compiled(rule, selector, query, expr, notes, by)


# -- ruler files ------------------------------------------------------------------------------
def _alert_name(rule: Rule) -> str:
    return "KauditDetect_" + "".join(p.capitalize() for p in rule.id.split("-"))


def alerting_rule(c: Compiled) -> dict:
    r = c.rule
    if r.aggregate:
        who = " ".join(f"{{{{ $labels.{b} }}}}" for b in c.by)
        summary = f"{r.title}: {who} ({{{{ $value }}}} in {r.aggregate.window})"
    else:
        summary = f"{r.title}: {{{{ $labels.user_username }}}} on {{{{ $labels.objectRef_namespace }}}}/{{{{ $labels.objectRef_name }}}}"
    annotations = {
        "summary": summary,
        "description": r.description,
        "runbook": r.runbook,
        "false_positives": r.false_positives,
        "audit_level": f"needs audit level {r.level}" + (f", stages {', '.join(r.stages)}" if r.stages else ""),
    }
    if c.approximations:
        annotations["logql_approximation"] = "; ".join(c.approximations) + (f". {r.logql_note}" if r.logql_note else "")
    return {
        "alert": _alert_name(r),
        "expr": c.expr,
        "labels": {"severity": r.severity, "kaudit_rule": r.id, "mitre_technique": r.mitre},
        "annotations": annotations,
    }


def rule_groups(rules: Iterable[Rule], *, job: str = F.DEFAULT_JOB, group: str = "kaudit-detect",
                cluster: Optional[str] = None) -> dict:
    """The Prometheus rule-group document the Loki ruler reads from local storage (with
    ``cluster``: the rules of one cluster, for a Loki that several clusters ship to)."""
    return {
        "groups": [
            {
                "name": group,
                "interval": EVAL_INTERVAL,
                "rules": [alerting_rule(compile_rule(r, job=job, cluster=cluster)) for r in rules],
            }
        ]
    }

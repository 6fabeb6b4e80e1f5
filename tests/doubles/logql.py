"""A small LogQL evaluator for tests: the subset kaudit's detect compiler emits, with Loki's semantics.

Written from Loki's documented behaviour (LogQL docs: log queries, parsers, label filter
expressions, metric queries), independently of kaudit's compiler, so a test that runs a
compiled query here checks the compiler against LogQL, not against itself:

* stream selector ``{a="x", b=~"re", c!="y", d!~"re"}`` (regexes fully anchored, RE2 syntax);
* line filters ``|=``, ``!=``, ``|~``, ``!~`` (regexes unanchored) over the raw line;
* ``| json`` (every scalar, nested keys joined by ``_``, arrays skipped) and
  ``| json a="x.y", b="arr[0]", c="m[\\"k.with.dots\\"]"`` (only those expressions;
  objects and arrays become their JSON text);
* label filter expressions with ``=``, ``!=``, ``=~``, ``!~`` on strings, ``and``/``or``
  and parentheses; a missing label compares as "";
* extracted labels that clash with stream labels get the ``_extracted`` suffix;
* ``sum by (l1, l2) (count_over_time(<log query> [5m])) <op> N`` evaluated at an instant
  (lines with start < ts <= t), and over a range of steps (a matrix).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

NS = 1_000_000_000
_STR = r'"(?:[^"\\]|\\.)*"|`[^`]*`'
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


class LogQLError(ValueError):
    pass


def unquote(tok: str) -> str:
    return tok[1:-1] if tok.startswith("`") else json.loads(tok)


def _cmp(op: str, have: Optional[str], want: str) -> bool:
    have = "" if have is None else have
    if op in ("=", "=="):
        return have == want
    if op == "!=":
        return have != want
    if op == "=~":
        return re.fullmatch(want, have, re.S) is not None
    if op == "!~":
        return re.fullmatch(want, have, re.S) is None
    raise LogQLError(f"unsupported operator {op}")


# -- json -------------------------------------------------------------------------------
_SANITIZE = re.compile(r"[^A-Za-z0-9_]")


def _render(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return ""
    if isinstance(v, (int, float)):
        return json.dumps(v)
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def flatten(obj: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in obj.items():
        key = _SANITIZE.sub("_", f"{prefix}_{k}" if prefix else k)
        if isinstance(v, dict):
            out.update(flatten(v, key))
        elif isinstance(v, list):
            continue
        else:
            out[key] = _render(v)
    return out


_EXPR_TOKEN = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


def json_path(expr: str) -> list:
    out, pos = [], 0
    while pos < len(expr):
        m = _EXPR_TOKEN.match(expr, pos)
        if not m:
            raise LogQLError(f"invalid json expression {expr!r}")
        if m.group(1) is not None:
            out.append(m.group(1))
        elif m.group(2) is not None:
            out.append(int(m.group(2)))
        else:
            out.append(json.loads(m.group(3)))
        pos = m.end()
    return out


def json_lookup(obj: Any, path: list) -> Any:
    cur = obj
    for p in path:
        if isinstance(p, int):
            if not isinstance(cur, list) or p >= len(cur):
                return None
            cur = cur[p]
        else:
            if not isinstance(cur, dict) or p not in cur:
                return None
            cur = cur[p]
    return cur


# -- label filter expressions ----------------------------------------------------------------
_TOKENS = re.compile(rf"\s*(?:(\()|(\))|(and\b|or\b)|({_NAME})\s*(=~|!~|!=|==|=)\s*({_STR}))")


def _parse_label_expr(s: str, pos: int):
    """Parse `a="x" or (b=~"y" and c!="z")` from pos; returns (node, pos)."""

    def primary(p):
        m = _TOKENS.match(s, p)
        if not m:
            raise LogQLError(f"label filter expected at col {p + 1}")
        if m.group(1):
            node, p2 = disj(m.end())
            m2 = _TOKENS.match(s, p2)
            if not m2 or not m2.group(2):
                raise LogQLError(f"missing ) at col {p2 + 1}")
            return node, m2.end()
        if m.group(4):
            return ("cmp", m.group(4), m.group(5), unquote(m.group(6))), m.end()
        raise LogQLError(f"unexpected token at col {p + 1}")

    def conj(p):
        node, p = primary(p)
        while True:
            m = _TOKENS.match(s, p)
            if m and m.group(3) == "and":
                rhs, p = primary(m.end())
                node = ("and", node, rhs)
            else:
                return node, p

    def disj(p):
        node, p = conj(p)
        while True:
            m = _TOKENS.match(s, p)
            if m and m.group(3) == "or":
                rhs, p = conj(m.end())
                node = ("or", node, rhs)
            else:
                return node, p

    return disj(pos)


def _eval_label_expr(node, labels: dict[str, str]) -> bool:
    if node[0] == "cmp":
        return _cmp(node[2], labels.get(node[1]), node[3])
    if node[0] == "and":
        return _eval_label_expr(node[1], labels) and _eval_label_expr(node[2], labels)
    return _eval_label_expr(node[1], labels) or _eval_label_expr(node[2], labels)


# -- log queries ------------------------------------------------------------------------------
_MATCHER = re.compile(rf"\s*({_NAME})\s*(=~|!~|!=|=)\s*({_STR})\s*(,|\}})")
_LINE = re.compile(rf"\s*(\|=|!=|\|~|!~)\s*({_STR})")
_JSON = re.compile(r"\s*\|\s*json\b")
_JSON_PARAM = re.compile(rf"\s*({_NAME})\s*=\s*({_STR})\s*(,?)")
_PIPE = re.compile(r"\s*\|")


@dataclass
class LogQuery:
    matchers: list[tuple[str, str, str]]
    stages: list[tuple] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str, pos: int = 0, stop: Optional[str] = None) -> tuple["LogQuery", int]:
        s = text
        while pos < len(s) and s[pos].isspace():
            pos += 1
        if not s.startswith("{", pos):
            raise LogQLError(f"expected {{ at col {pos + 1}")
        pos += 1
        matchers = []
        while True:
            m = _MATCHER.match(s, pos)
            if not m:
                raise LogQLError(f"bad stream selector at col {pos + 1}")
            matchers.append((m.group(1), m.group(2), unquote(m.group(3))))
            pos = m.end()
            if m.group(4) == "}":
                break
        q = cls(matchers)
        while pos < len(s):
            rest = s[pos:]
            if not rest.strip() or (stop and rest.lstrip().startswith(stop)):
                break
            m = _LINE.match(s, pos)
            if m:
                q.stages.append(("line", m.group(1), unquote(m.group(2))))
                pos = m.end()
                continue
            m = _JSON.match(s, pos)
            if m:
                pos = m.end()
                params = []
                while True:
                    pm = _JSON_PARAM.match(s, pos)
                    if not pm:
                        break
                    params.append((pm.group(1), json_path(unquote(pm.group(2)))))
                    pos = pm.end()
                    if not pm.group(3):
                        break
                q.stages.append(("json", params))
                continue
            m = _PIPE.match(s, pos)
            if m:
                node, pos = _parse_label_expr(s, m.end())
                q.stages.append(("labels", node))
                continue
            raise LogQLError(f"unexpected {s[pos:pos + 12]!r} at col {pos + 1}")
        return q, pos

    @classmethod
    def of(cls, text: str) -> "LogQuery":
        q, pos = cls.parse(text)
        if text[pos:].strip():
            raise LogQLError(f"trailing text {text[pos:]!r}")
        return q

    def selects(self, labels: dict[str, str]) -> bool:
        return all(_cmp(op, labels.get(n), v) for n, op, v in self.matchers)

    def run(self, labels: dict[str, str], line: str) -> Optional[dict[str, str]]:
        out = dict(labels)
        for st in self.stages:
            if st[0] == "line":
                _, op, v = st
                if op == "|=":
                    ok = v in line
                elif op == "!=":
                    ok = v not in line
                else:
                    found = re.search(v, line) is not None
                    ok = found if op == "|~" else not found
                if not ok:
                    return None
            elif st[0] == "json":
                try:
                    obj = json.loads(line)
                except ValueError:
                    out["__error__"] = "JSONParserErr"
                    continue
                if st[1]:
                    extracted = {}
                    for name, path in st[1]:
                        v = json_lookup(obj, path)
                        if v is not None:
                            extracted[name] = _render(v)
                else:
                    extracted = flatten(obj) if isinstance(obj, dict) else {}
                for k, v in extracted.items():
                    out[k + "_extracted" if k in labels else k] = v
            elif not _eval_label_expr(st[1], out):
                return None
        return out


# -- metric queries ----------------------------------------------------------------------------
_METRIC_HEAD = re.compile(r"\s*sum\s+by\s*\(([^)]*)\)\s*\(\s*count_over_time\s*\(")
_RANGE = re.compile(r"\s*\[(\d+)([smh])\]\s*\)\s*\)\s*(>=|>|==|<=|<)?\s*(\d+(?:\.\d+)?)?\s*$")


@dataclass
class MetricQuery:
    by: tuple[str, ...]
    inner: LogQuery
    range_ns: int
    op: Optional[str]
    threshold: Optional[float]

    @classmethod
    def of(cls, text: str) -> "MetricQuery":
        m = _METRIC_HEAD.match(text)
        if not m:
            raise LogQLError("only sum by (...) (count_over_time(...)) is supported")
        by = tuple(b.strip() for b in m.group(1).split(",") if b.strip())
        inner, pos = LogQuery.parse(text, m.end(), stop="[")
        r = _RANGE.match(text, pos)
        if not r:
            raise LogQLError(f"bad range or comparison at col {pos + 1}")
        unit = {"s": 1, "m": 60, "h": 3600}[r.group(2)]
        return cls(by, inner, int(r.group(1)) * unit * NS, r.group(3), float(r.group(4)) if r.group(4) else None)

    def matches(self, entries: Iterable[tuple[int, dict, str]]) -> list[tuple[int, dict]]:
        """(ts, result labels) of every line the inner query keeps."""
        out = []
        for ts, labels, line in entries:
            if self.inner.selects(labels):
                r = self.inner.run(labels, line)
                if r is not None and "__error__" not in r:
                    out.append((ts, r))
        return out

    def _keep(self, v: float) -> bool:
        if self.op is None:
            return True
        t = self.threshold
        return {">=": v >= t, ">": v > t, "==": v == t, "<=": v <= t, "<": v < t}[self.op]

    def instant(self, matched: list[tuple[int, dict]], at_ns: int) -> dict[tuple, float]:
        sums: dict[tuple, float] = {}
        for ts, labels in matched:
            if at_ns - self.range_ns < ts <= at_ns:
                key = tuple((b, labels.get(b, "")) for b in self.by)
                sums[key] = sums.get(key, 0) + 1
        return {k: v for k, v in sums.items() if self._keep(v)}

    def matrix(self, entries, start_ns: int, end_ns: int, step_ns: int) -> list[dict]:
        matched = self.matches(entries)
        series: dict[tuple, list] = {}
        t = start_ns
        while t <= end_ns:
            for key, v in self.instant(matched, t).items():
                series.setdefault(key, []).append([t / NS, str(int(v) if v == int(v) else v)])
            t += step_ns
        return [{"metric": {k: v for k, v in key if v != ""}, "values": vals} for key, vals in series.items()]

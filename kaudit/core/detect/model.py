"""The detection rule model: one schema for the packaged rule pack and for users' own rules.

A rule file is YAML with a top-level ``rules:`` list. Each rule::

    id: pod-exec                      # [a-z0-9-], unique
    title: Shell or command run in a pod
    severity: high                    # low | medium | high | critical
    mitre: T1609                      # ATT&CK for Containers technique id
    level: Metadata                   # the audit level the rule needs at least
    stages: [ResponseStarted, ResponseComplete]   # optional: stages the rule reads
    description: ...
    runbook: ...                      # what a responder checks
    false_positives: ...
    when: {GROUP}                     # what must hold
    unless: [{GROUP}, ...]            # optional: any group that holds excludes the event
    aggregate: {by: [PATH...], window: 5m, threshold: 10}   # optional: a windowed count

A GROUP maps PATH -> MATCHER (all must hold) and may hold ``any: [GROUP, ...]`` (one
must hold). A PATH is dotted (``objectRef.resource``); ``[]`` fans out over an array
(``requestObject.spec.containers[].securityContext.privileged``), ``[0]`` takes one
element, and a key with dots is quoted (``annotations."authorization.k8s.io/decision"``).
A MATCHER is a scalar (equal, type and all), a list (one of), or a one-key mapping:
in, not_in, prefix, not_prefix, contains, exists, element (a GROUP each array element
is matched against, for conditions that must hold in the same element).

Errors name the file, the line and the field: ``rules.yaml:12: rule pod-exec: when.verb: ...``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

from kaudit.core.errors import KauditError

SEVERITIES = ("low", "medium", "high", "critical")
LEVELS = ("Metadata", "Request", "RequestResponse")
STAGES = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")
OPS = ("in", "not_in", "prefix", "not_prefix", "contains", "exists", "element")
NEGATIVE_OPS = ("not_in", "not_prefix")
#: top-level fields of a rule; the first group is required
REQUIRED = ("id", "title", "severity", "mitre", "level", "description", "runbook", "false_positives", "when")
OPTIONAL = ("stages", "unless", "aggregate", "logql_note")
#: fields that are stream labels on every collector (kaudit.shipper.fields.DEFAULT_LABELS)
LABEL_PATHS = {"verb": "verb", "stage": "stage", "level": "audit_level"}

_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
_MITRE = re.compile(r"^T\d{4}(\.\d{3})?$")
_WINDOW = re.compile(r"^(\d+)(s|m|h)$")
_SEGMENT = re.compile(r'"([^"]+)"|([A-Za-z0-9_$-]+)|\[\]|\[(\d+)\]')


class RuleError(KauditError):
    """A rule file that does not follow the schema."""

    def __init__(self, message: str, hint: Optional[str] = None):
        super().__init__(message, hint or "fix the rule; docs/detect.md describes the schema (kaudit detect --list shows the packaged rules)")


# -- paths ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Path:
    """A parsed field path: segments are ("key", name) | ("each",) | ("index", n)."""

    text: str
    segments: tuple[tuple, ...]

    @property
    def has_array(self) -> bool:
        return any(s[0] != "key" for s in self.segments)

    @property
    def fans_out(self) -> bool:
        return any(s[0] == "each" for s in self.segments)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(s[1] for s in self.segments if s[0] == "key")


def parse_path(text: str) -> Path:
    """Parse a dotted path; ValueError says what is wrong with it."""
    if not isinstance(text, str) or not text:
        raise ValueError("a field path must be a non-empty string")
    segments: list[tuple] = []
    pos = 0
    expect_key = True
    while pos < len(text):
        if text[pos] == ".":
            if expect_key:
                raise ValueError(f"path {text!r}: empty segment at column {pos + 1}")
            expect_key = True
            pos += 1
            continue
        m = _SEGMENT.match(text, pos)
        if not m:
            raise ValueError(f"path {text!r}: unexpected {text[pos]!r} at column {pos + 1}")
        tok = m.group(0)
        if tok == "[]":
            if not segments:
                raise ValueError(f"path {text!r}: [] must follow a key")
            segments.append(("each",))
        elif m.group(3) is not None:
            if not segments:
                raise ValueError(f"path {text!r}: [n] must follow a key")
            segments.append(("index", int(m.group(3))))
        else:
            if not expect_key:
                raise ValueError(f"path {text!r}: missing '.' before column {pos + 1}")
            segments.append(("key", m.group(1) or m.group(2)))
        expect_key = False
        pos = m.end()
    if expect_key:
        raise ValueError(f"path {text!r}: ends with '.'")
    return Path(text, tuple(segments))


# -- conditions ----------------------------------------------------------------------
@dataclass(frozen=True)
class Condition:
    path: Path
    op: str  # "eq" | one of OPS
    value: Any  # scalar, tuple of scalars, bool (exists) or Group (element)

    @property
    def negative(self) -> bool:
        return self.op in NEGATIVE_OPS or (self.op == "exists" and self.value is False)


@dataclass(frozen=True)
class Group:
    conditions: tuple[Condition, ...] = ()
    any: tuple["Group", ...] = ()

    def walk(self):
        for c in self.conditions:
            yield c
            if c.op == "element":
                yield from c.value.walk()
        for g in self.any:
            yield from g.walk()


@dataclass(frozen=True)
class Aggregate:
    by: tuple[Path, ...]
    window_s: int
    window: str
    threshold: int


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    severity: str
    mitre: str
    level: str
    description: str
    runbook: str
    false_positives: str
    when: Group
    unless: tuple[Group, ...] = ()
    stages: tuple[str, ...] = ()
    aggregate: Optional[Aggregate] = None
    logql_note: str = ""
    source: str = ""  # file:line the rule was read from

    def conditions(self):
        yield from self.when.walk()
        for g in self.unless:
            yield from g.walk()

    @property
    def uses_arrays(self) -> bool:
        return any(c.path.has_array for c in self.conditions())


# -- loading -------------------------------------------------------------------------
def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _plain(v: Any) -> Any:
    """ruamel's round-trip scalars (ScalarInt, ScalarFloat, ...) as plain Python values,
    so matching is by value and type, not by subclass."""
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    return str(v)


class _Loader:
    def __init__(self, source: str):
        self.source = source

    def where(self, node: Any, key: Any = None) -> str:
        lc = getattr(node, "lc", None)
        if lc is not None:
            try:
                if key is not None:
                    line, _ = lc.key(key) if isinstance(node, dict) else lc.item(key)
                else:
                    line = lc.line
                return f"{self.source}:{line + 1}"
            except (KeyError, TypeError, IndexError, AttributeError):
                pass
        return self.source

    def fail(self, node: Any, key: Any, rule_id: str, fld: str, message: str) -> RuleError:
        who = f"rule {rule_id}: " if rule_id else ""
        return RuleError(f"{self.where(node, key)}: {who}{fld}: {message}")

    def matcher(self, node: Any, key: Any, rid: str, fld: str, path: Path, raw: Any) -> Condition:
        if isinstance(raw, list):
            if not raw or not all(_scalar(v) for v in raw):
                raise self.fail(node, key, rid, fld, "a list means 'one of' and must hold scalars")
            return Condition(path, "in", tuple(_plain(v) for v in raw))
        if isinstance(raw, dict):
            if len(raw) != 1:
                raise self.fail(node, key, rid, fld, f"an operator mapping has exactly one key, one of {', '.join(OPS)}")
            op, arg = next(iter(raw.items()))
            if op not in OPS:
                raise self.fail(node, key, rid, fld, f"unknown operator {op!r}; use one of {', '.join(OPS)}")
            sub = f"{fld}.{op}"
            if op == "exists":
                if not isinstance(arg, bool):
                    raise self.fail(raw, op, rid, sub, "exists takes true or false")
                return Condition(path, op, arg)
            if op == "element":
                if not path.segments or path.segments[-1][0] != "each":
                    raise self.fail(raw, op, rid, sub, "element needs a path ending in [] (the array whose elements it matches)")
                if not isinstance(arg, dict):
                    raise self.fail(raw, op, rid, sub, "element takes a group (a mapping of path: matcher)")
                return Condition(path, op, self.group(arg, rid, sub))
            values = arg if isinstance(arg, list) else [arg]
            if not values or not all(_scalar(v) for v in values):
                raise self.fail(raw, op, rid, sub, "takes a scalar or a list of scalars")
            if op in ("prefix", "not_prefix", "contains") and not all(isinstance(v, str) for v in values):
                raise self.fail(raw, op, rid, sub, f"{op} compares strings; quote the value")
            return Condition(path, op, tuple(_plain(v) for v in values))
        if raw is None:
            raise self.fail(node, key, rid, fld, "no value given (null); to match a missing field use {exists: false}")
        if _scalar(raw):
            return Condition(path, "eq", _plain(raw))
        raise self.fail(node, key, rid, fld, f"unsupported matcher {raw!r}")

    def group(self, node: Any, rid: str, fld: str) -> Group:
        if not isinstance(node, dict) or not node:
            raise RuleError(f"{self.where(node)}: rule {rid}: {fld}: must be a non-empty mapping of field path: matcher")
        conds: list[Condition] = []
        anys: list[Group] = []
        for key, raw in node.items():
            if key == "any":
                if not isinstance(raw, list) or len(raw) < 2:
                    raise self.fail(node, key, rid, f"{fld}.any", "takes a list of at least two groups")
                anys.extend(self.group(g, rid, f"{fld}.any[{i}]") for i, g in enumerate(raw))
                continue
            try:
                path = parse_path(key)
            except ValueError as e:
                raise self.fail(node, key, rid, f"{fld}.{key}", str(e)) from None
            conds.append(self.matcher(node, key, rid, f"{fld}.{key}", path, raw))
        return Group(tuple(conds), tuple(anys))

    def rule(self, node: Any, index: int) -> Rule:
        if not isinstance(node, dict):
            raise RuleError(f"{self.where(node)}: rules[{index}]: each rule is a mapping")
        rid = node.get("id")
        if not isinstance(rid, str) or not _ID.match(rid):
            raise self.fail(node, "id" if "id" in node else None, "", f"rules[{index}].id", f"{rid!r} is not an id: use 2-63 of a-z, 0-9 and '-'")
        unknown = [k for k in node if k not in REQUIRED + OPTIONAL]
        if unknown:
            raise self.fail(node, unknown[0], rid, unknown[0], f"unknown field; rule fields are {', '.join(REQUIRED + OPTIONAL)}")
        for k in REQUIRED:
            if k not in node:
                raise self.fail(node, None, rid, k, "missing (every rule needs " + ", ".join(REQUIRED) + ")")
        for k in ("title", "description", "runbook", "false_positives"):
            if not isinstance(node[k], str) or not node[k].strip():
                raise self.fail(node, k, rid, k, "must be non-empty text")
        if node["severity"] not in SEVERITIES:
            raise self.fail(node, "severity", rid, "severity", f"{node['severity']!r}: use one of {', '.join(SEVERITIES)}")
        if not isinstance(node["mitre"], str) or not _MITRE.match(node["mitre"]):
            raise self.fail(node, "mitre", rid, "mitre", f"{node['mitre']!r} is not an ATT&CK technique id like T1609 or T1053.007")
        if node["level"] not in LEVELS:
            raise self.fail(node, "level", rid, "level", f"{node['level']!r}: use one of {', '.join(LEVELS)} (the audit level the rule needs)")
        stages = node.get("stages") or []
        if not isinstance(stages, list) or any(s not in STAGES for s in stages):
            raise self.fail(node, "stages", rid, "stages", f"a list of {', '.join(STAGES)}")
        when = self.group(node["when"], rid, "when")
        unless_raw = node.get("unless") or []
        if not isinstance(unless_raw, list):
            raise self.fail(node, "unless", rid, "unless", "a list of groups; any group that holds excludes the event")
        unless = tuple(self.group(g, rid, f"unless[{i}]") for i, g in enumerate(unless_raw))
        agg = None
        if "aggregate" in node:
            agg = self.aggregate(node["aggregate"], rid)
        rule = Rule(
            id=rid, title=node["title"].strip(), severity=node["severity"], mitre=node["mitre"], level=node["level"],
            description=node["description"].strip(), runbook=node["runbook"].strip(),
            false_positives=node["false_positives"].strip(), when=when, unless=unless, stages=tuple(stages),
            aggregate=agg, logql_note=str(node.get("logql_note") or "").strip(), source=self.where(node),
        )
        self.check_labels(node, rule)
        return rule

    def aggregate(self, node: Any, rid: str) -> Aggregate:
        if not isinstance(node, dict) or set(node) != {"by", "window", "threshold"}:
            raise self.fail(node, None, rid, "aggregate", "takes exactly by (paths), window (e.g. 5m) and threshold (a count)")
        by = node["by"] if isinstance(node["by"], list) else [node["by"]]
        paths = []
        for p in by:
            try:
                path = parse_path(p)
            except ValueError as e:
                raise self.fail(node, "by", rid, "aggregate.by", str(e)) from None
            if path.fans_out:
                raise self.fail(node, "by", rid, "aggregate.by", f"{p}: group by one value ([0]), not a whole array ([])")
            paths.append(path)
        m = _WINDOW.match(str(node["window"]))
        if not m or int(m.group(1)) == 0:
            raise self.fail(node, "window", rid, "aggregate.window", f"{node['window']!r}: write it like 30s, 5m or 1h")
        seconds = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]
        t = node["threshold"]
        if not isinstance(t, int) or isinstance(t, bool) or t < 2:
            raise self.fail(node, "threshold", rid, "aggregate.threshold", "a whole number of events, at least 2")
        return Aggregate(tuple(paths), seconds, str(node["window"]), int(t))

    def check_labels(self, node: Any, rule: Rule) -> None:
        """verb/stage/level are stream labels in Loki: matched only at the top of `when`
        (the stream selector) or as a one-condition `unless` group."""
        top = {c for c in rule.when.conditions}
        for i, g in enumerate(rule.unless):
            if len(g.conditions) == 1 and not g.any:
                top.add(g.conditions[0])
        for c in rule.conditions():
            if c.path.text in LABEL_PATHS and (c not in top or c.op not in ("eq", "in", "not_in")):
                raise self.fail(node, "when", rule.id, c.path.text,
                                "is a Loki stream label: match it with a value or a list at the top of when, or alone in an unless group")


def load_rules(text: str, source: str) -> list[Rule]:
    """Rules from one YAML document; RuleError names file, line and field."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError

    try:
        doc = YAML(typ="rt", pure=True).load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark
        at = f":{mark.line + 1}" if mark else ""
        raise RuleError(f"{source}{at}: not valid YAML: {e.problem}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise RuleError(f"{source}: a rule file is a mapping with a 'rules:' list")
    loader = _Loader(source)
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for i, node in enumerate(doc["rules"]):
        rule = loader.rule(node, i)
        if rule.id in seen:
            raise RuleError(f"{rule.source}: rule {rule.id}: id: already defined at {seen[rule.id]}")
        seen[rule.id] = rule.source
        rules.append(rule)
    return rules


@dataclass
class RuleSet:
    rules: list[Rule] = field(default_factory=list)

    def by_id(self) -> dict[str, Rule]:
        return {r.id: r for r in self.rules}


def packaged_rule_files() -> list[tuple[str, str]]:
    """(name, text) of the rule pack shipped in kaudit/core/detect/rules/."""
    from pathlib import Path

    root = Path(__file__).with_name("rules")
    if not root.is_dir():  # installed inside a zip: only importlib.resources can read it
        from importlib import resources

        root = resources.files("kaudit.core.detect") / "rules"  # type: ignore[assignment]
    return [(f"kaudit/core/detect/rules/{p.name}", p.read_text(encoding="utf-8"))
            for p in sorted(root.iterdir(), key=lambda p: p.name) if p.name.endswith(".yaml")]


def rule_documents(text: str, source: str) -> list[tuple[int, Any]]:
    """(line, plain rule mapping) for each rule of a valid file: what the rule cache keeps."""
    from ruamel.yaml import YAML

    load_rules(text, source)  # validates, with lines in the errors
    doc = YAML(typ="rt", pure=True).load(text)

    def plain(node):
        if isinstance(node, dict):
            return {str(k): plain(v) for k, v in node.items()}
        if isinstance(node, list):
            return [plain(v) for v in node]
        return node

    return [(node.lc.line + 1, plain(node)) for node in doc["rules"]]


def rules_from_documents(docs: list[tuple[int, Any]], source: str) -> list[Rule]:
    """Rules from rule_documents' output (already validated once): no YAML parsing."""
    import dataclasses

    loader = _Loader(source)
    return [dataclasses.replace(loader.rule(node, i), source=f"{source}:{line}") for i, (line, node) in enumerate(docs)]


def rule_pack(extra: tuple[tuple[str, str], ...] = (), disable: tuple[str, ...] = (),
              packaged: Optional[list[Rule]] = None) -> list[Rule]:
    """The packaged rules (or `packaged`, e.g. from the rule cache) plus users' rule files
    (name, text), minus disabled ids. A user rule with a packaged id replaces it; an
    unknown --disable id is an error."""
    rules: dict[str, Rule] = {}
    if packaged is None:
        packaged = [r for name, text in packaged_rule_files() for r in load_rules(text, name)]
    for r in packaged:
        rules[r.id] = r
    for name, text in extra:
        for r in load_rules(text, name):
            rules[r.id] = r
    unknown = [d for d in disable if d not in rules]
    if unknown:
        raise RuleError(f"--disable: no rule with id {', '.join(unknown)}", "kaudit detect --list shows the rule ids")
    return [r for r in rules.values() if r.id not in set(disable)]

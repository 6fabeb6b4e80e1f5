"""Small, independent readers of what kaudit renders, for the render tests.

- go_tpl: Go text/template as Helm's `tpl` runs it, for plain text and string-literal
  actions only; any other action (a `{{` that is not one of kaudit's escapes) raises.
- AlloyParser: a recursive-descent parser of the Alloy syntax subset kaudit emits
  (blocks with labels, attributes, strings, lists, objects with quoted keys, dotted
  references, function calls). Unbalanced blocks or bare object keys fail.
- run_pipeline: what a Promtail/Alloy json -> labels -> structured_metadata ->
  timestamp pipeline extracts from one event, given the stage definitions read back
  from the rendered text (JMESPath subset: dotted names and quoted identifiers).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional

# -- Go text/template subset ------------------------------------------------------

_GO_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "r": "\r", "'": "'"}


def go_tpl(text: str) -> str:
    out = []
    i = 0
    while True:
        j = text.find("{{", i)
        if j < 0:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:j])
        k = j + 2
        if text.startswith("- ", k) or text.startswith("/*", k):
            raise ValueError(f"unsupported action at {j}: trim marker or comment")
        while k < len(text) and text[k] == " ":
            k += 1
        if k >= len(text) or text[k] != '"':
            raise ValueError(f"unsupported action at {j}: {text[j:j + 20]!r}")
        k += 1
        value = []
        while True:
            if k >= len(text):
                raise ValueError("unterminated string in action")
            c = text[k]
            if c == "\\":
                value.append(_GO_ESCAPES[text[k + 1]])
                k += 2
                continue
            if c == '"':
                k += 1
                break
            if c == "\n":
                raise ValueError("newline in string in action")
            value.append(c)
            k += 1
        while k < len(text) and text[k] == " ":
            k += 1
        if text.startswith("-}}", k) or not text.startswith("}}", k):
            raise ValueError(f"unsupported action end at {k}: {text[k:k + 10]!r}")
        out.append("".join(value))
        i = k + 2


# -- Alloy subset ------------------------------------------------------------------

_TOKEN = re.compile(
    r'(?P<ws>\s+)|(?P<comment>//[^\n]*|/\*.*?\*/)|(?P<string>"(?:[^"\\\n]|\\.)*")|(?P<raw>`[^`]*`)'
    r"|(?P<number>-?\d+(?:\.\d+)?)|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[{}\[\]()=,.])",
    re.S,
)


@dataclass
class Block:
    name: str
    label: Optional[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    blocks: list["Block"] = field(default_factory=list)

    def all(self, name: str) -> list["Block"]:
        return [b for b in self.blocks if b.name == name]

    def one(self, name: str) -> "Block":
        found = self.all(name)
        assert len(found) == 1, f"expected one {name} block, found {len(found)}"
        return found[0]


@dataclass(frozen=True)
class Ref:
    """A bare reference or call, kept as text: loki.process.x.receiver, sys.env("HOSTNAME")."""

    text: str


class AlloySyntaxError(ValueError):
    pass


class AlloyParser:
    def __init__(self, text: str):
        self.tokens: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m:
                raise AlloySyntaxError(f"unexpected character {text[pos]!r} at offset {pos}")
            kind = m.lastgroup
            if kind not in ("ws", "comment"):
                self.tokens.append((kind, m.group(), pos))
            pos = m.end()
        self.i = 0

    def peek(self, n: int = 0) -> tuple[str, str, int]:
        if self.i + n < len(self.tokens):
            return self.tokens[self.i + n]
        return ("eof", "", -1)

    def take(self, kind: str | None = None, value: str | None = None) -> str:
        k, v, p = self.peek()
        if (kind and k != kind) or (value is not None and v != value):
            raise AlloySyntaxError(f"expected {value or kind}, found {v or k!r} at offset {p}")
        self.i += 1
        return v

    def parse(self) -> Block:
        root = Block("<root>", None)
        self.body(root, top=True)
        return root

    def body(self, block: Block, top: bool = False) -> None:
        while True:
            k, v, p = self.peek()
            if k == "eof":
                if not top:
                    raise AlloySyntaxError(f"unclosed block {block.name}")
                return
            if v == "}":
                if top:
                    raise AlloySyntaxError(f"unbalanced '}}' at offset {p}")
                return
            name = self.dotted()
            k, v, p = self.peek()
            if v == "=":
                self.take(value="=")
                if name in block.attrs:
                    raise AlloySyntaxError(f"attribute {name} set twice")
                block.attrs[name] = self.expr()
            else:
                label = None
                if k == "string":
                    label = json.loads(self.take("string"))
                child = Block(name, label)
                self.take(value="{")
                self.body(child)
                self.take(value="}")
                block.blocks.append(child)

    def dotted(self) -> str:
        parts = [self.take("ident")]
        while self.peek()[1] == ".":
            self.take(value=".")
            parts.append(self.take("ident"))
        return ".".join(parts)

    def expr(self) -> Any:
        k, v, p = self.peek()
        if k == "string":
            return json.loads(self.take("string"))
        if k == "raw":
            return self.take("raw")[1:-1]
        if k == "number":
            return float(self.take("number"))
        if v == "[":
            self.take(value="[")
            items = []
            while self.peek()[1] != "]":
                items.append(self.expr())
                if self.peek()[1] == ",":
                    self.take(value=",")
                elif self.peek()[1] != "]":
                    raise AlloySyntaxError(f"expected , or ] at offset {self.peek()[2]}")
            self.take(value="]")
            return items
        if v == "{":
            self.take(value="{")
            obj = {}
            while self.peek()[1] != "}":
                kk, kv, kp = self.peek()
                if kk != "string":
                    raise AlloySyntaxError(f"object key {kv!r} at offset {kp} is not a quoted string")
                key = json.loads(self.take("string"))
                self.take(value="=")
                if key in obj:
                    raise AlloySyntaxError(f"duplicate object key {key!r}")
                obj[key] = self.expr()
                if self.peek()[1] == ",":
                    self.take(value=",")
                elif self.peek()[1] != "}":
                    raise AlloySyntaxError(f"expected , or }} at offset {self.peek()[2]}")
            self.take(value="}")
            return obj
        if k == "ident":
            name = self.dotted()
            if self.peek()[1] == "(":
                self.take(value="(")
                args = []
                while self.peek()[1] != ")":
                    args.append(self.expr())
                    if self.peek()[1] == ",":
                        self.take(value=",")
                self.take(value=")")
                return Ref(f"{name}({', '.join(json.dumps(a) for a in args)})")
            if name in ("true", "false"):
                return name == "true"
            return Ref(name)
        raise AlloySyntaxError(f"unexpected {v or k!r} at offset {p}")


def parse_alloy(text: str) -> Block:
    return AlloyParser(text).parse()


# -- pipelines -----------------------------------------------------------------------


@dataclass
class PipelineDef:
    """Stages read back from a rendered config, tool-neutral."""

    path: str
    static: dict[str, str]
    json_stages: list[tuple[Optional[str], dict[str, str]]]
    labels: list[str]
    structured_metadata: list[str]
    ts_sources: list[str]
    ts_format: str
    drop: list[str]
    push_url: str
    tenant: Optional[str] = None


def jmespath_keys(expr: str) -> list[str]:
    """Split the JMESPath subset Promtail/Alloy json stages use: a.b."c.d/e"."""
    keys = []
    i = 0
    while i < len(expr):
        if expr[i] == '"':
            j = i + 1
            while expr[j] != '"':
                j += 2 if expr[j] == "\\" else 1
            keys.append(json.loads(expr[i : j + 1]))
            i = j + 1
        else:
            m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", expr[i:])
            assert m, f"not a JMESPath identifier at {expr[i:]!r}"
            keys.append(m.group())
            i += m.end()
        if i < len(expr):
            assert expr[i] == ".", f"expected '.' in {expr!r} at {i}"
            i += 1
    return keys


def _as_extracted(value: Any) -> Optional[str]:
    """Promtail's json stage stores non-strings as their JSON text."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def run_pipeline(p: PipelineDef, line: str) -> tuple[dict[str, str], dict[str, str], Optional[str]]:
    """(labels, structured metadata, timestamp text) for one event line."""
    extracted: dict[str, Optional[str]] = {}
    for source, expressions in p.json_stages:
        doc = json.loads(line if source is None else (extracted.get(source) or "null"))
        for name, expr in expressions.items():
            cur: Any = doc
            for key in jmespath_keys(expr):
                cur = cur.get(key) if isinstance(cur, dict) else None
            extracted[name] = _as_extracted(cur)
    labels = dict(p.static)
    for name in p.labels:
        if extracted.get(name):
            labels[name] = extracted[name]
    sm = {n: extracted[n] for n in p.structured_metadata if extracted.get(n)}
    for name in p.drop:
        labels.pop(name, None)
    # with action_on_failure skip, a stage whose source is missing leaves the time as it was
    ts = None
    for source in p.ts_sources:
        if extracted.get(source) is not None:
            ts = extracted[source]
    return labels, sm, ts


def promtail_pipeline(scrape_configs: list, push_url: str, tenant: Optional[str] = None) -> PipelineDef:
    assert len(scrape_configs) == 1
    job = scrape_configs[0]
    [target] = job["static_configs"]
    static = dict(target["labels"])
    path = static.pop("__path__")
    json_stages, labels, sm, ts, drop = [], [], [], [], []
    for stage in job["pipeline_stages"]:
        [(kind, body)] = stage.items()
        if kind == "json":
            json_stages.append((body.get("source"), dict(body["expressions"])))
        elif kind == "labels":
            labels += list(body)
        elif kind == "structured_metadata":
            sm += list(body)
        elif kind == "timestamp":
            ts.append(body)
        elif kind == "labeldrop":
            drop += list(body)
        else:
            raise AssertionError(f"unexpected stage {kind}")
    assert len({t["format"] for t in ts}) == 1
    assert all(t.get("action_on_failure") == "skip" for t in ts), "a missing source must keep the time (fallback chain)"
    return PipelineDef(path, static, json_stages, labels, sm, [t["source"] for t in ts], ts[0]["format"], drop, push_url, tenant)


def alloy_pipeline(root: Block) -> PipelineDef:
    src = root.one("loki.source.file")
    [target] = src.attrs["targets"]
    static = {k: (v.text if isinstance(v, Ref) else v) for k, v in target.items()}
    path = static.pop("__path__")
    proc = root.one("loki.process")
    assert src.attrs["forward_to"] == [Ref(f"loki.process.{proc.label}.receiver")]
    json_stages, labels, sm, ts, drop = [], [], [], [], []
    for b in proc.blocks:
        if b.name == "stage.json":
            json_stages.append((b.attrs.get("source"), dict(b.attrs["expressions"])))
        elif b.name == "stage.labels":
            labels += list(b.attrs["values"])
        elif b.name == "stage.structured_metadata":
            sm += list(b.attrs["values"])
        elif b.name == "stage.timestamp":
            ts.append(b.attrs)
        elif b.name == "stage.label_drop":
            drop += list(b.attrs["values"])
        else:
            raise AssertionError(f"unexpected stage {b.name}")
    assert all(t.get("action_on_failure") == "skip" for t in ts), "a missing source must keep the time (fallback chain)"
    write = root.one("loki.write")
    assert proc.attrs["forward_to"] == [Ref(f"loki.write.{write.label}.receiver")]
    endpoint = write.one("endpoint")
    return PipelineDef(
        path, static, json_stages, labels, sm, [t["source"] for t in ts], ts[0]["format"], drop, endpoint.attrs["url"],
        endpoint.attrs.get("tenant_id"),
    )

"""Pure logic: one audit log line -> one Loki entry (stream labels, timestamp, line, metadata).

No I/O here. The line that is shipped is the original line, byte for byte, so LogQL's
``| json`` sees exactly what kube-apiserver wrote; only events longer than the line
limit are rewritten (their bodies removed, a marker added).

Speed matters: a control plane writes thousands of events per second and this runs
for every one. kube-apiserver's JSON encoder writes the keys of an audit Event in a
fixed order, so the few fields needed are read with anchored regular expressions on
the raw bytes (``_fast_fields``); whenever the line does not have that exact shape the
full JSON parse (``_slow_fields``) decides. Both give the same values; the tests compare
them over a real corpus.
"""

from __future__ import annotations

import calendar
import json
import re
import time
from dataclasses import dataclass, field

from kaudit.shipper import fields as F

try:  # optional speed-up; the standard library is enough
    import orjson as _orjson  # type: ignore

    _loads = _orjson.loads
except ImportError:  # pragma: no cover - depends on the image
    _orjson = None
    _loads = json.loads

#: marker added to an event whose bodies were removed to fit the line limit
TRUNCATED_KEY = "kauditTruncated"
BODY_KEYS = ("requestObject", "responseObject")

_STR = rb'[^"\\]*(?:\\.[^"\\]*)*'
_HEAD = re.compile(
    rb'\{"kind":"Event","apiVersion":"audit\.k8s\.io/v1(?:beta1)?",'
    rb'"level":"(?P<audit_level>[A-Za-z]+)","auditID":"(?P<audit_id>' + _STR + rb')",'
    rb'"stage":"(?P<stage>[A-Za-z]+)","requestURI":"' + _STR + rb'","verb":"(?P<verb>[A-Za-z]*)",'
    rb'"user":\{(?:"username":"(?P<user>' + _STR + rb')")?'
)
_TAIL = re.compile(
    rb',"stageTimestamp":"(?P<ts>[^"\\]*)"(?:,"annotations":(?P<ann>\{(?:"' + _STR + rb'":"' + _STR + rb'",?)*\}))?\}[ \t\r]*'
)
_RECEIVED_TAIL = re.compile(rb',"requestReceivedTimestamp":"[^"\\]*"' + _TAIL.pattern)
_FLAT_OBJ = re.compile(rb'\{(?:"' + _STR + rb'":"' + _STR + rb'",?)*\}')
_CODE = re.compile(rb'"code":(\d+)')
# objectRef as Go writes it: resource first, then namespace (each omitted when empty)
_OBJREF_HEAD = re.compile(rb'\{(?:"resource":"(' + _STR + rb')",?)?(?:"namespace":"(' + _STR + rb')")?')
# Status.code is Status's last key: the first "code":N} after responseStatus is its own
_STATUS_CODE = re.compile(rb'"code":(\d+)\}')
_NAMESPACE = re.compile(rb'"namespace":"(' + _STR + rb')"')
_RESOURCE = re.compile(rb'"resource":"(' + _STR + rb')"')
_STRING_AT = re.compile(rb'"(' + _STR + rb')"')
_KV = re.compile(rb'"([^"\\]*)":"(' + _STR + rb')"')
_DECISION = re.compile(rb'"authorization\.k8s\.io/decision":"(' + _STR + rb')"')
_CTRL_BYTES = bytes(range(32))
_TS = re.compile(rb"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z")

_FAST_MD_ORDER = ("audit_id", "user", "namespace", "resource", "code", "decision")
_OBJREF_FIELDS = {"namespace": "namespace", "resource": "resource", "subresource": "subresource", "name": "name", "api_group": "apiGroup"}


def _json_str_bytes(raw: bytes) -> str:
    """The text of a JSON string's raw content (escapes resolved)."""
    if b"\\" not in raw:
        return raw.decode("utf-8", "replace")
    return json.loads(b'"' + raw + b'"')


class TimestampParser:
    """RFC 3339 timestamps as kube-apiserver writes them (µs, Z) -> nanoseconds since the epoch.
    The seconds part is cached: consecutive events share it."""

    def __init__(self) -> None:
        self._cache: dict[bytes, int] = {}

    def ns(self, text: bytes) -> int | None:
        if len(text) == 27 and text[26] == 90 and text[19] == 46:  # 2026-11-28T23:13:43.957656Z
            secs = self._cache.get(text[:19])
            frac = text[20:26]
            if secs is not None and frac.isdigit():
                return secs * 1_000_000_000 + int(frac) * 1000
        m = _TS.fullmatch(text)
        if m:
            key = text[:19]
            secs = self._cache.get(key)
            if secs is None:
                if len(self._cache) > 4096:
                    self._cache.clear()
                y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
                secs = self._cache[key] = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
            frac = m.group(7) or b"0"
            return secs * 1_000_000_000 + int(frac.ljust(9, b"0"))
        try:  # offsets other than Z, or other precision
            from datetime import datetime

            dt = datetime.fromisoformat(text.decode().replace("Z", "+00:00"))
        except (ValueError, UnicodeDecodeError):
            return None
        frac = re.search(r"\.(\d+)", text.decode())
        sub = int(frac.group(1)[:9].ljust(9, "0")) if frac else 0
        return calendar.timegm(dt.utctimetuple()) * 1_000_000_000 + sub


def _valid_text(line: bytes) -> bytes:
    """`line` as valid UTF-8 (invalid bytes become U+FFFD): both push formats carry text."""
    if not line.isascii():
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return line.decode("utf-8", "replace").encode("utf-8")
    return line


def _escape(line: bytes) -> bytes:
    """The content of a JSON string holding `line` (valid UTF-8 text)."""
    if len(line.translate(None, _CTRL_BYTES)) != len(line):  # raw control characters: let json escape them
        return json.dumps(line.decode("utf-8"), ensure_ascii=False).encode("utf-8")[1:-1]
    if b"\\" in line:
        line = line.replace(b"\\", b"\\\\")
    return line.replace(b'"', b'\\"')


@dataclass(slots=True)
class Entry:
    """One encoded Loki entry. `line` is the line as shipped (UTF-8, not escaped: the push
    format escapes or length-prefixes it); `md` holds the structured-metadata values in
    Encoder.md_names order, each the raw JSON string content (still escaped) or None, or
    is () when no metadata is sent."""

    stream: tuple
    ts: int
    line: bytes
    md: tuple = ()
    size: int = 0  # raw line bytes, for batch sizing


@dataclass
class Counters:
    events: int = 0
    malformed: int = 0
    truncated: int = 0  # bodies removed, still valid JSON
    cut: int = 0  # still too long after removing bodies: cut at the limit
    slow_path: int = 0


@dataclass
class Encoder:
    """Turns raw lines into Entries.

    labels: dynamic label names (from fields.ALLOWED_LABELS), checked by fields.check_label_names
    static: static labels (job, node, the user's own)
    structured_metadata: attach fields.STRUCTURED_METADATA (Loki 3+)
    """

    labels: tuple[str, ...] = F.DEFAULT_LABELS
    static: dict[str, str] = field(default_factory=lambda: {F.JOB_LABEL: F.DEFAULT_JOB})
    structured_metadata: bool = False
    max_line_bytes: int = 256 * 1024
    counters: Counters = field(default_factory=Counters)

    def __post_init__(self) -> None:
        self.configure(self.structured_metadata)

    def configure(self, structured_metadata: bool) -> None:
        """(Re)compute what to extract; structured metadata is decided once Loki's version is known."""
        self.structured_metadata = structured_metadata
        F.check_label_names(list(self.labels))
        clash = set(self.labels) & set(self.static)
        if clash:
            raise ValueError(f"label {sorted(clash)[0]!r} is both static and dynamic")
        self._ts = TimestampParser()
        self._stream_json: dict[tuple, bytes] = {}
        self._need = set(self.labels) | (set(F.structured_metadata_for(self.labels)) if self.structured_metadata else set())
        self._need_mid = bool(self._need & (set(_OBJREF_FIELDS) | {"code"}))
        self._need_ann = "decision" in self._need
        self._no_labels = (None,) * len(self.labels)
        self._default_labels = tuple(self.labels) == ("audit_level", "verb", "stage")
        # labels and metadata the flat path in encode() can take from _HEAD's groups alone
        self._head_labels = None
        if set(self.labels) <= {"audit_level", "stage", "verb"} and tuple(F.STRUCTURED_METADATA) == _FAST_MD_ORDER:
            names = self.labels
            if len(names) == 0:
                self._head_labels = lambda m: ()
            elif len(names) == 1:
                self._head_labels = lambda m, n=names[0]: (m.group(n),)
            else:
                self._head_labels = lambda m, ns=names: m.group(*ns)
        self._objref = [(n, k.encode()) for n, k in _OBJREF_FIELDS.items() if n in self._need]
        self._need_code = "code" in self._need
        #: the structured-metadata keys, in the order of Entry.md
        self.md_names = F.structured_metadata_for(self.labels)
        self._md_json = [b'"%b":"' % n.encode() for n in self.md_names]

    # ------------------------------------------------------------------ public
    def encode(self, line: bytes, read_ns: int | None = None) -> Entry:
        """One line (without its newline) -> Entry. Never raises on bad input."""
        self.counters.events += 1
        if len(line) > self.max_line_bytes:
            line = self._shrink(line)
        if self._head_labels is not None:  # the common case, kept flat: this runs per event
            m = _HEAD.match(line)
            if m is not None:
                t = line.rfind(b',"stageTimestamp":"')
                tm = _TAIL.fullmatch(line, t) if t > 0 else None
                if tm is not None:
                    ts, ann = tm.groups()
                    secs = self._ts._cache.get(ts[:19]) if len(ts) == 27 and ts[26] == 90 and ts[19] == 46 else None
                    if secs is not None and ts[20:26].isdigit():  # 2026-11-28T23:13:43.957656Z, second already seen
                        ts = secs * 1_000_000_000 + int(ts[20:26]) * 1000
                    else:
                        ts = self._ts.ns(ts)
                    if ts is not None:
                        g = m.groups()  # audit_level, audit_id, stage, verb, user: one call, not one per field
                        md = self._fast_metadata(line, g, m.end(), t, ann) if self.structured_metadata else ()
                        return Entry((g[0], g[3], g[2]) if self._default_labels else self._head_labels(m), ts,
                                     line if line.isascii() else _valid_text(line), md, len(line))
        vals = self._fast_fields(line)
        if vals is None:
            vals = self._slow_fields(line)
            if vals is None:
                self.counters.malformed += 1
                ts = read_ns if read_ns is not None else time.time_ns()
                return Entry(self._no_labels, ts, _valid_text(line), (), len(line))
        ts = vals.pop("ts", None)
        if ts is None:
            ts = read_ns if read_ns is not None else time.time_ns()
        stream = tuple(vals.get(n) for n in self.labels)
        md = tuple(vals.get(n) for n in self.md_names) if self.structured_metadata else ()
        return Entry(stream, ts, _valid_text(line), md, len(line))

    def _fast_metadata(self, line: bytes, g: tuple, head_end: int, t: int, ann) -> tuple:
        """Structured metadata straight from the raw bytes, in F.STRUCTURED_METADATA's order.

        Values stay JSON-escaped as the apiserver wrote them, so they are pasted, not encoded.
        Why the positions are trustworthy: a key pattern such as ,"responseStatus":{ (unescaped
        quotes) cannot occur inside a JSON string, and every top-level field before
        responseStatus (user, impersonatedUser, sourceIPs, userAgent, objectRef) holds only
        strings and arrays of strings, so its first occurrence is the top-level one, and
        objectRef lies between the head and it. Without a top-level responseStatus (the
        RequestReceived stage) the request/response bodies are located first to bound the search."""
        aid, user, stage = g[1], g[4], g[2]
        rs = line.find(b',"responseStatus":{', head_end, t)
        if rs < 0 or stage == b"RequestReceived":
            end = t
            for key in (b',"requestObject":{', b',"responseObject":{'):
                p = line.find(key, head_end, end)
                if p >= 0:
                    end = p
            rs = line.find(b',"responseStatus":{', head_end, end)
            ref_end = rs if rs >= 0 else end
        else:
            ref_end = rs
        ns = res = code = dec = None
        p = line.find(b',"objectRef":{', head_end, ref_end)
        if p >= 0:
            om = _OBJREF_HEAD.match(line, p + 13, ref_end)
            if om is not None:
                res, ns = om.group(1, 2)
            else:
                v = _NAMESPACE.search(line, p, ref_end)
                ns = v.group(1) if v is not None else None
                v = _RESOURCE.search(line, p, ref_end)
                res = v.group(1) if v is not None else None
        if rs >= 0:
            v = _STATUS_CODE.search(line, rs, t)
            if v is not None:
                code = v.group(1)
        if ann is not None:
            if b'"authorization.k8s.io/decision":"allow"' in ann:
                dec = b"allow"
            else:
                d = ann.find(b'"authorization.k8s.io/decision":"')
                if d >= 0:
                    v = _STRING_AT.match(ann, d + 32)
                    if v is not None:
                        dec = v.group(1)
        return (aid or None, user or None, ns or None, res or None, code or None, dec or None)

    def stream_labels(self, stream: tuple) -> dict[str, str]:
        out = dict(self.static)
        for name, v in zip(self.labels, stream):
            if v:
                out[name] = _json_str_bytes(v)
        return out

    def stream_json(self, stream: tuple) -> bytes:
        """The JSON object of a stream's labels (cached: a handful of streams)."""
        js = self._stream_json.get(stream)
        if js is None:
            js = self._stream_json[stream] = json.dumps(self.stream_labels(stream), ensure_ascii=False, sort_keys=True).encode()
        return js

    def fields_of(self, line: bytes) -> dict | None:
        """Field name -> text value, as shipped (for tests and tools)."""
        vals = self._fast_fields(line)
        if vals is None:
            vals = self._slow_fields(line)
        if vals is None:
            return None
        return {k: (_json_str_bytes(v) if isinstance(v, bytes) else v) for k, v in vals.items() if v}

    # ------------------------------------------------------------------ parsing
    def _fast_fields(self, line: bytes) -> dict | None:
        """Values as raw JSON string content (bytes, still escaped), ts as int; None if the
        line does not have kube-apiserver's exact shape."""
        m = _HEAD.match(line)
        if m is None:
            return None
        t = line.rfind(b',"stageTimestamp":"')
        tm = _TAIL.fullmatch(line, t) if t > 0 else None
        if tm is None:
            return None
        ts = self._ts.ns(tm.group(1))
        if ts is None:
            return None
        vals = m.groupdict()
        vals["ts"] = ts
        if self._need_mid:
            end = t
            head_end = m.end()
            for key in (b',"requestObject":{', b',"responseObject":{'):
                p = line.find(key, head_end, end)
                if p >= 0:
                    end = p
            if self._objref:
                p = line.find(b',"objectRef":{', head_end, end)
                if p >= 0:
                    om = _FLAT_OBJ.match(line, p + 13)
                    if om is None:
                        return None
                    ref = dict(_KV.findall(om.group()))
                    for name, key in self._objref:
                        vals[name] = ref.get(key) or None
            if self._need_code:
                p = line.find(b',"responseStatus":{', head_end, end)
                cm = _CODE.search(line, p, end) if p >= 0 else None
                vals["code"] = cm.group(1) if cm else None
        if self._need_ann:
            ann = tm.group(2)
            dm = _DECISION.search(ann) if ann else None
            vals["decision"] = dm.group(1) if dm else None
        return vals

    def _slow_fields(self, line: bytes) -> dict | None:
        """The same values from a full JSON parse (any key order, v1beta1, edited events)."""
        self.counters.slow_path += 1
        try:
            ev = _loads(line)
        except (ValueError, RecursionError):  # deeply nested garbage must not stop the shipper
            return None
        if not isinstance(ev, dict):
            return None
        vals: dict = {}
        for name in self._need:
            v = F.extract(ev, F.BY_NAME[name])
            if isinstance(v, bool) or v == "" or not isinstance(v, (str, int)):
                vals[name] = None
            elif isinstance(v, int):
                vals[name] = str(v).encode()
            else:
                vals[name] = json.dumps(v, ensure_ascii=False)[1:-1].encode("utf-8", "replace")
        for key in F.TIMESTAMP_FIELDS:
            v = ev.get(key)
            if isinstance(v, str):
                ts = self._ts.ns(v.encode())
                if ts is not None:
                    vals["ts"] = ts
                    break
        return vals

    def metadata_json(self, md: tuple) -> bytes:
        """Entry.md as the JSON object of a push entry's third element (b'' when empty)."""
        if len(md) == 6 and all(md) and self.md_names == _FAST_MD_ORDER:
            return b'{"audit_id":"%b","user":"%b","namespace":"%b","resource":"%b","code":"%b","decision":"%b"}' % md
        parts = [prefix + v + b'"' for prefix, v in zip(self._md_json, md) if v]
        return b"{" + b",".join(parts) + b"}" if parts else b""

    # ------------------------------------------------------------------ oversize
    def _shrink(self, line: bytes) -> bytes:
        """Fit a long event under max_line_bytes: drop request/response bodies and say so,
        keeping valid JSON; only if that is not enough, cut the bytes (counted)."""
        out = self._shrink_fast(line)
        if out is not None:
            self.counters.truncated += 1
            return out
        try:
            ev = _loads(line)
        except (ValueError, RecursionError):  # deeply nested garbage must not stop the shipper
            ev = None
        if isinstance(ev, dict):
            removed = [k for k in BODY_KEYS if k in ev]
            if removed:
                for k in removed:
                    del ev[k]
                ev[TRUNCATED_KEY] = {"removed": removed, "originalBytes": len(line)}
                out = json.dumps(ev, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
                if len(out) <= self.max_line_bytes:
                    self.counters.truncated += 1
                    return out
        self.counters.cut += 1
        cut = line[: self.max_line_bytes]
        return cut.decode("utf-8", "ignore").encode("utf-8")  # never split a character


    def _shrink_fast(self, line: bytes) -> bytes | None:
        """Cut the bodies out of the raw bytes when the line has kube-apiserver's key order
        (..., responseStatus, requestObject, responseObject, requestReceivedTimestamp, ...):
        everything else stays byte for byte, and no 400 KB parse is needed."""
        if not _HEAD.match(line):
            return None
        starts = [p for p in (line.find(b',"requestObject":{'), line.find(b',"responseObject":{')) if p > 0]
        end = line.rfind(b',"requestReceivedTimestamp":"')
        if not starts or end < 0 or not _RECEIVED_TAIL.fullmatch(line, end):
            return None
        start = min(starts)
        if start > end:
            return None
        region = line[start:end]
        removed = ["requestObject"] if region.startswith(b',"requestObject":') else []
        if region.startswith(b',"responseObject":') or region.rfind(b',"responseObject":{') > 0:
            removed.append("responseObject")
        marker = json.dumps({TRUNCATED_KEY: {"removed": removed, "originalBytes": len(line)}}, separators=(",", ":"))
        out = line[:start] + b"," + marker[1:-1].encode() + line[end:]
        return out if len(out) <= self.max_line_bytes else None


def render_push(encoder: Encoder, streams: dict[tuple, list[Entry]], with_metadata: bool) -> bytes:
    """The JSON push body for entries grouped by stream (see proto.py for the protobuf one)."""
    parts = [b'{"streams":[']
    first = True
    for stream, entries in streams.items():
        if not first:
            parts.append(b",")
        first = False
        parts.append(b'{"stream":' + encoder.stream_json(stream) + b',"values":[')
        if with_metadata:
            mdj = encoder.metadata_json
            parts.append(b",".join([b'["%d","%b",%b]' % (e.ts, _escape(e.line), mdj(e.md)) if e.md and any(e.md)
                                    else b'["%d","%b"]' % (e.ts, _escape(e.line)) for e in entries]))
        else:
            parts.append(b",".join([b'["%d","%b"]' % (e.ts, _escape(e.line)) for e in entries]))
        parts.append(b"]}")
    parts.append(b"]}")
    return b"".join(parts)

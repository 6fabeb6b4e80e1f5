"""An audit event as kube-apiserver writes it at a given level, and its size in bytes.

The log backend writes each event with Go's encoding/json: compact, one event per
line ending in a newline, keys in the Event struct's order, non-ASCII as UTF-8,
and <, >, & and U+2028/U+2029 escaped as \\u003c, \\u003e, \\u0026, \\u2028,
\\u2029 (HTML-safe escaping is on by default). What a level keeps, from
k8s.io/apiserver pkg/audit/request.go: objectRef (with name, namespace, uid and
resourceVersion taken from the object) and responseStatus are the same from
Metadata up; requestObject needs Request; responseObject needs RequestResponse.
With omitManagedFields, metadata.managedFields is dropped from the objects (each
item of a list, each row's object of a Table), but not from a patch, which is
logged as the raw patch.

``encode_event`` builds the bytes. ``EventSizes`` answers the size at each level
without re-encoding when the recorded line is the apiserver's own compact output,
by measuring the body spans in the line itself; that keeps a simulation of several
policies close to the cost of parsing the log once.
"""

from __future__ import annotations

import json
from typing import Any, Optional

LEVEL_RANK = {"None": 0, "Metadata": 1, "Request": 2, "RequestResponse": 3}
_HTML = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})
# What every event kube-apiserver's log backend writes starts with (Event struct order).
GO_PREFIX = b'{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"'
_REQ_KEY = b',"requestObject":'
_RESP_KEY = b',"responseObject":'
_RRT_KEY = b',"requestReceivedTimestamp":'
_REQ_NAME = b'"requestObject":'
_RESP_NAME = b'"responseObject":'
_STATUS_KEY = b',"responseStatus":'
_ANN_KEY = b',"annotations":'


def go_json(value: Any) -> str:
    """Compact JSON text as Go's encoding/json writes it (HTML-safe escaping)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.translate(_HTML) if _needs_escape(text) else text


def _needs_escape(text: str) -> bool:
    return "<" in text or ">" in text or "&" in text or "\u2028" in text or "\u2029" in text


def go_len(value: Any) -> int:
    """len(go_json(value).encode()) without building the escaped copy."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    n = len(text) if text.isascii() else len(text.encode("utf-8"))
    if _needs_escape(text):
        n += 5 * (text.count("<") + text.count(">") + text.count("&")) + 3 * (text.count("\u2028") + text.count("\u2029"))
    return n


def is_go_line(line: bytes) -> bool:
    """Whether a recorded line is kube-apiserver's own output, whose length is then exact.
    Go escapes <, > and & in every string, so a line holding one raw was edited by hand."""
    return line.startswith(GO_PREFIX) and b"&" not in line and b"<" not in line and b">" not in line


def _line_len(line: bytes) -> int:
    """Length of the line as written: ending in exactly one newline."""
    if line.endswith(b"\r\n"):
        return len(line) - 1
    return len(line) if line.endswith(b"\n") else len(line) + 1


def without_managed_fields(obj: Any) -> Any:
    """A copy of an object/list/Table body without metadata.managedFields (the input is not changed)."""
    if not isinstance(obj, dict):
        return obj
    out = obj
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        out = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    items = obj.get("items")
    if isinstance(items, list) and any(_has_mf(i) for i in items):
        out = {**out, "items": [without_managed_fields(i) for i in items]}
    rows = obj.get("rows")
    if obj.get("kind") == "Table" and isinstance(rows, list):
        out = {**out, "rows": [{**r, "object": without_managed_fields(r["object"])} if isinstance(r, dict) and _has_mf(r.get("object")) else r
                               for r in rows]}
    return out


def _has_mf(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("metadata"), dict) and "managedFields" in obj["metadata"]


def managed_fields_len(obj: Any) -> int:
    """How many bytes dropping managedFields takes out of the body's encoding."""
    if not isinstance(obj, dict):
        return 0
    n = 0
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        # "managedFields":[...] plus the comma that separated it from a neighbour
        n += len('"managedFields":') + go_len(meta["managedFields"]) + (1 if len(meta) > 1 else 0)
    items = obj.get("items")
    if isinstance(items, list):
        n += sum(managed_fields_len(i) for i in items)
    rows = obj.get("rows")
    if obj.get("kind") == "Table" and isinstance(rows, list):
        n += sum(managed_fields_len(r.get("object")) for r in rows if isinstance(r, dict))
    return n


def at_level(event: dict, level: str, omit_managed_fields: bool = False, stage: Optional[str] = None) -> dict:
    """The event as the apiserver would record it at `level` (a lower level than recorded
    drops bodies; a higher one cannot add what was never recorded)."""
    out = dict(event)
    out["level"] = level
    if stage is not None:
        out["stage"] = stage
    rank = LEVEL_RANK[level]
    if rank < 2:
        out.pop("requestObject", None)
    if rank < 3:
        out.pop("responseObject", None)
    if omit_managed_fields:
        if "requestObject" in out and event.get("verb") != "patch":
            out["requestObject"] = without_managed_fields(out["requestObject"])
        if "responseObject" in out:
            out["responseObject"] = without_managed_fields(out["responseObject"])
    return out


def encode_event(event: dict, level: str, omit_managed_fields: bool = False) -> bytes:
    """The line the apiserver's log backend would write for this event at `level`."""
    return go_json(at_level(event, level, omit_managed_fields)).encode("utf-8") + b"\n"


def request_received(event: dict) -> dict:
    """The RequestReceived event of the request a later-stage event records, as far as the
    later event tells: written before the handler runs, so without bodies, response
    status or the annotations added after authentication."""
    out = {k: v for k, v in event.items() if k not in ("responseStatus", "requestObject", "responseObject", "annotations")}
    out["stage"] = "RequestReceived"
    if "requestReceivedTimestamp" in event:
        out["stageTimestamp"] = event["requestReceivedTimestamp"]
    notes = {k: v for k, v in (event.get("annotations") or {}).items() if k.startswith("authentication.k8s.io/")}
    if notes:
        out["annotations"] = notes
    return out


class EventSizes:
    """Sizes of one recorded event re-encoded at each level, computed lazily and shared
    by every policy simulated (only three outcomes per body: dropped, kept, kept
    without managedFields)."""

    __slots__ = ("event", "line", "recorded", "_base", "_req", "_resp", "_req_mf", "_resp_mf", "_rr")

    def __init__(self, event: dict, line: bytes):
        self.event = event
        self.line = line
        self.recorded = event.get("level", "")
        self._base: Optional[int] = None
        self._req = self._resp = self._req_mf = self._resp_mf = self._rr = None

    def _measure(self) -> None:
        ev, line = self.event, self.line
        req, resp = ev.get("requestObject"), ev.get("responseObject")
        if is_go_line(line) and (req is None or line.count(_REQ_NAME) == 1) and (resp is None or line.count(_RESP_NAME) == 1):
            # the apiserver's own line: measure the body spans in it
            total = _line_len(line)
            if req is None and resp is None:
                self._req = self._resp = 0
                self._base = total
                return
            end = line.rfind(_RRT_KEY)
            rs = line.find(_RESP_KEY) if resp is not None else -1
            rq = line.find(_REQ_KEY) if req is not None else -1
            if end > 0 and (rq < 0 or rs < 0 or rq < rs) and max(rq, rs) < end:
                self._req = ((rs if rs > 0 else end) - rq) if rq > 0 else 0
                self._resp = (end - rs) if rs > 0 else 0
                self._base = total - self._req - self._resp
                return
        # anything else (edited fixtures, pretty-printed, v1beta1): encode it as the apiserver would
        self._req = len(_REQ_KEY) + go_len(req) if req is not None else 0
        self._resp = len(_RESP_KEY) + go_len(resp) if resp is not None else 0
        bare = {k: v for k, v in ev.items() if k not in ("requestObject", "responseObject")}
        self._base = go_len(bare) + 1

    def size(self, level: str, omit_managed_fields: bool = False) -> int:
        """Bytes of the line at `level` (<= the recorded level), newline included."""
        if self._base is None:
            self._measure()
        n = self._base + len(level) - len(self.recorded)
        rank = LEVEL_RANK[level]
        if rank >= 2 and self._req:
            n += self._req
            if omit_managed_fields and self.event.get("verb") != "patch":
                if self._req_mf is None:
                    self._req_mf = managed_fields_len(self.event.get("requestObject"))
                n -= self._req_mf
        if rank >= 3 and self._resp:
            n += self._resp
            if omit_managed_fields:
                if self._resp_mf is None:
                    self._resp_mf = managed_fields_len(self.event.get("responseObject"))
                n -= self._resp_mf
        return n

    def request_received_size(self, level: str) -> int:
        """Bytes of the RequestReceived event inferred for this request, at `level`."""
        if self._rr is None:
            self._rr = self._rr_from_line()
            if self._rr is None:
                self._rr = go_len(request_received(self.event)) + 1 - len(self.recorded)
        return self._rr + len(level)

    def _rr_from_line(self) -> Optional[int]:
        """The inferred RequestReceived size measured on the apiserver's own line (minus the level)."""
        if not is_go_line(self.line) or "responseStatus" not in self.event:
            return None
        return request_received_on_line(self.line, _line_len(self.line), self.event.get("stage", ""), self.recorded)


def request_received_on_line(line: bytes, total: int, stage: str, recorded: str) -> Optional[int]:
    """Size, minus the level's name, of the RequestReceived event inferred from a final event
    the apiserver wrote (`total`: its length with one newline), or None when the line does
    not tell. In the Event's field order, the RequestReceived event is the line's text
    before responseStatus, then requestReceivedTimestamp (whose value stageTimestamp takes,
    same length) up to the annotations, and the closing brace."""
    start = line.find(_STATUS_KEY)
    end = line.rfind(_RRT_KEY)
    if start < 0 or end < start or b'"authentication.k8s.io/' in line:
        return None  # authentication annotations stay in RequestReceived: encode it instead
    notes = line.rfind(_ANN_KEY)
    if notes < end:
        notes = total - 2  # no annotations: up to the closing brace
    return start + (notes - end) + 2 + len("RequestReceived") - len(stage) - len(recorded)

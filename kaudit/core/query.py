"""`kaudit query` as pure functions: filters -> LogQL, Loki streams -> table rows.

Which filter becomes a stream-selector label and which a ``| json`` filter is
read from the shared field table (kaudit.shipper.fields): fields the collectors
set as labels (DEFAULT_LABELS, e.g. ``verb``) go into ``{...}``, where Loki
narrows the streams before reading a line; everything else is matched on the
names Loki's json parser gives nested keys (``objectRef.namespace`` ->
``objectRef_namespace``, ``annotations."authorization.k8s.io/decision"`` ->
``annotations_authorization_k8s_io_decision``).

User values are always compared with ``=`` (never ``=~``), so regex characters
are literal, and they are written as LogQL double-quoted strings with ``\\`` and
``"`` escaped, so no value can end the string early.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable, Optional, Sequence

from kaudit.shipper import fields as F

#: the filters `kaudit query` offers, mapped to fields of the shared table
FILTER_FIELDS: dict[str, str] = {
    "user": "user",
    "verb": "verb",
    "resource": "resource",
    "namespace": "namespace",
    "name": "name",
    "decision": "decision",
    "code": "code",
}

DECISIONS = ("allow", "forbid")

# a value JSON encodes byte-for-byte as itself: safe for a cheap |= line prefilter
_PLAIN = re.compile(r"^[A-Za-z0-9._:/@=+-]+$")


def logql_string(value: str) -> str:
    """A LogQL double-quoted string literal for value (Go string syntax)."""
    out = ['"']
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def json_label(field: F.Field) -> str:
    """The label name Loki's `| json` parser gives a nested key: path joined by '_',
    characters outside [a-zA-Z0-9_] replaced by '_'."""
    return "_".join(re.sub(r"[^A-Za-z0-9_]", "_", part) for part in field.path)


@dataclass(frozen=True)
class Filters:
    user: Optional[str] = None
    verb: Optional[str] = None
    resource: Optional[str] = None
    namespace: Optional[str] = None
    name: Optional[str] = None
    decision: Optional[str] = None
    code: Optional[int] = None

    def items(self) -> list[tuple[str, str]]:
        out = []
        for key in FILTER_FIELDS:
            value = getattr(self, key)
            if value is not None and value != "":
                out.append((key, str(value)))
        return out


@dataclass(frozen=True)
class QueryPlan:
    logql: str
    labels: dict[str, str] = field(default_factory=dict)  # filters matched as stream labels
    json_filters: dict[str, str] = field(default_factory=dict)  # json label -> value


def build_logql(
    filters: Filters,
    *,
    job: str = F.DEFAULT_JOB,
    labels: Sequence[str] = F.DEFAULT_LABELS,
    cluster: Optional[str] = None,
) -> QueryPlan:
    """LogQL selecting the audit events matching every filter.

    ``labels`` are the fields the collector sets as stream labels (the shipper's
    and the rendered configs' DEFAULT_LABELS unless the user chose others).
    """
    if filters.decision is not None and filters.decision not in DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(DECISIONS)}, not {filters.decision!r}")
    if filters.code is not None and not (100 <= int(filters.code) <= 599):
        raise ValueError(f"code must be an HTTP status code (100-599), not {filters.code!r}")
    label_set = set(labels)
    selector = [(F.JOB_LABEL, job)]
    as_labels: dict[str, str] = {}
    if cluster is not None:  # the static label every collector sets (kaudit up --cluster-name)
        F.check_cluster_name(cluster)
        selector.append((F.CLUSTER_LABEL, cluster))
        as_labels[F.CLUSTER_LABEL] = cluster
    as_json: dict[str, str] = {}
    for key, value in filters.items():
        fld = F.BY_NAME[FILTER_FIELDS[key]]
        if fld.name in label_set and fld.name not in F.HIGH_CARDINALITY:
            selector.append((fld.name, value))
            as_labels[fld.name] = value
        else:
            as_json[json_label(fld)] = value
    text = "{" + ", ".join(f"{k}={logql_string(v)}" for k, v in selector) + "}"
    if as_json:
        # a line filter first lets Loki skip lines without parsing them; only for
        # values that appear verbatim in the JSON line (no escaping differences)
        plain = [v for v in as_json.values() if _PLAIN.match(v) and len(v) >= 3]
        if plain:
            text += " |= " + logql_string(max(plain, key=len))
        text += " | json"
        text += "".join(f" | {k}={logql_string(v)}" for k, v in as_json.items())
    return QueryPlan(text, as_labels, as_json)


# -- results -------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    time: str
    user: str
    verb: str
    resource: str
    namespace: str
    name: str
    code: str
    decision: str
    ts_ns: int = 0

    COLUMNS = ("time", "user", "verb", "resource", "namespace/name", "code", "decision")

    @property
    def object(self) -> str:
        """namespace/name, or whichever of the two the event has."""
        return "/".join(p for p in (self.namespace, self.name) if p)

    def cells(self) -> tuple[str, ...]:
        return (self.time, self.user, self.verb, self.resource, self.object, self.code, self.decision)

    def as_dict(self) -> dict:
        return {
            "time": self.time,
            "user": self.user,
            "verb": self.verb,
            "resource": self.resource,
            "namespace": self.namespace or None,
            "name": self.name or None,
            "code": int(self.code) if self.code.isdigit() else None,
            "decision": self.decision or None,
        }


def _get(event: dict, name: str) -> str:
    value = F.extract(event, F.BY_NAME[name])
    return "" if value is None else str(value)


def _ns_time(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def row_from_event(event: dict, ts_ns: int) -> Row:
    resource = _get(event, "resource")
    sub = _get(event, "subresource")
    if sub:
        resource = f"{resource}/{sub}"
    return Row(
        time=_get(event, "ts") or _ns_time(ts_ns),
        user=_get(event, "user"),
        verb=_get(event, "verb"),
        resource=resource,
        namespace=_get(event, "namespace"),
        name=_get(event, "name"),
        code=_get(event, "code"),
        decision=_get(event, "decision"),
        ts_ns=ts_ns,
    )


def rows_from_entries(entries: Iterable[tuple[int, str, dict]], limit: Optional[int] = None) -> tuple[list[Row], int]:
    """Rows newest first, and the number of lines that were not audit events."""
    rows: list[Row] = []
    skipped = 0
    for ts, line, _labels in entries:
        try:
            event = json.loads(line)
        except ValueError:
            skipped += 1
            continue
        if not isinstance(event, dict) or event.get("kind") != "Event":
            skipped += 1
            continue
        rows.append(row_from_event(event, ts))
    rows.sort(key=lambda r: r.ts_ns, reverse=True)
    if limit is not None:
        rows = rows[:limit]
    return rows, skipped

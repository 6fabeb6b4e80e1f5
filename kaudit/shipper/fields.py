"""The one definition of what kaudit extracts from an audit event, and where it goes.

The shipper, every rendered Promtail/Alloy config, the Grafana dashboard, `kaudit
verify` and `kaudit query` read these tables, so they cannot drift apart.
Standard library only: this module ships inside the shipper's ConfigMap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: static label every collector sets
JOB_LABEL = "job"
DEFAULT_JOB = "kubernetes-audit"
#: static label carrying the node (control-plane host) name
NODE_LABEL = "node"
#: static label naming the cluster (kaudit up --cluster-name): one value per cluster,
#: so many clusters can share one Loki and stay apart
CLUSTER_LABEL = "cluster"
#: a cluster name: short and plain, so it stays one bounded label value and a safe
#: LogQL/Grafana variable value (Kubernetes' DNS label rule, upper case and dots allowed)
_CLUSTER_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?\Z")


def check_cluster_name(value: str) -> None:
    """Raise ValueError saying why value cannot be the cluster label's value."""
    if not isinstance(value, str) or not _CLUSTER_NAME.match(value):
        raise ValueError(
            f"{value!r} is not a cluster name: 1 to 63 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )


@dataclass(frozen=True)
class Field:
    """One value extracted from an audit event.

    name: the label / structured-metadata key / promtail extracted-map key
    path: the keys leading to it in the event JSON
    """

    name: str
    path: tuple[str, ...]

    @property
    def dotted(self) -> str:
        """The JMESPath expression Promtail's and Alloy's json stage use.
        Keys with dots or slashes are quoted: annotations."authorization.k8s.io/decision"."""
        return ".".join(p if p.replace("_", "").isalnum() else f'"{p}"' for p in self.path)


DECISION_ANNOTATION = "authorization.k8s.io/decision"

#: every field the pipelines extract, in the order they are rendered
FIELDS: tuple[Field, ...] = (
    Field("audit_level", ("level",)),
    Field("verb", ("verb",)),
    Field("stage", ("stage",)),
    Field("audit_id", ("auditID",)),
    Field("user", ("user", "username")),
    Field("namespace", ("objectRef", "namespace")),
    Field("resource", ("objectRef", "resource")),
    Field("subresource", ("objectRef", "subresource")),
    Field("name", ("objectRef", "name")),
    Field("api_group", ("objectRef", "apiGroup")),
    Field("code", ("responseStatus", "code")),
    Field("decision", ("annotations", DECISION_ANNOTATION)),
    Field("ts", ("stageTimestamp",)),
)
BY_NAME = {f.name: f for f in FIELDS}

#: bounded dynamic labels set by default. `level` is deliberately not a label
#: name: Loki 3 reads a `level` label as a log severity.
DEFAULT_LABELS: tuple[str, ...] = ("audit_level", "verb", "stage")

#: fields that may be used as labels at all (each has a small, bounded set of values)
ALLOWED_LABELS: frozenset[str] = frozenset({"audit_level", "verb", "stage", "resource", "api_group", "decision", "code", "namespace", "subresource"})

#: fields with unbounded values: refused as labels, sent as structured metadata on Loki 3+
HIGH_CARDINALITY: dict[str, str] = {
    "audit_id": "auditID is unique per request",
    "auditID": "auditID is unique per request",
    "user": "one stream per user and service account",
    "username": "one stream per user and service account",
    "requestURI": "request URIs carry names, queries and resource versions",
    "request_uri": "request URIs carry names, queries and resource versions",
    "name": "object names are unbounded",
    "sourceIPs": "client addresses are unbounded",
    "source_ip": "client addresses are unbounded",
    "ts": "a timestamp is unique per event",
}

#: sent as structured metadata (Loki >= 3 only): queryable without | json, no streams
STRUCTURED_METADATA: tuple[str, ...] = ("audit_id", "user", "namespace", "resource", "code", "decision")


def structured_metadata_for(labels) -> tuple[str, ...]:
    """The structured-metadata keys to send beside these labels: a field that is
    already a label is not repeated as metadata."""
    return tuple(n for n in STRUCTURED_METADATA if n not in labels)


#: timestamp sources in order of preference. stageTimestamp keeps a stream in order:
#: events are written at response time, so requestReceivedTimestamp goes backwards.
TIMESTAMP_FIELDS: tuple[str, ...] = ("stageTimestamp", "requestReceivedTimestamp")


def check_label_names(names: list[str] | tuple[str, ...]) -> None:
    """Raise ValueError explaining why a high-cardinality or unknown field cannot be a label."""
    for n in names:
        if n in HIGH_CARDINALITY:
            raise ValueError(
                f"{n!r} cannot be a label: {HIGH_CARDINALITY[n]}, so every event would open a new "
                f"Loki stream; it is kept as structured metadata (Loki 3+) and is queryable with | json"
            )
        if n not in ALLOWED_LABELS:
            raise ValueError(f"{n!r} is not a known audit field; choose from {', '.join(sorted(ALLOWED_LABELS))}")


def extract(event: dict, field: Field):
    """The value at field.path in a decoded event, or None."""
    cur = event
    for key in field.path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
        if cur is None:
            return None
    return cur

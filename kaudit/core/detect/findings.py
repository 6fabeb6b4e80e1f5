"""What a finding is: the events a rule matched, with who/what/when/where (pure).

Hit holds the fields a responder reads from one event; Finding is one rule firing: one
request, or (aggregate rules) one burst of requests from one key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

from kaudit.core.detect.model import Rule


def event_time(event: dict) -> str:
    """The event's time as written (RFC3339): stageTimestamp, then the older fields."""
    for key in ("stageTimestamp", "requestReceivedTimestamp", "timestamp"):
        v = event.get(key)
        if isinstance(v, str) and v:
            return v
    meta = event.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("creationTimestamp"), str):
        return meta["creationTimestamp"]
    return ""


def parse_time(text: str) -> float:
    """Seconds since the epoch for an RFC3339 time (nanoseconds cut to micro); 0 when absent."""
    if not text:
        return 0.0
    t = text.replace("Z", "+00:00")
    if "." in t:
        head, rest = t.split(".", 1)
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits):]
        t = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    try:
        return datetime.fromisoformat(t).timestamp()
    except ValueError:
        return 0.0


@dataclass
class Hit:
    """One event a rule matched, with what a responder needs to see."""

    time: str
    audit_id: str
    user: str
    impersonated: str
    source_ips: tuple[str, ...]
    user_agent: str
    verb: str
    resource: str
    namespace: str
    name: str
    uri: str
    code: Optional[int]
    decision: str
    stages: list[str] = field(default_factory=list)
    location: str = ""  # file:line

    @property
    def what(self) -> str:
        return f"{self.verb} {self.resource or self.uri}"

    @property
    def where(self) -> str:
        return "/".join(p for p in (self.namespace, self.name) if p)


def hit_from_event(event: dict, location: str = "") -> Hit:
    user = event.get("user") if isinstance(event.get("user"), dict) else {}
    imp = event.get("impersonatedUser") if isinstance(event.get("impersonatedUser"), dict) else {}
    ref = event.get("objectRef") if isinstance(event.get("objectRef"), dict) else {}
    status = event.get("responseStatus") if isinstance(event.get("responseStatus"), dict) else {}
    ann = event.get("annotations") if isinstance(event.get("annotations"), dict) else {}
    resource = str(ref.get("resource") or "")
    if ref.get("subresource"):
        resource += "/" + str(ref["subresource"])
    code = status.get("code")
    name = str(ref.get("name") or "")
    if not name and isinstance(event.get("requestObject"), dict):
        # a create with generateName has no name yet: show the body's name or prefix
        meta = event["requestObject"].get("metadata")
        if isinstance(meta, dict):
            name = str(meta.get("name") or (f"{meta['generateName']}*" if meta.get("generateName") else ""))
    return Hit(
        time=event_time(event),
        audit_id=str(event.get("auditID") or ""),
        user=str(user.get("username") or ""),
        impersonated=str(imp.get("username") or ""),
        source_ips=tuple(str(ip) for ip in (event.get("sourceIPs") or []) if isinstance(ip, str)),
        user_agent=str(event.get("userAgent") or ""),
        verb=str(event.get("verb") or ""),
        resource=resource,
        namespace=str(ref.get("namespace") or ""),
        name=name,
        uri=str(event.get("requestURI") or ""),
        code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        decision=str(ann.get("authorization.k8s.io/decision") or ""),
        stages=[str(event.get("stage") or "")],
        location=location,
    )


@dataclass
class Finding:
    """A rule that fired: one request, or (aggregate rules) one burst of requests from one key."""

    rule: Rule
    hits: list[Hit]
    key: tuple[str, ...] = ()  # aggregate rules: the grouping values
    count: int = 1

    @property
    def time(self) -> str:
        return max((h.time for h in self.hits), default="")

    @property
    def audit_ids(self) -> list[str]:
        return [h.audit_id for h in self.hits]

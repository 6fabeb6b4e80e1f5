"""The JSON Schema of `kaudit verify --output json` (draft 2020-12).

docs/verify.schema.json is this dictionary written out (a test keeps them
equal); `kaudit verify --print-schema` prints it. The format is versioned by
``schema``: fields may be added within v1, never renamed or removed.
"""

from __future__ import annotations

SCHEMA_ID = "kaudit.verify/v1"

_CHECK_NAMES = ["reachable", "manifest", "policy", "apiserver", "audit-log", "webhook", "collector", "loki", "probe", "labels"]

SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "urn:kaudit:verify:v1",
    "title": "kaudit verify report",
    "description": "One object per check, in the order the checks ran.",
    "type": "object",
    "required": ["schema", "ok", "exit_code", "started_at", "elapsed_s", "summary", "checks"],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "ok": {"type": "boolean", "description": "true when no check failed"},
        "exit_code": {"enum": [0, 4], "description": "the exit code of kaudit verify"},
        "started_at": {"type": "string", "description": "RFC 3339 UTC time the run started"},
        "elapsed_s": {"type": "number", "minimum": 0},
        "loki_url": {"type": ["string", "null"], "description": "the Loki URL the checks used, if any"},
        "summary": {
            "type": "object",
            "required": ["pass", "fail", "warn", "skip"],
            "additionalProperties": False,
            "properties": {k: {"type": "integer", "minimum": 0} for k in ("pass", "fail", "warn", "skip")},
        },
        "checks": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "node", "status", "elapsed_s", "detail", "hint", "data"],
                "additionalProperties": False,
                "properties": {
                    "name": {"enum": _CHECK_NAMES},
                    "node": {
                        "type": ["string", "null"],
                        "description": "the --host a node check ran on; null for cluster checks",
                    },
                    "status": {"enum": ["pass", "fail", "warn", "skip"]},
                    "elapsed_s": {"type": "number", "minimum": 0},
                    "detail": {"type": "string", "description": "one line saying what was found"},
                    "hint": {"type": ["string", "null"], "description": "what to try next; null when the check passed"},
                    "data": {
                        "type": "object",
                        "description": "machine-readable facts of the check (e.g. probe latency_s, labels streams)",
                        "properties": {
                            "latency_s": {"type": "number", "minimum": 0},
                            "streams": {"type": "integer", "minimum": 0},
                            "url": {"type": "string"},
                            "path": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
}

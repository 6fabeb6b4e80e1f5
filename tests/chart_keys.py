"""Check chart values key by key against a chart's own vendored values.yaml (tests/data/charts).

Shared by tests/test_chart_pins.py (monolithic stacks, collectors) and
tests/test_loki_scalable.py (simple-scalable and distributed Loki).
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

DATA = Path(__file__).parent / "data" / "charts"


@functools.lru_cache(maxsize=None)
def _parsed(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


def load(path: Path) -> Any:
    """The file parsed (a fresh copy each call: the pure-Python parser is slow on 7,000 lines)."""
    return copy.deepcopy(_parsed(path))


def chart_dir(name: str, version: str) -> Path:
    d = DATA / f"{name}-{version}"
    assert d.is_dir(), f"tests/data/charts has no copy of {name} {version}: vendor its Chart.yaml and values.yaml (SOURCES.md)"
    return d


def chart_values(name: str, version: str) -> dict:
    return load(chart_dir(name, version) / "values.yaml")


#: maps the chart hands to Loki's (or Grafana's) own config unchanged: their keys are Loki's,
#: not the chart's (loki chart templates/_helpers.tpl renders loki.limits_config with toYaml
#: into limits_config; loki.schemaConfig and grafana's datasources likewise)
FREE_FORM = {
    ("loki", "loki.limits_config"),
    ("loki", "loki.schemaConfig"),
    ("grafana", "datasources"),
    # the loki chart's values.schema.json declares minio open ("additionalProperties": true):
    # helm hands these values to the MinIO subchart (minio 5.4.0), whose values are not vendored
    ("loki", "minio"),
}


#: keys a chart reads but documents only as a commented-out line of its values.yaml (the
#: test below checks that the comment is there): loki 2.16.0's statefulset template reads
#: persistence.storageClassName, its values.yaml shows it as "# storageClassName:"
COMMENTED = {
    ("loki-stack", "loki.persistence.storageClassName"): ("loki-2.16.0", "  # storageClassName:"),
    # loki 18.11.0 templates/_helpers.tpl requires loki.storage.bucketNames.chunks/ruler for
    # object storage; values.yaml shows them as "# bucketNames:"
    ("loki", "loki.storage.bucketNames"): ("loki-18.11.0", "    # bucketNames:"),
}


def unknown_keys(ours: Any, theirs: Any, chart: str, path: str = "") -> list[str]:
    """Paths kaudit sets that the chart's values do not have (or have with another shape)."""
    if (chart, path) in FREE_FORM or (chart, path) in COMMENTED or not isinstance(ours, dict):
        return []
    if theirs is None or theirs == {}:
        return []  # an empty map (or null) in values.yaml is the chart's free-form slot
    if not isinstance(theirs, dict):
        return [f"{path}: the chart has a {type(theirs).__name__} here, kaudit sets a map"]
    bad = []
    for key, value in ours.items():
        p = f"{path}.{key}" if path else key
        if key not in theirs:
            if (chart, p) not in COMMENTED:
                bad.append(p)
        elif isinstance(value, dict):
            bad += unknown_keys(value, theirs[key], chart, p)
        elif isinstance(theirs[key], dict) and theirs[key] and not isinstance(value, dict):
            bad.append(f"{p}: the chart has a map here, kaudit sets a {type(value).__name__}")
    return bad


def deep_merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = deep_merge(base.get(k), v) if k in base else v
        return out
    return over



"""Values for the Loki/Grafana stacks and the audit dashboard ConfigMap: pure, text out.

The charts and versions are kaudit.core.charts; docs/charts.md says why each value is what it
is. A scalable Loki's values come from kaudit.core.loki_scalable.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Optional

from kaudit.core.errors import KauditError, UsageError
from kaudit.core.render import parse_yaml, render_template

#: the label the Grafana sidecar looks for on dashboard ConfigMaps
DASHBOARD_LABEL = "grafana_dashboard"
DASHBOARD_FILES: tuple[str, ...] = ("kubernetes-audit.json",)


#: the label kaudit puts on (and the Grafana sidecar selects) the Loki datasource ConfigMap
DATASOURCE_LABEL = ("kaudit.io/grafana-datasource", "loki")

_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?\Z")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")


@dataclass(frozen=True)
class LokiStorage:
    """A PersistentVolumeClaim for Loki's data. Without one (the default) Loki writes to an
    emptyDir: no provisioner is needed, and the data lives as long as the pod."""

    storage_class: Optional[str] = None  # None: the cluster's default StorageClass
    size: str = "10Gi"

    @classmethod
    def from_flags(cls, storage_class: Optional[str], size: Optional[str]) -> Optional["LokiStorage"]:
        """--loki-storage-class / --loki-size: either turns persistence on; neither leaves it off."""
        if not storage_class and not size:
            return None
        if storage_class and (len(storage_class) > 253 or not _DNS_SUBDOMAIN.match(storage_class)):
            raise UsageError(
                f"--loki-storage-class: {storage_class!r} is not a StorageClass name",
                "list the cluster's classes with `kubectl get storageclass`",
            )
        size = size or cls.size
        if not _QUANTITY.match(size) or float(re.match(r"[0-9.]+", size).group()) <= 0:
            raise UsageError(f"--loki-size: {size!r} is not a size such as 10Gi or 500Mi")
        return cls(storage_class or None, size)


def stack_values(stack: str, namespace: str, storage: Optional[LokiStorage] = None, scalable: Any = None) -> dict[str, str]:
    """Rendered values for each release of a stack: release name -> YAML text. `scalable` (a
    kaudit.core.loki_scalable.ScalableLoki) replaces the monolithic Loki of --stack loki."""
    from kaudit.core import charts

    if stack not in charts.STACKS:
        raise UsageError(f"--stack: unknown stack {stack!r}", f"choose one of: {', '.join(charts.STACKS)}")
    out: dict[str, str] = {}
    common = {
        "dashboard_label": DASHBOARD_LABEL,
        "datasource_label": DATASOURCE_LABEL,
        "loki_port": charts.LOKI_PORT,
        "loki_url": charts.loki_gateway_url(namespace) if scalable else charts.loki_base_url(namespace),
        "persistence": storage,
    }
    names = {"loki-stack": "loki-stack-values.yaml.j2", "loki": "loki-values.yaml.j2", "grafana": "grafana-values.yaml.j2"}
    for chart in charts.STACKS[stack]:
        tmpl = names[chart.chart]
        if scalable is not None and chart.chart == "loki":
            from kaudit.core import loki_scalable

            out[chart.release] = loki_scalable.render(scalable, chart, namespace)
            continue
        text = render_template(tmpl, chart=chart, **common)
        parse_yaml(text, tmpl)
        out[chart.release] = text
    return out


def dashboards() -> dict[str, str]:
    """The dashboard JSON files shipped in templates/dashboards/, checked to be JSON."""
    from kaudit.core.resources import read_resource

    out = {}
    for name in DASHBOARD_FILES:
        text = read_resource("templates", f"dashboards/{name}")
        try:
            json.loads(text)
        except json.JSONDecodeError as e:
            raise KauditError(f"templates/dashboards/{name}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
        out[name] = text
    return out


def render_dashboard_configmap(namespace: str) -> str:
    from kaudit.core import charts

    text = render_template(
        "dashboard-configmap.yaml.j2",
        name=charts.DASHBOARD_CONFIGMAP,
        namespace=namespace,
        dashboard_label=DASHBOARD_LABEL,
        managed_by=charts.MANAGED_BY_LABEL,
        dashboards=dashboards(),
    )
    parse_yaml(text, "dashboard-configmap.yaml")
    return text

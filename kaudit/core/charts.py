"""Every chart kaudit installs: repository, pinned version, release name. One place.

Versions are pinned so that a second `kaudit up` compares like with like (a floating
version would upgrade on its own) and so the values kaudit renders match the chart
they were written for. Sources: FACTS.md §4.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the namespace every kaudit release and object lives in
NAMESPACE = "kaudit"

GRAFANA_REPO = "https://grafana.github.io/helm-charts"
#: the OSS Loki and Grafana charts moved here in March 2026 (FACTS.md §4.3)
COMMUNITY_REPO = "https://grafana-community.github.io/helm-charts"

#: label on every object kaudit applies itself (not through Helm), so `kaudit down`
#: can find them with one selector
MANAGED_BY_LABEL = ("app.kubernetes.io/managed-by", "kaudit")


@dataclass(frozen=True)
class Chart:
    release: str
    chart: str
    version: str
    repo: str
    #: what the chart runs, for messages (not used to install)
    app_version: str = ""
    deprecated: bool = False

    @property
    def ref(self) -> str:
        """How `helm list` names the installed chart: NAME-VERSION."""
        return f"{self.chart}-{self.version}"


#: deprecated; runs Loki 2.6.1 whatever its appVersion says (FACTS.md §4.1)
LOKI_STACK = Chart("loki", "loki-stack", "2.10.3", GRAFANA_REPO, app_version="Loki 2.6.1", deprecated=True)
#: community Loki chart, monolithic mode: the newest version in the repository's published
#: index (docs/charts.md says why each pin is what it is; tests/test_chart_pins.py checks that
#: every pin is published and that kaudit's values fit the chart key by key)
LOKI = Chart("loki", "loki", "18.11.0", COMMUNITY_REPO, app_version="Loki 3.7.6")
GRAFANA = Chart("grafana", "grafana", "12.11.1", COMMUNITY_REPO, app_version="Grafana 13.2.0")
#: deprecated with Promtail itself (EOL 2026-03-02)
PROMTAIL = Chart("promtail", "promtail", "6.17.1", GRAFANA_REPO, app_version="Promtail 3.5.1", deprecated=True)
ALLOY = Chart("alloy", "alloy", "1.11.1", GRAFANA_REPO, app_version="Alloy v1.18.1")

STACKS: dict[str, tuple[Chart, ...]] = {
    "loki-stack": (LOKI_STACK,),
    "loki": (LOKI, GRAFANA),
}
COLLECTOR_CHARTS: dict[str, Chart] = {"promtail": PROMTAIL, "alloy": ALLOY}

#: every Helm release kaudit may install (for `kaudit down --purge-charts`)
RELEASES: tuple[str, ...] = tuple(dict.fromkeys(c.release for c in (LOKI_STACK, LOKI, GRAFANA, PROMTAIL, ALLOY)))

#: objects kaudit applies with kubectl (kind, name), all labelled MANAGED_BY_LABEL
DASHBOARD_CONFIGMAP = "kaudit-dashboards"
SHIPPER_NAME = "kaudit-shipper"
SHIPPER_CODE_CONFIGMAP = "kaudit-shipper-code"
APPLIED_OBJECTS: tuple[tuple[str, str], ...] = (
    ("configmap", DASHBOARD_CONFIGMAP),
    ("configmap", SHIPPER_CODE_CONFIGMAP),
    ("daemonset", SHIPPER_NAME),
    # object storage credentials of a scalable Loki (kaudit.core.loki_scalable)
    ("secret", "kaudit-object-storage"),
    ("secret", "kaudit-loki-auth"),  # kaudit.core.loki_auth.SECRET_NAME: credentials for --loki-url
)

#: Loki's HTTP service: both stacks name it after the release ("loki") on port 3100
LOKI_SERVICE = "loki"
LOKI_PORT = 3100


@dataclass(frozen=True)
class GrafanaAccess:
    service: str
    port: int
    secret: str
    secret_key: str = "admin-password"


GRAFANA_ACCESS: dict[str, GrafanaAccess] = {
    # loki-stack's grafana subchart is named <release>-grafana (FACTS.md §4.1)
    "loki-stack": GrafanaAccess("loki-grafana", 80, "loki-grafana"),
    "loki": GrafanaAccess("grafana", 80, "grafana"),
}

#: the Loki version each stack runs, and whether it accepts structured metadata
LOKI_VERSIONS: dict[str, tuple[str, bool]] = {"loki-stack": ("2.6.1", False), "loki": ("3.7.6", True)}


def loki_base_url(namespace: str = NAMESPACE) -> str:
    """Loki's base URL from inside the cluster."""
    return f"http://{LOKI_SERVICE}.{namespace}.svc:{LOKI_PORT}"


#: simple-scalable and distributed Loki: the chart's nginx gateway routes pushes to the
#: write path and queries to the read path (there is no single "loki" service)
LOKI_GATEWAY_SERVICE = "loki-gateway"
LOKI_GATEWAY_PORT = 80


def loki_gateway_url(namespace: str = NAMESPACE) -> str:
    return f"http://{LOKI_GATEWAY_SERVICE}.{namespace}.svc:{LOKI_GATEWAY_PORT}"

"""The shipper's DaemonSet and its code ConfigMap, rendered from the installed kaudit: pure, text out."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

from kaudit.core.errors import KauditError
from kaudit.core.render import DEFAULT_LOG_PATH, DEFAULT_LOKI_URL, STATE_DIRS, log_dir, parse_yaml_documents, render_template
from kaudit.shipper import fields as F


@dataclass(frozen=True)
class ShipperDeploy:
    """How the shipper DaemonSet runs; `sources` maps a path under code_dir to file text."""

    sources: tuple[tuple[str, str], ...]
    namespace: str = "kaudit"
    image: str = "python:3.12-slim"
    log_path: str = DEFAULT_LOG_PATH
    loki_url: str = DEFAULT_LOKI_URL
    structured_metadata: bool = False
    job: str = F.DEFAULT_JOB
    labels: tuple[tuple[str, str], ...] = ()
    tenant: Optional[str] = None
    cluster: Optional[str] = None
    #: kaudit.core.loki_auth.PodAuth: credential files from the mounted Secret
    auth: Any = None
    positions_dir: str = STATE_DIRS["shipper"]
    code_dir: str = "/opt/kaudit"
    metrics_port: int = 9101
    #: Loki's max_line_size when kaudit sized it (a scalable Loki); None: the shipper's default
    max_line_bytes: Optional[int] = None
    #: follow the audit log (kaudit up --mode log|both)
    tail_log: bool = True
    #: also receive the audit webhook here, on the node's network (--mode webhook|both)
    webhook_listen: Optional[str] = None
    webhook_tls_dir: str = "/etc/kubernetes/kaudit-webhook"

    def webhook_args(self) -> list[str]:
        """The receiver's command line: TLS files and spool on the node (docs/shipper.md, "Webhook mode")."""
        tls = self.webhook_tls_dir.rstrip("/")
        a = [
            "--listen", str(self.webhook_listen),
            "--tls-cert-file", f"{tls}/tls.crt",
            "--tls-key-file", f"{tls}/tls.key",
            "--client-ca-file", f"{tls}/ca.crt",
            "--spool-dir", f"{self.positions_dir.rstrip('/')}/spool",
            "--loki-url", self.loki_url,
            "--structured-metadata", "on" if self.structured_metadata else "off",
            "--label", f"{F.JOB_LABEL}={self.job}",
            "--node", "$(NODE_NAME)",
        ]
        return a + self._common_args()

    def _common_args(self) -> list[str]:
        """What the tailer and the webhook receiver both pass on to Loki: labels, tenant, limits, auth."""
        a = ["--cluster", self.cluster] if self.cluster else []
        for k, v in self.labels:
            a += ["--label", f"{k}={v}"]
        if self.tenant:
            a += ["--tenant", self.tenant]
        if self.max_line_bytes:
            a += ["--max-line-bytes", str(self.max_line_bytes)]
        if self.auth is not None:  # file paths only: the values stay in the Secret
            if self.auth.username:
                a += ["--basic-auth-user", self.auth.username, "--basic-auth-password-file", self.auth.password_file]
            if self.auth.bearer_token_file:
                a += ["--bearer-token-file", self.auth.bearer_token_file]
            if self.auth.ca_file:
                a += ["--ca-file", self.auth.ca_file]
        return a

    def args(self) -> list[str]:
        """The shipper's command line (docs/shipper.md); $(NODE_NAME) is expanded by the kubelet."""
        a = [
            "--path", self.log_path,
            "--loki-url", self.loki_url,
            "--positions", f"{self.positions_dir.rstrip('/')}/positions.json",
            "--structured-metadata", "on" if self.structured_metadata else "off",
            "--metrics-addr", f"0.0.0.0:{self.metrics_port}",
            "--label", f"{F.JOB_LABEL}={self.job}",
            "--node", "$(NODE_NAME)",
        ]
        return a + self._common_args()


_CM_KEY = re.compile(r"[-._a-zA-Z0-9]+\Z")


def _configmap_key(path: str) -> str:
    """The shipper package's own naming of ConfigMap keys (keys cannot hold '/')."""
    import kaudit.shipper as pkg

    fn = getattr(pkg, "configmap_key", None)
    return fn(path) if callable(fn) else path.replace("/", "__")
CONFIGMAP_LIMIT = 1024 * 1024


def render_shipper_manifest(d: ShipperDeploy) -> str:
    """ConfigMap with the shipper's code + the DaemonSet, as one YAML stream."""
    import hashlib

    from kaudit.core import charts

    code: dict[str, tuple[str, str]] = {}
    digest = hashlib.sha256()
    total = 0
    for path, text in sorted(d.sources):
        key = _configmap_key(path)
        if not _CM_KEY.match(key) or key.startswith(".."):
            raise KauditError(f"shipper file {path!r} cannot be a ConfigMap key", "rename the file: letters, digits, '-', '_' and '.' only")
        code[key] = (path, text)
        digest.update(path.encode() + b"\0" + text.encode() + b"\0")
        total += len(text.encode())
    if total > CONFIGMAP_LIMIT:
        raise KauditError(f"the shipper's code is {total} bytes, over the 1 MiB ConfigMap limit")
    text = render_template(
        "shipper-daemonset.yaml.j2",
        name=charts.SHIPPER_NAME,
        code_configmap=charts.SHIPPER_CODE_CONFIGMAP,
        namespace=d.namespace,
        managed_by=charts.MANAGED_BY_LABEL,
        code=code,
        code_sha256=digest.hexdigest(),
        image=d.image,
        args=d.args() if d.tail_log else None,
        webhook_args=d.webhook_args() if d.webhook_listen else None,
        webhook_port=int(str(d.webhook_listen).rpartition(":")[2]) if d.webhook_listen else None,
        webhook_tls_dir=d.webhook_tls_dir,
        code_dir=d.code_dir,
        log_dir=log_dir(d.log_path),
        positions_dir=d.positions_dir,
        metrics_port=d.metrics_port,
        auth=d.auth,
    )
    parse_yaml_documents(text, "shipper-daemonset.yaml")
    return text

"""Credentials for a Loki kaudit did not install (`kaudit up --loki-url`), as pure data.

The secret values (a basic-auth password, a bearer token) live in :class:`LokiCredentials`
only as :class:`kaudit.core.secret.Secret`, which prints as ``***``. They reach the
cluster in exactly one object, the Secret from :func:`secret_object`, which every
collector mounts as files; the rendered collector configs and the shipper's argv name
only those files (:class:`PodAuth`). Nothing here reads files or the environment:
kaudit.adapters.loki_credentials does that at the edge.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Optional

from kaudit.core.secret import Secret

#: the Secret the collectors read their Loki credentials from
SECRET_NAME = "kaudit-loki-auth"
#: where every collector pod mounts it (read-only)
MOUNT_DIR = "/etc/kaudit/loki-auth"
PASSWORD_KEY = "password"
TOKEN_KEY = "token"
CA_KEY = "ca.crt"


@dataclass(frozen=True)
class LokiCredentials:
    """How to authenticate to an existing Loki. ``password``/``token`` never print."""

    username: Optional[str] = None
    password: Optional[Secret] = field(default=None, repr=False)
    token: Optional[Secret] = field(default=None, repr=False)
    #: PEM text of the CA that signed Loki's certificate, and the file it came from
    ca_pem: Optional[str] = field(default=None, repr=False)
    ca_file: Optional[str] = None

    def __repr__(self) -> str:
        shown = [f"username={self.username!r}"] if self.username else []
        shown += [f"{k}=***" for k in ("password", "token") if getattr(self, k)]
        if self.ca_file:
            shown.append(f"ca_file={self.ca_file!r}")
        return f"LokiCredentials({', '.join(shown)})"

    @property
    def empty(self) -> bool:
        return not (self.username or self.token or self.ca_pem)

    def describe(self) -> str:
        """What a user may see: the kinds of credential, never a value."""
        parts = []
        if self.username:
            parts.append(f"basic auth as {self.username}")
        if self.token:
            parts.append("a bearer token")
        if self.ca_file:
            parts.append(f"CA {self.ca_file}")
        return ", ".join(parts) or "no credentials"


@dataclass(frozen=True)
class PodAuth:
    """The same credentials as the collector pods see them: file paths in the mounted Secret."""

    username: Optional[str] = None
    password_file: Optional[str] = None
    bearer_token_file: Optional[str] = None
    ca_file: Optional[str] = None
    secret_name: str = SECRET_NAME
    mount_dir: str = MOUNT_DIR


def pod_auth(creds: Optional[LokiCredentials]) -> Optional[PodAuth]:
    """The in-pod view of creds (None when there is nothing to mount)."""
    if creds is None or creds.empty:
        return None
    return PodAuth(
        username=creds.username,
        password_file=f"{MOUNT_DIR}/{PASSWORD_KEY}" if creds.username else None,
        bearer_token_file=f"{MOUNT_DIR}/{TOKEN_KEY}" if creds.token else None,
        ca_file=f"{MOUNT_DIR}/{CA_KEY}" if creds.ca_pem else None,
    )


def secret_object(namespace: str, creds: LokiCredentials, managed_by: tuple[str, str]) -> dict:
    """The one Kubernetes object that holds the values (base64 `data`, so a second
    `kubectl apply` of the same values reports it unchanged)."""

    def b64(text: str) -> str:
        return base64.b64encode(str(text).encode()).decode()

    data = {}
    if creds.username:
        data[PASSWORD_KEY] = b64(creds.password or "")
    if creds.token:
        data[TOKEN_KEY] = b64(creds.token)
    if creds.ca_pem:
        data[CA_KEY] = b64(creds.ca_pem)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": SECRET_NAME, "namespace": namespace, "labels": {managed_by[0]: managed_by[1]}},
        "data": data,
    }

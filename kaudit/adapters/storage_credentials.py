"""Object storage credentials for a scalable Loki: read from a file or the environment, never argv.

S3 and MinIO: an access key pair, from --storage-credentials FILE (``KEY=VALUE`` lines as
an env file, or the ``[default]`` profile of an AWS credentials file) or from the
environment variables AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. GCS: a service-account
key (JSON), from --storage-credentials FILE or the file GOOGLE_APPLICATION_CREDENTIALS names.
The values go into one Kubernetes Secret and nowhere else; this object's repr hides them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

from kaudit.core import loki_scalable as L
from kaudit.core.errors import UsageError

FLAG = "--storage-credentials"
#: MinIO refuses shorter root credentials (minio server: "at least 3" / "at least 8" characters)
MINIO_MIN_USER, MINIO_MIN_PASSWORD = 3, 8


@dataclass(frozen=True)
class Credentials:
    """Secret data (key -> value) and where it came from, for messages."""

    data: dict = field(repr=False)
    source: str = ""

    def keys(self) -> list[str]:
        return sorted(self.data)


def _parse_pairs(text: str, path: Path) -> dict[str, str]:
    """KEY=VALUE lines, or an INI file whose [default] section holds them (other sections ignored)."""
    out: dict[str, str] = {}
    section: Optional[str] = None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        if section not in (None, "default"):
            continue
        if line.startswith("export "):
            line = line[len("export "):]
        key, sep, value = line.partition("=")
        if not sep:
            raise UsageError(f"{FLAG} {path}:{n}: not KEY=VALUE", "write AWS_ACCESS_KEY_ID=... and AWS_SECRET_ACCESS_KEY=... lines")
        out[key.strip().lower()] = value.strip().strip("'\"")
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{FLAG} {path}: no such file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise UsageError(f"{FLAG} {path}: cannot read it ({e.__class__.__name__})") from None


def _key_pair(kind: str, file: Optional[Path], env: Mapping[str, str]) -> Optional[Credentials]:
    names = [n.lower() for n in L.S3_KEY_ENV]
    if file is not None:
        pairs = _parse_pairs(_read(file), file)
        access, secret, source = pairs.get(names[0]), pairs.get(names[1]), str(file)
        if not access or not secret:
            missing = L.S3_KEY_ENV[0] if not access else L.S3_KEY_ENV[1]
            raise UsageError(f"{FLAG} {file}: no {missing}", "the file needs AWS_ACCESS_KEY_ID=... and AWS_SECRET_ACCESS_KEY=...")
    else:
        access, secret = env.get(L.S3_KEY_ENV[0]), env.get(L.S3_KEY_ENV[1])
        source = f"the environment ({', '.join(L.S3_KEY_ENV)})"
        if not access and not secret:
            return None
        if not access or not secret:
            missing, present = L.S3_KEY_ENV if not access else L.S3_KEY_ENV[::-1]
            raise UsageError(f"{missing} is not set but {present} is", "set both, or neither")
    if kind == "minio" and (len(access) < MINIO_MIN_USER or len(secret) < MINIO_MIN_PASSWORD):
        raise UsageError(
            f"MinIO's root user needs at least {MINIO_MIN_USER} characters and its password at least {MINIO_MIN_PASSWORD} (from {source})",
            "e.g. export AWS_ACCESS_KEY_ID=kaudit AWS_SECRET_ACCESS_KEY=$(openssl rand -hex 20)",
        )
    return Credentials(L.secret_data(kind, access, secret), source)


def _gcs_key(file: Optional[Path], env: Mapping[str, str]) -> Optional[Credentials]:
    if file is None and env.get("GOOGLE_APPLICATION_CREDENTIALS"):
        file = Path(env["GOOGLE_APPLICATION_CREDENTIALS"])
    if file is None:
        return None
    text = _read(file)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"{FLAG} {file}:{e.lineno}:{e.colno}: not JSON ({e.msg})", "give a GCS service-account key file") from None
    if not isinstance(doc, dict) or "type" not in doc:
        raise UsageError(f"{FLAG} {file}: not a Google credentials file (no \"type\" field)", "give a GCS service-account key file")
    return Credentials(L.secret_data("gcs", gcs_key=text), str(file))


def load(kind: str, file: Optional[Path], env: Mapping[str, str]) -> Optional[Credentials]:
    """The credentials for `kind`, or None when none were given (Loki then uses its pods' identity)."""
    creds = _gcs_key(file, env) if kind == "gcs" else _key_pair(kind, file, env)
    if creds is None and kind == "minio":
        raise UsageError(
            "--object-storage minio needs MinIO's root credentials",
            f"set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (they become MinIO's root user), or {FLAG} FILE",
        )
    return creds

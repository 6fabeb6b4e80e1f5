"""Read the credentials for an existing Loki from files or the environment.

Values never come from the command line, so they never show in `ps`, shell
history or CI logs: a password or token is read from a file
(--loki-password-file, --loki-token-file) or from an environment variable
(KAUDIT_LOKI_PASSWORD, KAUDIT_LOKI_TOKEN), and kept as a Secret that prints as ***.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional

from kaudit.core.loki_auth import LokiCredentials
from kaudit.core.errors import UsageError
from kaudit.adapters.hosts.base import Secret

PASSWORD_ENV = "KAUDIT_LOKI_PASSWORD"
TOKEN_ENV = "KAUDIT_LOKI_TOKEN"


def _read(path: Path, flag: str) -> str:
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{flag} {path}: no such file", "give the file that holds it (one line)") from None
    except IsADirectoryError:
        raise UsageError(f"{flag} {path}: is a directory", "give the file that holds it (one line)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{flag} {path}: cannot read it: {getattr(e, 'strerror', None) or e}") from None
    value = text.strip()
    if not value:
        raise UsageError(f"{flag} {path}: the file is empty")
    return value


def load(
    *,
    username: Optional[str] = None,
    password_file: Optional[Path] = None,
    token_file: Optional[Path] = None,
    ca_file: Optional[Path] = None,
    env: Optional[Mapping[str, str]] = None,
    where: str = "",
    password_env: str = PASSWORD_ENV,
    token_env: str = TOKEN_ENV,
) -> Optional[LokiCredentials]:
    """Credentials from the options (``where`` prefixes flag names in errors, e.g. 'clusters.yaml:3: loki.').
    None when nothing was given."""
    env = os.environ if env is None else env
    p = where or "--loki-"
    password = None
    if password_file is not None:
        password = _read(password_file, f"{p}password-file")
    elif env.get(password_env):
        password = env[password_env].strip()
    token = None
    if token_file is not None:
        token = _read(token_file, f"{p}token-file")
    elif env.get(token_env):
        token = env[token_env].strip()
    if password is not None and not username:
        raise UsageError(f"a Loki password was given ({'file' if password_file else '$' + password_env}) but no {p}username", f"add {p}username NAME")
    if username and password is None:
        raise UsageError(f"{p}username {username}: no password", f"give {p}password-file FILE or set ${password_env}")
    if username and token:
        raise UsageError(f"{p}username and a bearer token exclude each other", "Loki's gateway takes one of them: drop one")
    if username is not None and (not username or ":" in username):
        raise UsageError(f"{p}username {username!r}: not a basic-auth user name (empty, or with ':')")
    ca_pem = None
    if ca_file is not None:
        ca_pem = _read(ca_file, f"{p}ca-file") + "\n"
        if "-----BEGIN CERTIFICATE-----" not in ca_pem:
            raise UsageError(f"{p}ca-file {ca_file}: not a PEM certificate", "give the CA certificate that signed Loki's, in PEM")
    creds = LokiCredentials(
        username=username or None,
        password=Secret(password) if password is not None else None,
        token=Secret(token) if token else None,
        ca_pem=ca_pem,
        ca_file=str(Path(ca_file).expanduser()) if ca_file is not None else None,
    )
    return None if creds.empty else creds

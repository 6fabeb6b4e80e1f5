"""Options for reaching an existing Loki, shared by up, verify, query and detect.

Passwords and tokens are never options: only the files (or environment
variables) holding them are (kaudit.adapters.loki_credentials).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

_PANEL = "Existing Loki"

LokiUsernameOpt = Annotated[
    Optional[str], typer.Option("--loki-username", help="Basic-auth user for Loki (the password from --loki-password-file or $KAUDIT_LOKI_PASSWORD).", rich_help_panel=_PANEL, show_default=False)
]
LokiPasswordFileOpt = Annotated[
    Optional[Path], typer.Option("--loki-password-file", metavar="FILE", help="File holding the basic-auth password (never given on the command line).", rich_help_panel=_PANEL, show_default=False)
]
LokiTokenFileOpt = Annotated[
    Optional[Path], typer.Option("--loki-token-file", metavar="FILE", help="File holding a bearer token (or set $KAUDIT_LOKI_TOKEN).", rich_help_panel=_PANEL, show_default=False)
]
LokiCaFileOpt = Annotated[
    Optional[Path], typer.Option("--loki-ca-file", metavar="FILE", help="PEM CA that signed an https Loki's certificate.", rich_help_panel=_PANEL, show_default=False)
]
LokiTenantOpt = Annotated[
    Optional[str], typer.Option("--loki-tenant", help="X-Scope-OrgID for a multi-tenant Loki.", show_default=False)
]
ClusterOpt = Annotated[
    Optional[str], typer.Option("--cluster", metavar="NAME", help="Only this cluster's events (the cluster label kaudit up sets).", show_default=False)
]


def credentials(username, password_file, token_file, ca_file):
    """LokiCredentials from the options and the environment, or None."""
    from kaudit.adapters.loki_credentials import load

    return load(username=username, password_file=password_file, token_file=token_file, ca_file=ca_file)


def cluster(name: Optional[str]) -> Optional[str]:
    if name is None:
        return None
    from kaudit.engine.cluster_name import checked

    return checked(name, "--cluster")

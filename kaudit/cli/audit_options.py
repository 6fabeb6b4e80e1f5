"""Typer options that choose the audit flags kaudit sets (shared by patch-manifest,
diff-manifest, up and verify); kaudit.core.audit_settings checks them and builds the AuditSpec."""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from kaudit.core.audit_settings import MANIFESTS_DIR

_PANEL = "Audit flags"

AuditLogPathOpt = Annotated[
    str,
    typer.Option("--audit-log-path", help="Where kube-apiserver writes the audit log (node path).", rich_help_panel=_PANEL),
]
PolicyPathOpt = Annotated[
    str,
    typer.Option(
        "--policy-path",
        help="Where the audit policy lives on the node (--audit-policy-file). Keep it outside "
        f"{MANIFESTS_DIR}: kubelet reads every file there as a pod.",
        rich_help_panel=_PANEL,
    ),
]
MaxSizeOpt = Annotated[
    str,
    typer.Option(
        "--audit-log-maxsize",
        metavar="SIZE",
        help="Rotate the log at this size: 100MiB, 1GiB, or a bare number of MiB as kube-apiserver takes it.",
        rich_help_panel=_PANEL,
    ),
]
MaxBackupOpt = Annotated[
    int,
    typer.Option("--audit-log-maxbackup", min=0, help="Rotated files to keep.", rich_help_panel=_PANEL),
]
MaxAgeOpt = Annotated[
    str,
    typer.Option(
        "--audit-log-maxage",
        metavar="DURATION",
        help="Keep rotated files this long: 7d, 168h, or a bare number of days as kube-apiserver takes it.",
        rich_help_panel=_PANEL,
    ),
]
AuditFlagOpt = Annotated[
    Optional[List[str]],
    typer.Option(
        "--audit-flag",
        metavar="NAME=VALUE",
        help="Another kube-apiserver audit flag, e.g. audit-log-format=json. Repeatable.",
        rich_help_panel=_PANEL,
        show_default=False,
    ),
]

ModeOpt = Annotated[
    str,
    typer.Option(
        "--mode",
        metavar="log|webhook|both",
        help="Audit backend: log (the file the collector tails), webhook (kube-apiserver posts to kaudit's receiver "
        "on the node, kubeconfig in /etc/kubernetes/audit-webhook.kubeconfig) or both.",
        rich_help_panel=_PANEL,
    ),
]

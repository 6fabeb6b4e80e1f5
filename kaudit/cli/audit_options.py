"""Options that choose the audit flags kaudit sets (shared by patch-manifest,
diff-manifest and up), and the one function that turns them into an AuditSpec.

Defaults are AuditSpec's; docs/manifest.md explains each of them.
"""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, List, Optional

import typer

from kaudit.errors import UsageError

# Kept in sync with kaudit.core.manifest.AuditSpec (not imported here: the CLI starts without ruamel).
DEFAULT_LOG_PATH = "/var/log/kubernetes-audit/audit.log"
DEFAULT_POLICY_PATH = "/etc/kubernetes/audit-policy.yaml"
MANIFESTS_DIR = "/etc/kubernetes/manifests"

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
    int,
    typer.Option("--audit-log-maxsize", min=0, help="Rotate the log at this many MB.", rich_help_panel=_PANEL),
]
MaxBackupOpt = Annotated[
    int,
    typer.Option("--audit-log-maxbackup", min=0, help="Rotated files to keep.", rich_help_panel=_PANEL),
]
MaxAgeOpt = Annotated[
    int,
    typer.Option("--audit-log-maxage", min=0, help="Days to keep rotated files.", rich_help_panel=_PANEL),
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

_CORE = {
    "audit-log-path": "--audit-log-path",
    "audit-policy-file": "--policy-path",
    "audit-log-maxsize": "--audit-log-maxsize",
    "audit-log-maxbackup": "--audit-log-maxbackup",
    "audit-log-maxage": "--audit-log-maxage",
}
_FLAG_NAME = re.compile(r"audit-[a-z0-9]+(-[a-z0-9]+)*")


def parse_audit_flags(values: Optional[List[str]]) -> tuple[tuple[str, str], ...]:
    """--audit-flag NAME=VALUE items -> ((name, value), ...), names without --."""
    out: dict[str, str] = {}
    for raw in values or []:
        name, eq, value = raw.partition("=")
        name = name.strip().lstrip("-")
        if not eq or not _FLAG_NAME.fullmatch(name):
            raise UsageError(
                f"--audit-flag {raw!r}: expected NAME=VALUE with an audit-* flag name",
                "for example --audit-flag audit-log-format=json",
            )
        if name in _CORE:
            raise UsageError(f"--audit-flag {raw!r}: set {name} with {_CORE[name]} instead")
        out[name] = value
    return tuple(out.items())


def audit_spec_from_options(
    audit_log_path: str = DEFAULT_LOG_PATH,
    policy_path: str = DEFAULT_POLICY_PATH,
    maxsize: int = 100,
    maxbackup: int = 10,
    maxage: int = 7,
    audit_flag: Optional[List[str]] = None,
):
    """An AuditSpec (kaudit.core.manifest) from the options above; bad values are UsageErrors."""
    from kaudit.core.manifest import AuditSpec

    for opt, path in (("--audit-log-path", audit_log_path), ("--policy-path", policy_path)):
        if not path.startswith("/") or path.endswith("/") or any(c in path for c in "\n\r\0"):
            raise UsageError(
                f"{opt} {path!r}: must be an absolute file path on the node",
                "for example " + (DEFAULT_LOG_PATH if opt == "--audit-log-path" else DEFAULT_POLICY_PATH),
            )
    log_dir = posixpath.dirname(audit_log_path)
    if log_dir == "/" or posixpath.normpath(log_dir) == posixpath.normpath(MANIFESTS_DIR):
        raise UsageError(
            f"--audit-log-path {audit_log_path}: kaudit mounts the log's directory writable; "
            f"{log_dir} is not a directory to hand to kube-apiserver",
            f"use a directory of its own, e.g. {DEFAULT_LOG_PATH}",
        )
    return AuditSpec(
        log_path=audit_log_path,
        policy_path=policy_path,
        maxsize=maxsize,
        maxbackup=maxbackup,
        maxage=maxage,
        extra_flags=parse_audit_flags(audit_flag),
    )


def policy_path_warning(policy_path: str) -> Optional[str]:
    """A warning when the policy would sit where kubelet reads pod manifests (the seed's choice)."""
    parent, base = posixpath.split(posixpath.normpath(policy_path))
    if parent == MANIFESTS_DIR and not base.startswith("."):
        return (
            f"--policy-path {policy_path} is inside {MANIFESTS_DIR}: kubelet reads every non-dot file "
            f"there as a pod manifest and logs an error for the policy; {DEFAULT_POLICY_PATH} avoids that"
        )
    return None

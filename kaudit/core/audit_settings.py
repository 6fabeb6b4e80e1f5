"""The audit flags kaudit sets, from the values a user gives: defaults, checks, and the one
function that turns them into an AuditSpec (shared by patch-manifest, diff-manifest, up, verify).

Pure: values in, an AuditSpec or a UsageError out. docs/manifest.md explains each default.
"""

from __future__ import annotations

import posixpath
import re
from typing import List, Optional

from kaudit.core.errors import UsageError

# Kept in sync with kaudit.core.manifest.AuditSpec (not imported here: the CLI starts without ruamel).
DEFAULT_LOG_PATH = "/var/log/kubernetes-audit/audit.log"
DEFAULT_POLICY_PATH = "/etc/kubernetes/audit-policy.yaml"
MANIFESTS_DIR = "/etc/kubernetes/manifests"

MODES = ("log", "webhook", "both")

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


DEFAULT_MAXSIZE = "100MiB"
DEFAULT_MAXBACKUP = 10
DEFAULT_MAXAGE = "7d"


def parse_maxsize(value: "str | int") -> int:
    """--audit-log-maxsize -> whole MiB (lumberjack's megabyte is 1024*1024 bytes)."""
    from kaudit.core.units import parse_size

    text = str(value).strip()
    if text.isdigit():
        return int(text)
    size = parse_size(text, field="--audit-log-maxsize")
    if size % (1024 * 1024):
        raise UsageError(f"--audit-log-maxsize {text}: kube-apiserver takes whole MiB", "for example 100MiB or 1GiB")
    return size // (1024 * 1024)


def parse_maxage(value: "str | int") -> int:
    """--audit-log-maxage -> whole days."""
    from kaudit.core.units import parse_duration

    text = str(value).strip()
    if text.isdigit():
        return int(text)
    seconds = parse_duration(text, field="--audit-log-maxage")
    if seconds % 86400:
        raise UsageError(f"--audit-log-maxage {text}: kube-apiserver keeps files for whole days", "for example 7d or 168h")
    return int(seconds // 86400)


def audit_spec_from_options(
    audit_log_path: str = DEFAULT_LOG_PATH,
    policy_path: str = DEFAULT_POLICY_PATH,
    maxsize: "str | int" = DEFAULT_MAXSIZE,
    maxbackup: int = DEFAULT_MAXBACKUP,
    maxage: "str | int" = DEFAULT_MAXAGE,
    audit_flag: Optional[List[str]] = None,
    mode: str = "log",
):
    """An AuditSpec (kaudit.core.manifest) from the options above; bad values are UsageErrors.

    A command that takes the options passes them straight through::

        spec = audit_spec_from_options(audit_log_path, policy_path, maxsize, maxbackup, maxage, audit_flag)
    """
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
    if mode not in MODES:
        raise UsageError(f"--mode {mode!r}: choose log, webhook or both", "log is kaudit's default (the audit log file)")
    return AuditSpec(
        mode=mode,
        log_path=audit_log_path,
        policy_path=policy_path,
        maxsize=parse_maxsize(maxsize),
        maxbackup=maxbackup,
        maxage=parse_maxage(maxage),
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

"""Reaching nodes: see base.Host for the seam; open_host() turns --host into a Host."""

from __future__ import annotations

import os
from typing import Optional

from kaudit.errors import UsageError
from kaudit.hosts.base import FileStat, Host, Result, Secret, display_command, shell_join

__all__ = ["FileStat", "Host", "Result", "Secret", "display_command", "shell_join", "open_host"]


def open_host(
    spec: str,
    *,
    rootfs: Optional[os.PathLike[str] | str] = None,
    ssh_key: Optional[os.PathLike[str] | str] = None,
    accept_new_host_key: bool = False,
    known_hosts: Optional[os.PathLike[str] | str] = None,
) -> Host:
    """Turn a --host value into a Host: local, lima:NAME, ssh://user@host[:port]."""
    if rootfs and spec != "local":
        raise UsageError(f"--rootfs works only with --host local, not {spec!r}")
    if spec == "local":
        from kaudit.hosts.local import LocalHost

        return LocalHost(rootfs)
    raise UsageError(
        f"--host {spec!r} is not a host kaudit knows",
        "write lima:NAME, ssh://user@host[:port] or local",
    )

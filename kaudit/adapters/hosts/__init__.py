"""Reaching nodes: see base.Host for the seam; open_host() turns --host into a Host."""

from __future__ import annotations

import os
from typing import Optional

from kaudit.core.errors import UsageError
from kaudit.core.host_spec import HOST_FORMS, LIMA_NAME, parse_ssh_url
from kaudit.adapters.hosts.base import FileStat, Host, Result, Secret, display_command, shell_join

__all__ = ["FileStat", "Host", "Result", "Secret", "display_command", "shell_join", "open_host", "parse_ssh_url"]

def open_host(
    spec: str,
    *,
    rootfs: Optional[os.PathLike[str] | str] = None,
    ssh_key: Optional[os.PathLike[str] | str] = None,
    accept_new_host_key: bool = False,
    known_hosts: Optional[os.PathLike[str] | str] = None,
) -> Host:
    """Turn a --host value into a Host: local, lima:NAME, ssh://user@host[:port].

    Nothing connects here: an SSH host connects on its first command, so every
    connection error surfaces as one KauditError from the command that needed it.
    """
    if rootfs and spec != "local":
        raise UsageError(f"--rootfs works only with --host local, not {spec!r}")
    if spec == "local":
        from kaudit.adapters.hosts.local import LocalHost

        if rootfs and not os.path.isdir(rootfs):
            # a mistyped --rootfs would otherwise get a fresh etc/kubernetes tree written into it
            what = "is not a directory" if os.path.exists(rootfs) else "no such directory"
            raise UsageError(f"--rootfs {rootfs}: {what}", "give the directory that holds the node's files (DIR/etc/kubernetes/...)")

        return LocalHost(rootfs)
    if spec.startswith("lima:"):
        name = spec[len("lima:"):]
        if not LIMA_NAME.match(name):
            raise UsageError(
                f"--host {spec!r}: {name!r} is not a Lima instance name",
                "Lima names are letters and digits joined by single '.', '_' or '-', e.g. lima:k8s",
            )
        from kaudit.adapters.hosts.lima import LimaHost

        return LimaHost(name)
    if spec.startswith("ssh://"):
        user, hostname, port = parse_ssh_url(spec)
        from kaudit.adapters.hosts.ssh import SshHost

        return SshHost(
            hostname, user=user, port=port, key_path=ssh_key,
            known_hosts=known_hosts, accept_new_host_key=accept_new_host_key,
        )
    raise UsageError(f"--host {spec!r} is not a host kaudit knows", HOST_FORMS)

"""Reaching nodes: see base.Host for the seam; open_host() turns --host into a Host."""

from __future__ import annotations

import os
import re
from typing import Optional

from kaudit.errors import UsageError
from kaudit.hosts.base import FileStat, Host, Result, Secret, display_command, shell_join

__all__ = ["FileStat", "Host", "Result", "Secret", "display_command", "shell_join", "open_host", "parse_ssh_url"]

# Lima's instance-name rule (pkg/identifiers): alphanumerics joined by single . _ -
LIMA_NAME = re.compile(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$")
HOST_FORMS = "write lima:NAME, ssh://user@host[:port] or local"


def parse_ssh_url(spec: str) -> tuple[str, str, int]:
    """ssh://user@host[:port] -> (user, host, port). The user defaults to the
    local user name, as with ssh(1). Raises UsageError on anything else."""
    from urllib.parse import urlsplit

    try:
        u = urlsplit(spec)
        port = u.port
    except ValueError as e:
        raise UsageError(f"--host {spec!r}: {e}", "write ssh://user@host[:port] with a port from 1 to 65535") from None
    if u.password is not None:
        raise UsageError(f"--host {spec!r}: passwords in the URL are not supported", "use a key: --ssh-key PATH or the SSH agent")
    if u.path not in ("", "/") or u.query or u.fragment:
        raise UsageError(f"--host {spec!r}: unexpected path or query after the host", "write ssh://user@host[:port]")
    if not u.hostname:
        raise UsageError(f"--host {spec!r}: no host name", "write ssh://user@host[:port]")
    if port == 0:
        raise UsageError(f"--host {spec!r}: port 0 is not a port", "write ssh://user@host[:port] with a port from 1 to 65535")
    user = u.username
    if user is None:
        import getpass

        user = getpass.getuser()
    if not user or any(c in user for c in " /:@"):
        raise UsageError(f"--host {spec!r}: bad user name {user!r}", "write ssh://user@host[:port]")
    return user, u.hostname, port or 22


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
        from kaudit.hosts.local import LocalHost

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
        from kaudit.hosts.lima import LimaHost

        return LimaHost(name)
    if spec.startswith("ssh://"):
        user, hostname, port = parse_ssh_url(spec)
        from kaudit.hosts.ssh import SshHost

        return SshHost(
            hostname, user=user, port=port, key_path=ssh_key,
            known_hosts=known_hosts, accept_new_host_key=accept_new_host_key,
        )
    raise UsageError(f"--host {spec!r} is not a host kaudit knows", HOST_FORMS)

"""What a --host value may be: lima:NAME, ssh://user@host[:port] or local. Pure parsing, shared by
kaudit.adapters.hosts (which opens hosts) and kaudit.core.inventory (which checks an inventory file)."""

from __future__ import annotations

import re

from kaudit.core.errors import UsageError

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

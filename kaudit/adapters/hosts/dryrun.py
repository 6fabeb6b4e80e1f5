"""--dry-run without trusting every `if dry_run:`: a Host that reads but never writes.

kubeadm's dry-run swaps in a client that records mutations instead of making
them; this is the same idea at kaudit's seam. Reads go to the real node (the
plan needs real facts), file writes are recorded and not performed, and a
command that is not known to be read-only is refused with an error, so a phase
that forgot its dry-run branch fails loudly instead of changing the node.
"""

from __future__ import annotations

from kaudit.core.errors import KauditError
from kaudit.adapters.hosts.base import Host, Result, display_command

# argv prefixes that only read
_READ_ONLY = (
    ("cat",), ("test",), ("stat",), ("ls",), ("hostname",),
    ("kubectl", "get"), ("kubectl", "version"),
    ("crictl", "ps"), ("crictl", "logs"), ("crictl", "inspect"),
    ("journalctl",),
)


def _read_only(argv: list[str]) -> bool:
    if argv[:2] == ["sh", "-c"] and len(argv) > 2 and argv[2].startswith("command -v"):
        return True
    words = list(argv)
    if words[:1] == ["kubectl"]:  # kubectl's global flags come before the verb
        rest, skip = [], False
        for a in words[1:]:
            if skip:
                skip = False
            elif a == "--kubeconfig":
                skip = True
            elif not a.startswith(("--kubeconfig=", "--request-timeout=")):
                rest.append(a)
        words = ["kubectl", *rest]
    return any(tuple(words[: len(p)]) == p for p in _READ_ONLY)


class _Recording:
    """Mixed in before the real host's class, so isinstance checks and the
    host's own read methods keep working; only writes and commands change."""

    inner: Host
    recorded: list

    def _exec(self, argv, *, input, timeout, sudo) -> Result:
        if not _read_only(argv):
            raise KauditError(
                f"dry run: refusing to run {display_command(argv)} on {self.name}",
                "this is a kaudit bug (a phase without a dry-run plan); please report it",
            )
        return self.inner._exec(argv, input=input, timeout=timeout, sudo=sudo)

    def write_file(self, path: str, data: bytes, *, mode: int = 0o600, atomic: bool = True) -> None:
        self.recorded.append(("write", path, len(data), mode))

    def remove(self, path: str) -> None:
        self.recorded.append(("remove", path))

    def makedirs(self, path: str, mode: int = 0o700) -> None:
        self.recorded.append(("mkdir", path))

    def rename(self, src: str, dst: str) -> None:
        self.recorded.append(("rename", src, dst))


def recording(inner: Host) -> Host:
    """A dry-run view of ``inner``: same class (plus the recorder), same connection."""
    cls = type(f"DryRun{type(inner).__name__}", (_Recording, type(inner)), {})
    obj = cls.__new__(cls)
    obj.__dict__.update(inner.__dict__)
    obj.inner = inner
    obj.recorded = []
    return obj

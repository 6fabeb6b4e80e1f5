"""The one seam through which kaudit touches a node.

Every command kaudit runs on a node, and every file it reads or writes there,
goes through a :class:`Host`. Commands are argv lists; they are turned into a
shell string only at the transport edge (:func:`shell_join`), so no user value
is ever pasted into a shell unquoted. Values wrapped in :class:`Secret` print as
``***`` in messages and logs.

Implementations: ``local`` (subprocess, optional rootfs), ``lima``
(``limactl shell``), ``ssh`` (paramiko). Tests use the real local host on a
temporary tree, the real ssh host against a loopback sshd, and test doubles of
programs on PATH.
"""

from __future__ import annotations

import posixpath
import shlex
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence, Union

from kaudit.core.errors import CommandError, KauditError
from kaudit.core.secret import Secret


Arg = Union[str, Secret]


def shell_join(argv: Sequence[Arg]) -> str:
    """Quote argv for a POSIX shell: the only place a command becomes a string."""
    return " ".join(shlex.quote(str(a)) for a in argv)


def display_command(argv: Sequence[Arg]) -> str:
    """A copy-pasteable rendering of argv with secrets masked."""
    return " ".join("***" if isinstance(a, Secret) else shlex.quote(str(a)) for a in argv)


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def out(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "replace")


@dataclass(frozen=True)
class FileStat:
    size: int
    mtime: float
    mode: int  # permission bits only, e.g. 0o600
    uid: int
    inode: int = 0


class Host(ABC):
    """A node kaudit works on. Paths are always the node's own paths."""

    #: how the host is named in messages: "local", "lima:k8s", "ssh://ubuntu@10.0.0.5:22"
    name: str = "host"

    # -- commands ----------------------------------------------------------
    @abstractmethod
    def _exec(self, argv: list[str], *, input: bytes | None, timeout: float | None, sudo: bool) -> Result:
        """Run argv on the node and return its result; never raises for a non-zero exit."""

    def run(
        self,
        argv: Sequence[Arg],
        *,
        input: bytes | None = None,
        check: bool = True,
        timeout: float | None = None,
        sudo: bool = True,
        hint: str | None = None,
    ) -> Result:
        """Run a command. With check=True a non-zero exit raises CommandError
        carrying the command (secrets masked), its exit code and output tails."""
        result = self._exec([str(a) for a in argv], input=input, timeout=timeout, sudo=sudo)
        if check and result.returncode != 0:
            raise CommandError(
                display_command(argv), result.returncode, result.out, result.err, host=self.name, hint=hint
            )
        return result

    def command_path(self, node_path: str) -> str:
        """The path a command run through this host must name for a node path.
        The node's own path everywhere but under --rootfs, where it lies below DIR."""
        return node_path

    def which(self, program: str) -> bool:
        return self.run(["sh", "-c", 'command -v "$1" >/dev/null', "sh", program], check=False, sudo=False).ok

    # -- files (generic versions built on run(); local and ssh override) ---
    def read_file(self, path: str) -> bytes:
        """The file's bytes. Raises KauditError naming host and path if it is absent."""
        r = self.run(["cat", "--", path], check=False)
        if r.returncode != 0:
            raise KauditError(f"{self.name}: cannot read {path}: {r.err.strip() or 'exit ' + str(r.returncode)}")
        return r.stdout

    def exists(self, path: str) -> bool:
        return self.run(["test", "-e", path], check=False).ok

    def stat(self, path: str) -> FileStat | None:
        r = self.run(["stat", "-c", "%s %Y %a %u %i", "--", path], check=False)
        if not r.ok:
            return None
        size, mtime, mode, uid, ino = r.out.split()
        return FileStat(int(size), float(mtime), int(mode, 8), int(uid), int(ino))

    def write_file(self, path: str, data: bytes, *, mode: int = 0o600, atomic: bool = True) -> None:
        """Write data to path, creating the parent directory.

        Atomic: the bytes go to a dot-prefixed temp file in the same directory
        (kubelet ignores dot files in the manifests dir), are fsynced, and the
        temp file is renamed over the target. A failure leaves the target as it was.
        """
        parent = posixpath.dirname(path) or "/"
        base = posixpath.basename(path)
        tmp = posixpath.join(parent, f".{base}.kaudit-tmp") if atomic else path
        script = (
            'set -e; umask 077; mkdir -p -- "$1"; cat > "$2"; chmod "$4" -- "$2"; '
            'sync -- "$2" 2>/dev/null || sync; '
            'if [ "$2" != "$3" ]; then mv -f -- "$2" "$3"; fi'
        )
        r = self.run(["sh", "-c", script, "sh", parent, tmp, path, format(mode, "o")], input=data, check=False)
        if not r.ok:
            self.run(["rm", "-f", "--", tmp], check=False)
            raise KauditError(
                f"{self.name}: cannot write {path}: {r.err.strip() or 'exit ' + str(r.returncode)}",
                "check that the user may use sudo on the node and the disk is not full",
            )

    def remove(self, path: str) -> None:
        self.run(["rm", "-f", "--", path])

    def makedirs(self, path: str, mode: int = 0o700) -> None:
        self.run(["mkdir", "-p", "-m", format(mode, "o"), "--", path])

    def rename(self, src: str, dst: str) -> None:
        self.run(["mv", "-f", "--", src, dst])

    def listdir(self, path: str) -> list[str]:
        r = self.run(["ls", "-1A", "--", path], check=False)
        return r.out.split() if r.ok else []

    def close(self) -> None:
        """Release connections. Safe to call twice."""

    def __enter__(self) -> "Host":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

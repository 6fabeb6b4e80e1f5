"""The node kaudit itself runs on, optionally rooted at a directory (--rootfs).

With ``rootfs`` every node path is read and written under that directory, the
way kubeadm's ``--rootfs`` works: an offline node image, or a test tree shaped
like a kubeadm node. Commands still run on this machine as the current user.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from kaudit.core.errors import KauditError
from kaudit.adapters.hosts.base import FileStat, Host, Result


class LocalHost(Host):
    def __init__(self, rootfs: str | os.PathLike[str] | None = None, *, env: dict[str, str] | None = None):
        self.rootfs = Path(rootfs).resolve() if rootfs else None
        self.env = env
        self.name = f"local (rootfs {self.rootfs})" if self.rootfs else "local"

    # -- paths ---------------------------------------------------------------
    def path(self, node_path: str) -> Path:
        """Where a node path lives on this machine."""
        if self.rootfs is None:
            return Path(node_path)
        return self.rootfs / node_path.lstrip("/")

    def command_path(self, node_path: str) -> str:
        return str(self.path(node_path))

    # -- commands --------------------------------------------------------------
    def _exec(self, argv: list[str], *, input: bytes | None, timeout: float | None, sudo: bool) -> Result:
        if sudo and self.rootfs is None and os.geteuid() != 0:
            argv = ["sudo", "-n", "--", *argv]
        env = None if self.env is None else {**os.environ, **self.env}
        try:
            cp = subprocess.run(
                argv, input=input, capture_output=True, timeout=timeout, env=env,
                stdin=None if input is not None else subprocess.DEVNULL,
            )
        except FileNotFoundError:
            return Result(tuple(argv), 127, b"", f"{argv[0]}: command not found\n".encode())
        except subprocess.TimeoutExpired as e:
            return Result(tuple(argv), 124, e.stdout or b"", (e.stderr or b"") + f"timed out after {timeout}s\n".encode())
        return Result(tuple(argv), cp.returncode, cp.stdout, cp.stderr)

    # -- files -----------------------------------------------------------------
    def read_file(self, path: str) -> bytes:
        try:
            return self.path(path).read_bytes()
        except OSError as e:
            raise KauditError(f"{self.name}: cannot read {path}: {e.strerror}") from None

    def exists(self, path: str) -> bool:
        return self.path(path).exists()

    def stat(self, path: str) -> FileStat | None:
        try:
            st = self.path(path).stat()
        except OSError:
            return None
        return FileStat(st.st_size, st.st_mtime, st.st_mode & 0o7777, st.st_uid, st.st_ino)

    def write_file(self, path: str, data: bytes, *, mode: int = 0o600, atomic: bool = True) -> None:
        target = self.path(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if not atomic:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.chmod(target, mode)
                return
            # dot-prefixed so kubelet never reads a half-written manifest
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".kaudit-tmp", dir=target.parent)
        except OSError as e:
            raise KauditError(f"{self.name}: cannot write {path}: {e.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, target)
            dfd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as e:
            Path(tmp).unlink(missing_ok=True)
            raise KauditError(f"{self.name}: cannot write {path}: {e.strerror}") from None

    def remove(self, path: str) -> None:
        self.path(path).unlink(missing_ok=True)

    def makedirs(self, path: str, mode: int = 0o700) -> None:
        self.path(path).mkdir(parents=True, exist_ok=True, mode=mode)

    def rename(self, src: str, dst: str) -> None:
        os.replace(self.path(src), self.path(dst))

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self.path(path)))
        except OSError:
            return []

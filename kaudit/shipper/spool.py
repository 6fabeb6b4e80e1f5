"""The webhook receiver's disk queue: accepted events as JSON lines, fsync'd before the 200.

Standard library only. The spool is written like kube-apiserver writes its audit log, so
the file-mode machinery ships it unchanged: ``events.jsonl`` grows, and at
``segment_bytes`` it is renamed to ``events-<12-digit sequence>.jsonl`` (lumberjack's
shape, which tail.Follower follows by inode) and a new one is created. The shipper's
positions file (in the same directory) says how far Loki acknowledged; segments
wholly before that are deleted. So a receiver restart, a Loki outage or a kill -9 loses
nothing that was answered 200: it was on disk, and its offset was not yet acknowledged.
"""

from __future__ import annotations

import os
import re
import threading

ACTIVE = "events.jsonl"
_BACKUP = re.compile(r"events-(\d{12})\.jsonl\Z")


class SpoolFull(Exception):
    """The spool holds max_bytes already (Loki has been unreachable for long)."""


class Spool:
    def __init__(self, directory: str, *, segment_bytes: int = 8 << 20, max_bytes: int = 1 << 30):
        self.dir = os.path.abspath(directory)
        self.path = os.path.join(self.dir, ACTIVE)
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._size = 0
        self._backlog = 0  # bytes in rotated segments, refreshed on rotation and cleanup

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> "Spool":
        """Create the directory, cut a torn last line (a crash in the middle of a write,
        never acknowledged) and open the active segment for appending."""
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        size = os.fstat(fd).st_size
        if size:
            keep = _last_newline_end(fd, size)
            if keep != size:
                os.ftruncate(fd, keep)
                os.fsync(fd)
                size = keep
        self._fd, self._size = fd, size
        _fsync_dir(self.dir)
        self._backlog = sum(s for _, s in self._backups())
        return self

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    # ------------------------------------------------------------------ writing
    def append(self, lines: list[bytes]) -> None:
        """Write whole lines and fsync them; returns only once they are durable.
        Raises SpoolFull, or OSError (disk full, I/O error), in which case nothing counts."""
        data = b"\n".join(lines) + b"\n"
        with self._lock:
            if self._fd is None:
                raise OSError("spool is closed")
            if self._backlog + self._size + len(data) > self.max_bytes:
                raise SpoolFull(f"spool {self.dir} holds {self._backlog + self._size} bytes (limit {self.max_bytes})")
            start = self._size
            try:
                view = memoryview(data)
                while view:
                    n = os.write(self._fd, view)
                    view = view[n:]
                os.fsync(self._fd)
            except OSError:
                os.ftruncate(self._fd, start)  # no partial batch: the client is told to send it again
                raise
            self._size = start + len(data)
            if self._size >= self.segment_bytes:
                self._rotate()

    def _rotate(self) -> None:
        seq = max((n for n, _ in self._backup_numbers()), default=0) + 1
        os.rename(self.path, os.path.join(self.dir, f"events-{seq:012d}.jsonl"))
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        _fsync_dir(self.dir)
        self._backlog += self._size
        self._size = 0

    # ------------------------------------------------------------------ cleanup
    def release(self, dev: int, ino: int) -> int:
        """Delete the rotated segments older than the file (dev, ino), which the shipper is
        reading (everything before it is acknowledged). Returns how many were deleted."""
        with self._lock:
            backups = self._backups()
            target = None
            for i, (name, _) in enumerate(backups):
                st = _stat(name)
                if st is not None and (st.st_dev, st.st_ino) == (dev, ino):
                    target = i
                    break
            if target is None:
                st = _stat(self.path)
                if st is None or (st.st_dev, st.st_ino) != (dev, ino):
                    return 0  # not found: delete nothing
                target = len(backups)
            deleted = 0
            for name, _ in backups[:target]:
                try:
                    os.unlink(name)
                    deleted += 1
                except FileNotFoundError:
                    pass
            if deleted:
                _fsync_dir(self.dir)
            self._backlog = sum(s for _, s in self._backups())
            return deleted

    def stored_bytes(self) -> int:
        return self._backlog + self._size

    def _backup_numbers(self) -> list[tuple[int, str]]:
        out = []
        for n in os.listdir(self.dir):
            m = _BACKUP.match(n)
            if m:
                out.append((int(m.group(1)), os.path.join(self.dir, n)))
        return sorted(out)

    def _backups(self) -> list[tuple[str, int]]:
        out = []
        for _, name in self._backup_numbers():
            st = _stat(name)
            if st is not None:
                out.append((name, st.st_size))
        return out


def _last_newline_end(fd: int, size: int) -> int:
    """Offset just past the last newline of the file (0 if none)."""
    pos = size
    while pos > 0:
        start = max(0, pos - 65536)
        block = os.pread(fd, pos - start, start)
        nl = block.rfind(b"\n")
        if nl >= 0:
            return start + nl + 1
        pos = start
    return 0


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _stat(path: str):
    try:
        return os.stat(path)
    except OSError:
        return None

"""Follow one audit log across rotations, returning complete lines with their file offsets.

kube-apiserver rotates by rename and create (lumberjack): ``audit.log`` becomes
``audit-2026-11-28T23-13-43.957.log`` (same inode) and a new ``audit.log`` appears.
The follower keeps reading the renamed file through its open descriptor until its
end, then opens the new file at offset 0. Copy-truncate rotation shows up as a file
shorter than the read offset: reading restarts at 0. A partial last line waits for its
newline (except at the end of a renamed file, which will never grow again).
Compressed backups (``.gz``) are never read.

After a restart, the (dev, inode) from the positions file is looked up first as the
active file, then among the rotated backups; a backup found that way is finished
first, followed by any newer backups, then the active file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from kaudit.shipper.positions import Position

CHUNK = 1 << 20


@dataclass
class Chunk:
    """Complete lines read from one file. Line i ends at offsets[i] (the byte after its newline)."""

    file: str
    dev: int
    ino: int
    lines: list[bytes]
    start: int  # offset of the first line

    def ends(self):
        off = self.start
        for line in self.lines:
            off += len(line) + 1
            yield off


@dataclass
class _Open:
    name: str
    fd: int
    dev: int
    ino: int
    pos: int  # offset of the next byte to read
    final: bool  # a rotated backup: it will not grow, its last partial line is complete
    pending: bytes = b""


def rotated_backups(path: str) -> list[str]:
    """lumberjack's backups of `path`, oldest first: <stem>-<UTC timestamp><ext>, never .gz."""
    directory, base = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(base)
    rx = re.compile(re.escape(stem) + r"-.+" + re.escape(ext) + r"\Z")
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return [os.path.join(directory, n) for n in sorted(names) if rx.match(n) and not n.endswith(".gz")]


@dataclass
class Follower:
    path: str
    start_at: str = "beginning"  # first start only: "beginning" | "end"
    notes: list[str] = field(default_factory=list)  # human-readable events (rotations, resumes) for the log
    rotations: int = 0
    truncations: int = 0

    def __post_init__(self) -> None:
        self.path = os.path.abspath(self.path)
        self._cur: _Open | None = None
        self._queue: list[tuple[str, int, int, int]] = []  # (name, dev, ino, offset) to read before the active file
        self._started = False

    # ----------------------------------------------------------------- lifecycle
    def resume(self, saved: Position | None) -> Position | None:
        """Decide where to start. Returns the initial position to record (first start), else None."""
        self._started = True
        st = _stat(self.path)
        if saved is None:
            if st is None:
                self.notes.append(f"{self.path} does not exist yet; waiting for it")
                return None
            offset = st.st_size if self.start_at == "end" else 0
            self._open(self.path, offset, final=False)
            return Position(st.st_dev, st.st_ino, offset, self.path)
        if st is not None and (st.st_dev, st.st_ino) == (saved.dev, saved.ino):
            offset = saved.offset
            if st.st_size < offset:
                self.truncations += 1
                self.notes.append(f"{self.path} is shorter than the saved offset {offset} (copy-truncate?): reading it from 0")
                offset = 0
            self._open(self.path, offset, final=False)
            return None
        found = self._queue_backups_after(saved.dev, saved.ino, include=True)
        if found is not None:
            name, size = found
            self.notes.append(f"{self.path} was rotated while stopped: finishing {os.path.basename(name)} first")
            offset = saved.offset if size >= saved.offset else 0
            self._queue[0] = (name, saved.dev, saved.ino, offset)
            self._next()
            return None
        if st is not None:
            self.notes.append(
                f"the file recorded in the positions file (inode {saved.ino}) is gone (compressed or deleted?); "
                f"reading {self.path} from the start"
            )
            self._open(self.path, 0, final=False)
        return None

    def close(self) -> None:
        if self._cur:
            os.close(self._cur.fd)
            self._cur = None

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete last line waiting for its newline."""
        return len(self._cur.pending) if self._cur else 0

    # ----------------------------------------------------------------- reading
    def read(self, size: int = CHUNK) -> Chunk | None:
        """The next complete lines, or None when there is nothing new right now."""
        for _ in range(8):  # rotations/truncations handled inline; bounded
            cur = self._cur
            if cur is None:
                if not self._queue and not self._reopen_active():
                    return None
                if self._cur is None:
                    self._next()
                cur = self._cur
                if cur is None:
                    return None
            data = os.read(cur.fd, size)
            if data:
                return self._split(cur, data)
            st = os.fstat(cur.fd)
            if st.st_size < cur.pos:  # copy-truncate: the file was emptied under us
                self.truncations += 1
                self.notes.append(f"{cur.name} was truncated (copy-truncate rotation): reading it from 0")
                os.lseek(cur.fd, 0, os.SEEK_SET)
                cur.pos, cur.pending = 0, b""
                continue
            if cur.final or self._rotated_away(cur):
                # the renamed file is complete: its last partial line (if any) is a whole line
                last = cur.pending
                start = cur.pos - len(last) - 1  # no newline: make Chunk.ends() land on the file's end
                name, dev, ino = cur.name, cur.dev, cur.ino
                self.close()
                if not self._queue:
                    # more rotations may have happened meanwhile: take every newer backup first
                    self._queue_backups_after(dev, ino)
                if not cur.final:
                    self.rotations += 1
                    skipped = f" after {len(self._queue)} newer rotated file(s)" if self._queue else ""
                    self.notes.append(f"{self.path} was rotated: finished the old file, following the new one{skipped}")
                self._next()
                if last:
                    return Chunk(name, dev, ino, [last], start)
                continue
            return None
        return None

    @property
    def at_end(self) -> bool:
        """Nothing queued, following the active file, and no data beyond the read offset."""
        if self._queue:
            return False
        cur = self._cur
        if cur is None:
            return _stat(self.path) is None
        if cur.final or os.fstat(cur.fd).st_size > cur.pos:
            return False
        return not self._rotated_away(cur)

    # ----------------------------------------------------------------- internals
    def _split(self, cur: _Open, data: bytes) -> Chunk | None:
        start = cur.pos - len(cur.pending)
        cur.pos += len(data)
        buf = cur.pending + data if cur.pending else data
        nl = buf.rfind(b"\n")
        if nl < 0:
            cur.pending = buf
            return Chunk(cur.name, cur.dev, cur.ino, [], start)
        cur.pending = buf[nl + 1:]
        return Chunk(cur.name, cur.dev, cur.ino, buf[:nl].split(b"\n"), start)

    def _queue_backups_after(self, dev: int, ino: int, include: bool = False) -> tuple[str, int] | None:
        """Queue the rotated backups newer than the one with (dev, ino): when the writer rotated
        more than once since we last looked (or while we were stopped or retrying), none is skipped.
        Returns (name, size) of the backup found, or None."""
        backups = rotated_backups(self.path)
        for i, name in enumerate(backups):
            st = _stat(name)
            if st is not None and (st.st_dev, st.st_ino) == (dev, ino):
                later = [(b, _stat(b)) for b in backups[i + 1:]]
                self._queue = ([(name, dev, ino, 0)] if include else []) + [
                    (b, bst.st_dev, bst.st_ino, 0) for b, bst in later if bst is not None]
                return name, st.st_size
        return None

    def _rotated_away(self, cur: _Open) -> bool:
        st = _stat(self.path)
        return st is not None and (st.st_dev, st.st_ino) != (cur.dev, cur.ino)

    def _open(self, name: str, offset: int, final: bool) -> bool:
        try:
            fd = os.open(name, os.O_RDONLY)
        except FileNotFoundError:
            return False
        st = os.fstat(fd)
        if offset:
            os.lseek(fd, offset, os.SEEK_SET)
        self._cur = _Open(name, fd, st.st_dev, st.st_ino, offset, final)
        return True

    def _next(self) -> None:
        """Open the next queued backup, or the active file from 0."""
        while self._queue:
            name, dev, ino, offset = self._queue.pop(0)
            if self._open(name, offset, final=True):
                if (self._cur.dev, self._cur.ino) == (dev, ino):
                    return
                self.close()  # replaced meanwhile; skip
        self._reopen_active()

    def _reopen_active(self) -> bool:
        if self._cur is not None:
            return True
        return self._open(self.path, 0, final=False)


def _stat(path: str):
    try:
        return os.stat(path)
    except OSError:
        return None

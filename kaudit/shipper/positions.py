"""Where the shipper is in each followed file: device, inode and byte offset.

Written only after Loki acknowledged everything before that offset, and atomically
(temp file in the same directory, fsync, rename, fsync of the directory), so a crash
leaves either the old or the new file, never half of one.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Position:
    """The first byte not yet acknowledged, in the file identified by (dev, ino).
    `file` is the name it had when last read (the active path, or a rotated backup)."""

    dev: int
    ino: int
    offset: int
    file: str = ""


class PositionsError(Exception):
    pass


class Positions:
    """The positions file: {"version": 1, "files": {active_path: {dev, ino, offset, file}}}."""

    VERSION = 1

    def __init__(self, path: str):
        self.path = path
        self._data: dict[str, Position] = {}
        self._saved: dict[str, Position] = {}

    def load(self) -> "Positions":
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return self
        except OSError as e:
            raise PositionsError(f"cannot read positions file {self.path}: {e.strerror}") from e
        try:
            doc = json.loads(raw)
            files = doc["files"]
            self._data = {
                k: Position(int(v["dev"]), int(v["ino"]), int(v["offset"]), str(v.get("file", "")))
                for k, v in files.items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise PositionsError(
                f"positions file {self.path} is not valid ({type(e).__name__}: {e}); move it away to start over"
            ) from e
        self._saved = dict(self._data)
        return self

    def get(self, path: str) -> Position | None:
        return self._data.get(path)

    def set(self, path: str, pos: Position) -> None:
        self._data[path] = pos

    @property
    def dirty(self) -> bool:
        return self._data != self._saved

    def save(self) -> None:
        """Write atomically; a no-op when nothing changed."""
        if not self.dirty:
            return
        doc = {"version": self.VERSION, "files": {k: asdict(v) for k, v in sorted(self._data.items())}}
        data = json.dumps(doc, indent=1).encode() + b"\n"
        directory = os.path.dirname(os.path.abspath(self.path))
        tmp = os.path.join(directory, f".{os.path.basename(self.path)}.tmp{os.getpid()}")
        try:
            os.makedirs(directory, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            dfd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise PositionsError(f"cannot write positions file {self.path}: {e.strerror}") from e
        self._saved = dict(self._data)

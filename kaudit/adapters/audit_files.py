"""Read audit log lines from files, directories of rotated logs, gzip files or stdin.

Streaming: one line at a time, whatever the input size. A directory is read oldest
file first (by modification time, then name): kube-apiserver's log backend renames
the active file to audit-<timestamp>.log when it rotates, and logrotate-style
setups leave audit.log.1, audit.log.2.gz; either way the active file was written
last. gzip is recognised by its magic bytes, not by the name.
"""

from __future__ import annotations

import gzip
import io
import re
from pathlib import Path
from typing import BinaryIO, Iterator, Tuple

from kaudit.core.errors import KauditError, UsageError

# Names a directory's audit logs carry: audit.log, audit-2026-12-01T10-00-00.000.log,
# audit.log.1, audit.log.2.gz, events.jsonl, ...
LOG_NAME = re.compile(r".*\.(log|jsonl|json)(\.\d+)?(\.gz)?$")
_GZIP_MAGIC = b"\x1f\x8b"
_SPACE = frozenset(b" \t\r\n")


# (source, line number, bytes): a plain tuple, made once per line of input
Line = Tuple[str, int, bytes]


def log_files(path: str) -> list[str]:
    """The files a --log argument names, in the order to read them ("-" is stdin)."""
    if path == "-":
        return ["-"]
    p = Path(path)
    if p.is_dir():
        files = [f for f in p.iterdir() if f.is_file() and LOG_NAME.fullmatch(f.name)]
        if not files:
            raise UsageError(f"--log {path}: no audit log files in this directory (looked for *.log, *.log.N, *.jsonl, *.json and .gz of those)",
                             "give the file itself with --log FILE")
        files.sort(key=lambda f: (f.stat().st_mtime, f.name))
        return [str(f) for f in files]
    if not p.exists():
        raise UsageError(f"--log {path}: no such file or directory", "give an audit log file, a directory of them, or - for stdin")
    return [str(p)]


def _open(path: str, stdin: BinaryIO | None) -> BinaryIO:
    raw: BinaryIO
    if path == "-":
        import sys

        raw = stdin or sys.stdin.buffer
    else:
        try:
            raw = open(path, "rb")
        except OSError as e:
            raise KauditError(f"--log {path}: cannot read: {e.strerror}", "check its permissions (kube-apiserver writes the audit log 0600 root)") from None
    if not hasattr(raw, "peek"):
        raw = io.BufferedReader(raw)  # type: ignore[arg-type]
    peek = raw.peek(2)[:2]
    if peek == _GZIP_MAGIC:
        return gzip.open(raw, "rb")  # type: ignore[return-value]
    return raw


def read_lines(paths: list[str], stdin: BinaryIO | None = None) -> Iterator[Line]:
    """Every non-blank line of every file, in order, with where it came from."""
    for arg in paths:
        for path in log_files(arg):
            source = "<stdin>" if path == "-" else path
            f = _open(path, stdin)
            number = 0
            try:
                for number, data in enumerate(f, 1):
                    if data[0] not in _SPACE or data.strip():  # strip() copies: only for lines that may be blank
                        yield (source, number, data)
            except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
                raise KauditError(f"{source}: cannot read past line {number}: {e}",
                                  "the file may be truncated; the lines before were read (a truncated .gz: zcat FILE | kaudit ... --log -)") from None
            finally:
                if path != "-":
                    f.close()

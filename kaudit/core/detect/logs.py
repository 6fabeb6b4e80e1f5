"""Read audit log lines from a file, a directory of rotated files, or stdin.

kube-apiserver's log backend rotates ``audit.log`` to ``audit-<timestamp>.log`` in the
same directory, and gzips the old files with ``--audit-log-compress``; a directory is
read whole (every file that looks like an audit log: ``*.log``, ``*.log.N``,
``*.jsonl``, ``*.json``, ``*.gz``). Compression is recognised by its magic bytes, not
by the name. Lines come back as (source, line number, text).
"""

from __future__ import annotations

import gzip
import io
import re
import sys
from pathlib import Path
from typing import BinaryIO, Iterator

from kaudit.core.errors import KauditError, UsageError

_LOG_NAME = re.compile(r"(\.log(\.\d+)?|\.jsonl|\.json|\.gz)$")
_GZIP_MAGIC = b"\x1f\x8b"


def log_files(target: str) -> list[Path]:
    """The files --log names, oldest name first; a usage error when there are none."""
    path = Path(target)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and _LOG_NAME.search(p.name))
        if not files:
            raise UsageError(f"--log {target}: no audit log files in this directory",
                             "kaudit reads *.log, *.log.N, *.jsonl, *.json and *.gz files; name a file instead")
        return files
    if not path.exists():
        raise UsageError(f"--log {target}: no such file or directory", "give the audit log file, its directory, or - for stdin")
    if not path.is_file():
        raise UsageError(f"--log {target}: not a regular file", "give the audit log file, its directory, or - for stdin")
    return [path]


def _open(path: Path) -> BinaryIO:
    try:
        raw = open(path, "rb")
    except OSError as e:
        raise KauditError(f"--log {path}: {e.strerror}", "check the file's permissions (the audit log is 0600 root)") from None
    head = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
    if head == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    return raw


def _lines(source: str, fh: BinaryIO) -> Iterator[tuple[str, int, bytes]]:
    """Raw lines: json.loads reads bytes (UTF-8) itself, so nothing is decoded here."""
    n = 0
    try:
        for raw in fh:
            n += 1
            yield source, n, raw
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise KauditError(f"{source}:{n + 1}: cannot read: {e}", "the file may be truncated or not gzip; the lines before it were read") from None


def read_lines(targets: list[str]) -> Iterator[tuple[str, int, bytes]]:
    """Every line of every target ("-" is stdin, gzip or not)."""
    for target in targets:
        if target == "-":
            stdin = sys.stdin.buffer
            data = io.BufferedReader(stdin) if not hasattr(stdin, "peek") else stdin
            fh = gzip.GzipFile(fileobj=data) if data.peek(2)[:2] == _GZIP_MAGIC else data
            yield from _lines("<stdin>", fh)
            continue
        for path in log_files(target):
            with _open(path) as fh:
                yield from _lines(str(path), fh)

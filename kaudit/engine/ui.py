"""Narrative output on stderr: step lines, progress with elapsed time, warnings.

stdout is reserved for data (diffs, rendered files, JSON). On a terminal, long
steps show a rich status line with elapsed time; elsewhere they print plain
lines, so logs and CI output stay readable. rich is imported only when needed.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Iterator, TextIO

from kaudit.core.errors import CommandError, KauditError


class UI:
    def __init__(self, *, verbose: int = 0, quiet: bool = False, stream: TextIO | None = None):
        self.verbose = verbose
        self.quiet = quiet
        self._stream = stream

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    @property
    def is_tty(self) -> bool:
        return hasattr(self.stream, "isatty") and self.stream.isatty()

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def info(self, msg: str) -> None:
        if not self.quiet:
            self._print(msg)

    def detail(self, msg: str) -> None:
        """Shown only with -v."""
        if self.verbose and not self.quiet:
            self._print(msg)

    def ok(self, msg: str) -> None:
        self.info(f"✓ {msg}")

    def skip(self, msg: str) -> None:
        self.info(f"- {msg}")

    def warn(self, msg: str) -> None:
        self._print(f"warning: {msg}")

    def error(self, msg: str) -> None:
        self._print(f"error: {msg}")

    @contextmanager
    def step(self, msg: str) -> Iterator[None]:
        """A long step: a live status line with elapsed time on a terminal,
        a plain '... msg' then '✓ msg (12.3s)' elsewhere."""
        start = time.monotonic()
        if self.quiet:
            yield
            return
        if self.is_tty:
            from rich.console import Console

            console = Console(file=self.stream)
            with console.status(msg) as status:
                def tick() -> None:
                    status.update(f"{msg} ({time.monotonic() - start:.0f}s)")
                self._tick = tick
                try:
                    yield
                except BaseException:
                    self._print(f"✗ {msg} ({time.monotonic() - start:.1f}s)")
                    raise
        else:
            self._print(f"... {msg}")
            try:
                yield
            except BaseException:
                self._print(f"✗ {msg} ({time.monotonic() - start:.1f}s)")
                raise
        self._print(f"✓ {msg} ({time.monotonic() - start:.1f}s)")

    def tick(self) -> None:
        """Refresh the elapsed time of the current step (no-op off a terminal)."""
        fn = getattr(self, "_tick", None)
        if fn:
            fn()


def colour_diff(diff: str, stream: TextIO) -> str:
    """ANSI-colour a unified diff when stream is a terminal; otherwise unchanged."""
    if not (hasattr(stream, "isatty") and stream.isatty()):
        return diff
    out = []
    for line in diff.splitlines(keepends=True):
        if line.startswith("+++") or line.startswith("---"):
            out.append(f"\x1b[1m{line.rstrip(chr(10))}\x1b[0m\n")
        elif line.startswith("+"):
            out.append(f"\x1b[32m{line.rstrip(chr(10))}\x1b[0m\n")
        elif line.startswith("-"):
            out.append(f"\x1b[31m{line.rstrip(chr(10))}\x1b[0m\n")
        elif line.startswith("@@"):
            out.append(f"\x1b[36m{line.rstrip(chr(10))}\x1b[0m\n")
        else:
            out.append(line)
    return "".join(out)


def report_error(err: KauditError) -> None:
    """A KauditError as the user sees it: one error line, the failed command's output, a hint."""
    UI().error(err.message)
    if isinstance(err, CommandError):
        for line in err.details():
            print(f"  | {line}", file=sys.stderr)
    if err.hint:
        print(f"hint: {err.hint}", file=sys.stderr)


def report_internal_error(err: Exception) -> None:
    """A bug: still one line, and how to get the traceback."""
    print(f"error: internal error: {type(err).__name__}: {err}", file=sys.stderr)
    print("hint: rerun with --debug for a traceback, and report it", file=sys.stderr)

"""The few error types kaudit raises, and the exit codes they map to.

Only the CLI's error boundary (kaudit.cli.main) catches these: it prints one
``error:`` line, the hint, and exits with the code below. Anything else is a bug
and shows a traceback only with ``--debug``.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Sequence


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    CHANGES_PENDING = 3
    VERIFY_FAILED = 4
    INTERRUPTED = 130


class KauditError(Exception):
    """An expected failure the user can act on: what is wrong, where, and what to try."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, hint: str | None = None, *, exit_code: ExitCode | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class UsageError(KauditError):
    """Bad flags or arguments (exit 2)."""

    exit_code = ExitCode.USAGE


class CommandError(KauditError):
    """A command on a host exited non-zero. Carries the tails of its output."""

    TAIL_LINES = 10

    def __init__(
        self,
        command: str,
        returncode: int,
        stdout: str = "",
        stderr: str = "",
        *,
        host: str | None = None,
        hint: str | None = None,
    ):
        where = f" on {host}" if host else ""
        super().__init__(f"command failed{where} (exit {returncode}): {command}", hint)
        self.command = command
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    @staticmethod
    def tail(text: str, lines: int = TAIL_LINES) -> list[str]:
        return [line for line in text.rstrip("\n").splitlines()[-lines:]]

    def details(self) -> list[str]:
        """The last lines of stderr (or stdout if stderr is empty), for display."""
        return self.tail(self.stderr or self.stdout)


class PhaseError(KauditError):
    """A phase of `kaudit up` failed; wraps the cause with the phase name."""

    def __init__(self, phase: str, cause: KauditError):
        super().__init__(f"[{phase}] {cause.message}", cause.hint, exit_code=cause.exit_code)
        self.phase = phase
        self.cause = cause


def join_lines(lines: Sequence[str]) -> str:
    return "\n".join(lines)

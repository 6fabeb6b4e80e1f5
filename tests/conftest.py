"""Shared fixtures. Test doubles of programs that cannot run here live in tests/doubles/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
DATA = TESTS / "data"
DOUBLES = TESTS / "doubles"

# fixtures `sshd` (a real loopback sshd, tests/sshd.py) and `fake_lima` (the limactl double, tests/fakelima.py)
pytest_plugins = ["sshd", "fakelima"]


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """Run kaudit in-process through its error boundary: cli(["policy"]) -> CliResult."""
    from kaudit.cli import run

    def invoke(argv: list[str]) -> CliResult:
        capsys.readouterr()
        code = run([str(a) for a in argv])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke

"""The CLI's conventions: exit codes, stdout vs stderr, units."""

import subprocess
import sys

import pytest

from kaudit.core.errors import UsageError
from kaudit.core.units import format_duration, format_size, parse_duration, parse_size


def test_version_goes_to_stdout(cli):
    r = cli(["--version"])
    assert r.code == 0
    assert r.out.startswith("kaudit ")


def test_unknown_command_is_usage_error(cli):
    r = cli(["no-such-command"])
    assert r.code == 2
    assert r.out == ""
    assert "no-such-command" in r.err


def test_python_dash_m_runs():
    cp = subprocess.run([sys.executable, "-m", "kaudit", "--help"], capture_output=True, text=True)
    assert cp.returncode == 0
    assert "kaudit" in cp.stdout


@pytest.mark.parametrize(
    "text,seconds", [("500ms", 0.5), ("30s", 30), ("5m", 300), ("1h30m", 5400), ("2", 2.0), ("1.5s", 1.5)]
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "5x", "m5", "1h 30m", "-1s"])
def test_parse_duration_rejects(bad):
    with pytest.raises(UsageError) as e:
        parse_duration(bad, field="--timeout")
    assert "--timeout" in str(e.value)


@pytest.mark.parametrize("text,n", [("256KiB", 262144), ("1MiB", 1048576), ("100", 100), ("1kb", 1000)])
def test_parse_size(text, n):
    assert parse_size(text) == n


def test_parse_size_rejects():
    with pytest.raises(UsageError):
        parse_size("12 parsecs")


def test_format_round_trip():
    assert format_size(262144) == "256KiB"
    assert format_size(1048576) == "1MiB"
    assert format_duration(0.5) == "500ms"
    assert format_duration(300) == "5m"
    assert format_duration(90) == "1m30s"


COMMANDS = [
    ["up"], ["down"], ["diff-manifest"], ["patch-manifest"], ["policy"], ["policy", "validate"], ["policy", "simulate"],
    ["render-promtail"], ["ship"], ["verify"], ["query"], ["destroy"], ["vm", "status"], ["detect"],
]


def test_every_command_is_listed_here():
    from kaudit.cli import app

    top = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    assert top == {c[0] for c in COMMANDS}


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_every_command_has_help_with_an_example(cli, argv):
    r = cli([*argv, "--help"])
    assert r.code == 0, r.err
    assert "example" in r.out.lower(), r.out


def test_usage_errors_have_kaudits_error_shape(cli):
    r = cli(["up", "--no-such-flag"])
    assert r.code == 2
    assert r.out == ""
    lines = r.err.splitlines()
    assert lines[0].startswith("error: ") and "--no-such-flag" in lines[0]
    assert lines[1] == "hint: kaudit up --help lists the options"

"""--help reads like kubectl's: one sentence first, value names a kubectl user knows, and two
or three examples at the end of every command's help."""

from __future__ import annotations

import re

import pytest

from test_cli_core import COMMANDS

RICH = [c for c in COMMANDS if c != ["ship"]]  # `kaudit ship --help` is the stdlib shipper's argparse help
PYTHON_TYPES = re.compile(r"<(str|bool|int|float|path|list\[[a-z]+\]|int range|float range)>")


@pytest.mark.parametrize("argv", RICH, ids=[" ".join(c) for c in RICH])
def test_help_has_no_python_type_names(cli, argv, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = cli([*argv, "--help"]).out
    assert PYTHON_TYPES.findall(out) == [], out


@pytest.mark.parametrize("argv", RICH, ids=[" ".join(c) for c in RICH])
def test_help_starts_with_one_sentence_and_ends_with_examples(cli, argv, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = cli([*argv, "--help"]).out
    lines = [line.strip(" │") for line in out.splitlines()]
    body = [x for x in lines if x.strip()]
    first = body[1]  # after "Usage: ..."
    assert first.endswith(".") and first.count(". ") == 0, first
    start = lines.index("Examples:")
    examples = []
    for line in lines[start + 1:]:
        if not line.startswith("kaudit "):
            break
        examples.append(line)
    assert 2 <= len(examples) <= 3, (argv, examples)
    assert all(e.split()[1] == argv[0] for e in examples), examples


def test_value_names_are_kubectl_s(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = cli(["up", "--help"]).out
    row = {m.group(1): m.group(2) for m in re.finditer(r"│ (--[a-z-]+)\s+(?:-\w\s+)?([A-Z][A-Z:=|]*)?\s", out)}
    assert row["--wait-timeout"] == "DURATION"
    assert row["--loki-size"] == "SIZE"
    assert row["--loki-url"] == "URL"
    assert row["--kubeconfig"] == "PATH"
    assert row["--namespace"] == "NAME"
    assert row["--dry-run"] is None, "a flag shows no value"


def test_ship_help_is_the_shipper_s_own_and_ends_with_examples(cli):
    out = cli(["ship", "--help"]).out
    lines = out.splitlines()
    start = lines.index("examples:")
    examples = [x.strip() for x in lines[start + 1:] if x.strip()]
    assert 2 <= len(examples) <= 3 and all(e.startswith(("kaudit ship ", "python -m kaudit.shipper ")) for e in examples)

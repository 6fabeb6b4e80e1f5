"""`kaudit detect --log` through the console script skips Typer, and says exactly what the
Typer command says: same stdout, stderr and exit code, for findings, every output format,
custom and disabled rules, stdin, and bad input. Options the fast path does not take fall
through to Typer, which parses and reports them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import DATA, REPO

DETECT = DATA / "detect"
FALCO = DETECT / "edited-falco-k8s_audit-traces.jsonl"
V136 = DETECT / "kube-apiserver-v1.36-gce.jsonl"

#: runs the console script's main(); the last stderr line says whether Typer was imported
SCRIPT = (
    "import atexit, sys\n"
    "atexit.register(lambda: sys.stderr.write('\\nTYPER LOADED: %s\\n' % ('typer' in sys.modules)))\n"
    "sys.argv = ['kaudit'] + sys.argv[1:]\n"
    "from kaudit.launch import main\n"
    "main()\n"
)


def console(argv: list[str], stdin: bytes = b"") -> tuple[int, str, str, bool]:
    r = subprocess.run([sys.executable, "-c", SCRIPT, *map(str, argv)], input=stdin, capture_output=True, cwd=REPO, timeout=60)
    err, _, flag = r.stderr.decode().rpartition("\nTYPER LOADED: ")
    return r.returncode, r.stdout.decode(), err, flag.strip() == "True"


@pytest.fixture
def rules_file(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text(
        "rules:\n"
        "- id: configmap-in-shop\n  title: ConfigMap written in shop\n  severity: low\n  mitre: T1609\n"
        "  description: d\n  runbook: r\n  false_positives: f\n  level: Metadata\n"
        "  match:\n    objectRef.resource: configmaps\n    verb: [create, update]\n"
    )
    return p


@pytest.fixture
def bad_rules(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("rules:\n- id: x\n  severity: nope\n")  # 'x' is not an id: an error with file and line
    return p


CASES = {
    "findings as text": lambda rf, bad: ["detect", "--log", FALCO],
    "two logs, json": lambda rf, bad: ["detect", "--log", FALCO, "--log", V136, "--output", "json"],
    "sarif, = form": lambda rf, bad: ["detect", f"--log={V136}", "-o", "sarif"],
    "custom rules, disabled ones": lambda rf, bad: ["detect", "--log", V136, "--rules", rf, "--disable", "pod-exec,secret-read-by-non-controller",
                                                   "--disable", "impersonation"],
    "no such log": lambda rf, bad: ["detect", "--log", "/no/such/audit.log"],
    "invalid rules file": lambda rf, bad: ["detect", "--log", V136, "--rules", bad],
    "every rule disabled": lambda rf, bad: ["detect", "--log", V136, "--disable", ",".join(_all_ids())],
}


def _all_ids() -> list[str]:
    from kaudit.core.detect.model import rule_pack

    return [r.id for r in rule_pack()]


@pytest.mark.parametrize("case", sorted(CASES))
def test_fast_path_says_what_the_typer_command_says(case, cli, rules_file, bad_rules):
    argv = [str(a) for a in CASES[case](rules_file, bad_rules)]
    code, out, err, typer_loaded = console(argv)
    assert not typer_loaded, "the fast path imported Typer"
    typer = cli(argv)
    assert (code, out, err.rstrip("\n")) == (typer.code, typer.out, typer.err.rstrip("\n"))
    assert code in (0, 3) or err.startswith("error: ")


def test_stdin_through_the_fast_path():
    data = FALCO.read_bytes()
    code, out, err, typer_loaded = console(["detect", "--log", "-", "-o", "json"], stdin=data)
    assert not typer_loaded and code == 3
    doc = json.loads(out)
    assert doc["source"] == "-" and doc["events"] == len(data.splitlines())
    assert "binding-to-cluster-admin" in {g["rule"]["id"] for g in doc["groups"]}


@pytest.mark.parametrize("argv", [
    ["detect", "--log", str(V136), "--list"],
    ["detect", "--log", str(V136), "--help"],
    ["detect", "--log", str(V136), "-o", "yaml"],
    ["detect", "--loki-url", "http://127.0.0.1:9"],
    ["-q", "detect", "--log", str(V136)],
    ["detect", "--log"],
])
def test_anything_else_goes_to_typer(argv):
    code, out, err, typer_loaded = console(argv)
    assert typer_loaded


def test_both_paths_know_the_same_output_formats():
    from kaudit.cli.detect import DetectOutput
    from kaudit.engine.offline_detect import OUTPUTS

    assert tuple(o.value for o in DetectOutput) == OUTPUTS

"""`kaudit policy` and `kaudit policy validate` through the CLI: stdout carries the
policy, stderr the narrative, and the exit code says whether the file is valid."""

from __future__ import annotations

import os
import stat

import pytest

from conftest import REPO


@pytest.mark.parametrize("argv,profile", [([], "gce"), (["--profile", "gce"], "gce"), (["-p", "gce-modern"], "gce-modern")])
def test_policy_prints_the_profile_on_stdout(cli, argv, profile):
    r = cli(["policy", *argv])
    assert r.code == 0
    assert r.out == (REPO / "policies" / f"{profile}.yaml").read_text()
    assert r.err == ""


def test_policy_output_file_is_written_atomically(cli, tmp_path):
    out = tmp_path / "audit-policy.yaml"
    r = cli(["policy", "--profile", "gce-modern", "-o", out])
    assert r.code == 0
    assert r.out == ""
    assert str(out) in r.err
    assert out.read_text() == (REPO / "policies" / "gce-modern.yaml").read_text()
    assert os.listdir(tmp_path) == ["audit-policy.yaml"]
    out.chmod(0o644)
    assert cli(["policy", "-o", out]).code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert out.read_text() == (REPO / "policies" / "gce.yaml").read_text()


def test_policy_output_unwritable(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = cli(["policy", "-o", blocker / "policy.yaml"])
    assert r.code == 1
    assert r.out == ""
    assert r.err.startswith("error: ") and "policy.yaml" in r.err
    assert "Traceback" not in r.err


def test_unknown_profile_is_a_usage_error(cli):
    r = cli(["policy", "--profile", "gke"])
    assert r.code == 2
    assert r.out == ""
    assert "gke" in r.err and "gce-modern" in r.err


def test_validate_accepts_both_profiles(cli, tmp_path):
    for profile in ("gce", "gce-modern"):
        path = tmp_path / f"{profile}.yaml"
        assert cli(["policy", "--profile", profile, "-o", path]).code == 0
        r = cli(["policy", "validate", path])
        assert r.code == 0
        assert r.out == ""
        assert f"{path}: valid audit policy" in r.err


def test_validate_one_problem(cli, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Metadata\n    omitStage: [RequestReceived]\n")
    r = cli(["policy", "validate", path])
    assert r.code == 1
    assert r.out == ""
    assert r.err.splitlines()[0] == f"error: {path}:5:5: rules[0].omitStage: unknown field; did you mean omitStages?"
    assert "hint: " in r.err


def test_validate_lists_every_problem_then_fails(cli, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Bogus\n    nonResourceURLs: [/a*b]\n    resources: [{group: ''}]\n")
    r = cli(["policy", "validate", path])
    assert r.code == 1
    errors = [line for line in r.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 4
    assert any("rules[0].level: unknown level 'Bogus'" in e for e in errors)
    assert any("rules[0].nonResourceURLs[0]" in e for e in errors)
    assert any("cannot be in the same rule" in e for e in errors)
    assert errors[-1] == f"error: {path}: not a valid audit policy (3 problems above)"


def test_validate_warnings_do_not_fail(cli, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Metadata\n  - level: None\n")
    r = cli(["policy", "validate", path])
    assert r.code == 0
    assert "warning: " in r.err and "never matches" in r.err


def test_validate_missing_file(cli, tmp_path):
    r = cli(["policy", "validate", tmp_path / "nope.yaml"])
    assert r.code == 1
    assert f"error: cannot read {tmp_path / 'nope.yaml'}" in r.err


def test_validate_needs_a_file(cli):
    r = cli(["policy", "validate"])
    assert r.code == 2


def test_help_has_an_example(cli):
    for argv in (["policy", "--help"], ["policy", "validate", "--help"]):
        r = cli(argv)
        assert r.code == 0
        assert "Examples:" in r.out and "  kaudit policy " in r.out


def test_validate_reads_stdin(cli, monkeypatch):
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []\n")))
    r = cli(["policy", "validate", "-"])
    assert r.code == 1
    assert r.err.startswith("error: <stdin>:3:1: rules: at least one rule is required")

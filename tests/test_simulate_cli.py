"""`kaudit policy simulate` through the CLI: table, json and html output, the inputs it
reads (files, rotated directories, .gz, stdin) and its errors and exit codes."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import DATA, REPO

SIM = DATA / "simulate"
V136 = SIM / "v1.36-gce.jsonl"

BAD_POLICY = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Everything\n"
METADATA_ONLY = "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n  - level: Metadata\n"


def test_json_output_with_profiles_and_a_policy_file(cli, tmp_path):
    mine = tmp_path / "metadata-only.yaml"
    mine.write_text(METADATA_ONLY)
    r = cli(["policy", "simulate", "--log", V136, "--profile", "gce", "--profile", "gce-modern", "--policy", mine, "-o", "json"])
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert [p["name"] for p in doc["policies"]] == ["gce", "gce-modern", "metadata-only"]
    assert [p["source"] for p in doc["policies"]] == ["profile gce", "profile gce-modern", str(mine)]
    assert doc["input"]["events"] == len(V136.read_bytes().splitlines())
    gce, modern, meta = doc["policies"]
    assert gce["written"]["bytes"] == V136.stat().st_size
    assert meta["levels"].keys() == {"Metadata"} and meta["unjudged"]["events"] == 0
    assert meta["written"]["bytes"] < gce["written"]["bytes"] and modern["written"]["bytes"] < gce["written"]["bytes"]
    assert [(d["from"], d["to"]) for d in doc["diffs"]] == [("gce", "gce-modern"), ("gce", "metadata-only")]
    kept = doc["diffs"][1]["kept_by_both"]
    assert doc["diffs"][1]["dropped"]["events"] == 0 and kept["events"] == doc["input"]["events"]
    assert kept["bytes_from"] == gce["written"]["bytes"] and kept["bytes_to"] == meta["written"]["bytes"]
    for p in doc["policies"]:
        assert len(p["rules"]) == {"gce": 17, "gce-modern": 17, "metadata-only": 1}[p["name"]] + 1
        assert p["top_resources"][0]["bytes"] >= p["top_resources"][-1]["bytes"]


def test_table_output_puts_the_policies_side_by_side(cli):
    r = cli(["policy", "simulate", "--log", V136])  # default: both profiles
    assert r.code == 0, r.err
    header = next(line for line in r.out.splitlines() if "gce-modern" in line and "gce " in line)
    assert header.index("gce ") < header.index("gce-modern")
    assert re.search(r"written\s+│\s+168 · 166\.9 kB", r.out)
    for text in ("bytes per day", "stage ResponseComplete", "level RequestResponse", "unjudged", "Top resources",
                 "Top users", "gce-modern vs gce", "8 None: urls=/healthz*,/livez*"):
        assert text in r.out, text
    assert "simulating 2 policies" in r.err


def test_html_report_is_self_contained_with_a_chart_per_policy(cli, tmp_path):
    page = tmp_path / "report.html"
    r = cli(["policy", "simulate", "--log", V136, "--html", page, "-o", "json"])
    assert r.code == 0, r.err
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert html.count("<svg") == 2 and "<script" not in html
    assert re.findall(r"(?:src|href)\s*=", html) == []  # nothing loaded from anywhere
    assert set(re.findall(r"https?://[^\"' ]+", html)) == {"http://www.w3.org/2000/svg"}  # the SVG namespace only
    doc = json.loads(r.out)
    for p in doc["policies"]:
        for rule in p["rules"]:
            if rule["bytes"]:
                assert f"{rule['written']:,} events, {rule['bytes']:,} bytes" in html


def test_reads_a_directory_of_rotated_logs_gzip_and_stdin(cli, tmp_path, monkeypatch):
    data = V136.read_bytes().splitlines(keepends=True)
    logs = tmp_path / "audit"
    logs.mkdir()
    (logs / "audit-2026-11-28T23-14-00.000.log.gz").write_bytes(gzip.compress(b"".join(data[:50])))
    (logs / "audit-2026-11-28T23-14-10.000.log").write_bytes(b"".join(data[50:100]))
    (logs / "audit.log").write_bytes(b"".join(data[100:]))
    (logs / "notes.txt").write_text("not a log")
    for i, name in enumerate(["audit-2026-11-28T23-14-00.000.log.gz", "audit-2026-11-28T23-14-10.000.log", "audit.log"]):
        os.utime(logs / name, (1_000_000 + i, 1_000_000 + i))
    whole = json.loads(cli(["policy", "simulate", "--log", V136, "-o", "json"]).out)
    split = json.loads(cli(["policy", "simulate", "--log", logs, "-o", "json"]).out)
    assert split["policies"] == whole["policies"] and split["input"]["events"] == len(data)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(gzip.compress(b"".join(data)))))
    piped = cli(["policy", "simulate", "--log", "-", "-o", "json"])
    assert piped.code == 0, piped.err
    assert json.loads(piped.out)["policies"] == whole["policies"]


def test_lines_that_are_not_events_are_skipped_with_a_warning(cli, tmp_path):
    log = tmp_path / "audit.log"
    first = V136.read_bytes().splitlines(keepends=True)[0]
    log.write_bytes(b"not json\n" + V136.read_bytes() + b'{"kind":"Status"}\n\n' + first.rstrip() + b" x\n  " + first)
    r = cli(["policy", "simulate", "--log", log, "-o", "json"])
    assert r.code == 0
    doc = json.loads(r.out)
    assert doc["input"]["skipped_lines"] == 3  # the event with trailing text; leading blanks are fine
    assert doc["input"]["events"] == len(V136.read_bytes().splitlines()) + 1
    assert f"warning: skipped 3 line(s) that are not audit events, first: {log}:1: not JSON" in r.err


@pytest.mark.parametrize("argv,code,fragment", [
    ([], 2, "Missing option '--log'"),
    (["--log", "/nonexistent/audit.log"], 2, "--log /nonexistent/audit.log: no such file or directory"),
    (["--log", str(V136), "--profile", "gke"], 2, "--profile 'gke' is not a profile"),
    (["--log", str(V136), "--policy", "/nonexistent.yaml"], 2, "--policy /nonexistent.yaml"),
    (["--log", str(V136), "--output", "yaml"], 2, "'yaml' is not one of"),
])
def test_usage_errors(cli, argv, code, fragment):
    r = cli(["policy", "simulate", *argv])
    assert r.code == code
    assert fragment in r.err and r.out == "" and "Traceback" not in r.err


def test_a_policy_the_apiserver_refuses_gets_the_validators_reason(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_POLICY)
    validate = cli(["policy", "validate", bad])
    r = cli(["policy", "simulate", "--log", V136, "--policy", bad])
    assert (validate.code, r.code) == (1, 1)
    first = lambda err: next(l for l in err.splitlines() if l.startswith("error: "))  # noqa: E731
    assert first(r.err) == first(validate.err)
    assert "unknown level 'Everything'" in first(r.err) and r.out == ""


def test_empty_or_eventless_input_is_an_error(cli, tmp_path):
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    r = cli(["policy", "simulate", "--log", empty])
    assert r.code == 1 and "no audit events to simulate (it is empty)" in r.err and "hint: " in r.err
    junk = tmp_path / "junk.log"
    junk.write_bytes(b'{"a":1}\n')
    r = cli(["policy", "simulate", "--log", junk])
    assert r.code == 1 and "1 lines, none an audit Event" in r.err


def test_a_truncated_gzip_is_an_error_naming_the_file(cli, tmp_path):
    log = tmp_path / "audit.log.gz"
    log.write_bytes(gzip.compress(V136.read_bytes())[:5000])
    r = cli(["policy", "simulate", "--log", log])
    assert r.code == 1 and f"{log}: cannot read past line" in r.err and "Traceback" not in r.err


def test_installed_command_runs_as_a_subprocess(tmp_path):
    """The console script end to end: a real process, reading stdin, writing JSON."""
    exe = shutil.which("kaudit", path=os.path.dirname(sys.executable)) or shutil.which("kaudit")
    argv = [exe] if exe else [sys.executable, "-m", "kaudit"]
    r = subprocess.run([*argv, "policy", "simulate", "--log", "-", "--profile", "gce", "-o", "json"],
                       input=V136.read_bytes(), capture_output=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["policies"][0]["written"]["bytes"] == V136.stat().st_size


def test_a_rule_that_can_never_match_is_warned_about(cli, tmp_path):
    shadowed = tmp_path / "shadowed.yaml"
    shadowed.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Metadata\n"
                        "  - level: RequestResponse\n    resources: [{group: ''}]\n")
    r = cli(["policy", "simulate", "--log", V136, "--policy", shadowed, "-o", "json"])
    assert r.code == 0
    assert f"warning: {shadowed}:5:5: rules[1]: never matches: rules[0] above matches every request" in r.err
    rules = json.loads(r.out)["policies"][0]["rules"]
    assert rules[1]["matched"] == 0 and rules[0]["matched"] == json.loads(r.out)["input"]["events"]

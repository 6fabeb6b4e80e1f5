"""`kaudit detect` through the CLI: local logs (files, rotated directories, gzip, stdin),
the output formats and exit codes, --list with the policy check, custom rules, and the
retro-hunt over Loki (the Loki double, with the LogQL evaluator beside it)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time

import pytest

from conftest import DATA, REPO
from doubles.loki import LokiDouble

DETECT = DATA / "detect"
FALCO = DETECT / "edited-falco-k8s_audit-traces.jsonl"
V136 = DETECT / "kube-apiserver-v1.36-gce.jsonl"
QUIET = DETECT / "clo-logsamples.jsonl"  # two events, nothing suspicious


def test_findings_exit_3_grouped_by_rule_newest_first(cli):
    r = cli(["detect", "--log", FALCO])
    assert r.code == 3
    assert r.out.startswith("CRITICAL binding-to-cluster-admin: Role binding to cluster-admin [T1098.006]")
    block = r.out.split("MEDIUM   serviceaccount-in-system-namespace:")[1].split("runbook:")[0]
    times = [ln.split()[0] for ln in block.splitlines() if ln.startswith("  20")]
    assert times == sorted(times, reverse=True) and len(times) == 2
    # who, what, where, when, and the auditID
    assert "2018-10-26T14:26:34.242498Z  minikube-user  create clusterrolebindings  some-reader-binding  from 192.168.99.1  code 201  auditID c97244c7-4aec-4714-946a-8204d00ecdca" in r.out
    assert f"at {FALCO}:2" in r.out
    assert "finding(s) from" in r.err


def test_nothing_fired_exit_0(cli):
    r = cli(["detect", "--log", QUIET])
    assert r.code == 0 and r.out == ""
    assert "0 finding(s) from 0 of" in r.err


def test_json_output(cli):
    r = cli(["detect", "--log", V136, "-o", "json"])
    assert r.code == 3
    doc = json.loads(r.out)
    assert doc["events"] == 45
    groups = {g["rule"]["id"]: g for g in doc["groups"]}
    burst = groups["repeated-denied-by-user"]["findings"][0]
    assert burst["key"] == {"user.username": "kubernetes-admin"} and burst["count"] == 30
    assert len(burst["auditIDs"]) == 30
    ev = groups["secret-read-by-non-controller"]["findings"][0]["events"][0]
    assert ev["user"] == "kubernetes-admin" and ev["resource"] == "secrets" and ev["auditID"]
    # the log starts with kube-apiserver writing its bootstrap RBAC: no RBAC rule fires on it
    assert not {"binding-to-cluster-admin", "role-wildcard-verbs", "role-grants-secrets-read"} & set(groups)


def test_sarif_output(cli):
    r = cli(["detect", "--log", FALCO, "-o", "sarif"])
    assert r.code == 3
    doc = json.loads(r.out)
    assert doc["version"] == "2.1.0"
    run = doc["runs"][0]
    ids = [d["id"] for d in run["tool"]["driver"]["rules"]]
    for res in run["results"]:
        assert ids[res["ruleIndex"]] == res["ruleId"]
        assert res["level"] in ("note", "warning", "error")
        loc = res["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"]["uri"] == str(FALCO) and loc["region"]["startLine"] >= 1
    exec_result = next(x for x in run["results"] if x["ruleId"] == "pod-exec")
    assert exec_result["level"] == "warning" and exec_result["partialFingerprints"]["auditID"]


def test_a_directory_of_rotated_and_gzipped_logs(cli, tmp_path):
    """kube-apiserver renames full files to audit-<time>.log and may gzip them."""
    lines = FALCO.read_text().splitlines(keepends=True)
    (tmp_path / "audit.log").write_text("".join(lines[:6]))
    (tmp_path / "audit-2018-10-26T14-20-00.000.log").write_text("".join(lines[6:12]))
    with gzip.open(tmp_path / "audit-2018-10-25T10-00-00.000.log.gz", "wt") as fh:
        fh.write("".join(lines[12:]))
    (tmp_path / "notes.txt").write_text("not a log\n")
    whole = json.loads(cli(["detect", "--log", FALCO, "-o", "json"]).out)
    split = json.loads(cli(["detect", "--log", tmp_path, "-o", "json"]).out)
    assert split["events"] == whole["events"] == len(lines)
    assert [g["rule"]["id"] for g in split["groups"]] == [g["rule"]["id"] for g in whole["groups"]]
    locs = {e["location"].rsplit(":", 1)[0] for g in split["groups"] for f in g["findings"] for e in f["events"]}
    assert str(tmp_path / "audit-2018-10-25T10-00-00.000.log.gz") in locs


def test_stdin_gzip_and_garbage_lines(tmp_path):
    data = gzip.compress(b"not json\n{\"kind\":\"Other\"}\n" + FALCO.read_bytes())
    cp = subprocess.run([sys.executable, "-m", "kaudit", "detect", "--log", "-", "-o", "json"],
                        input=data, capture_output=True, cwd=REPO, timeout=60)
    assert cp.returncode == 3, cp.stderr
    doc = json.loads(cp.stdout)
    assert doc["events"] == len(FALCO.read_text().splitlines())


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--log", "/nonexistent/audit.log"], "--log /nonexistent/audit.log: no such file or directory"),
        ([], "give --log FILE|DIR|- or --loki-url URL"),
        (["--log", "x", "--loki-url", "http://x"], "give --log FILE|DIR|- or --loki-url URL"),
        (["--loki-url", "ftp://x"], "is not an http(s) URL"),
        (["--log", "x", "--profile", "gce"], "--profile and --policy go with --list"),
        (["--list", "--profile", "nope"], "--profile 'nope' is not a profile"),
        (["--disable", "no-such-rule", "--list"], "--disable: no rule with id no-such-rule"),
    ],
)
def test_usage_errors(cli, argv, message):
    r = cli(["detect", *argv])
    assert r.code in (1, 2)
    assert message in r.err and "hint:" in r.err and "Traceback" not in r.err


def test_empty_directory_is_a_usage_error(cli, tmp_path):
    r = cli(["detect", "--log", tmp_path])
    assert r.code == 2 and "no audit log files in this directory" in r.err


def test_list_says_which_rules_the_policy_can_never_fire(cli, tmp_path):
    # gce-modern drops Events of both APIs (core and events.k8s.io); gce drops only core v1
    # Events, so a delete through events.k8s.io/v1 reaches its catch-all Metadata rule
    r = cli(["detect", "--list", "--profile", "gce-modern"])
    assert r.code == 0
    row = next(ln for ln in r.out.splitlines() if ln.startswith("events-deleted"))
    assert "NEVER FIRES" in row
    assert "under profile gce-modern: policy rule 10 logs delete events at level None, the rule needs Metadata" in r.out
    assert "can never fire: events-deleted" in r.err
    r = cli(["detect", "--list"])
    assert r.code == 0 and "under profile gce 0 can never fire" in r.err
    # a policy that logs everything at Metadata: request-body rules cannot fire, events-deleted can
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Metadata\n")
    doc = json.loads(cli(["detect", "--list", "--policy", policy, "-o", "json"]).out)
    never = {r["id"]: r["never_fires"] for r in doc["rules"] if r["never_fires"]}
    assert "events-deleted" not in never
    assert never["pod-privileged"] == "policy rule 1 logs create pods at level Metadata, the rule needs Request"
    assert {r["id"] for r in doc["rules"] if r["level"] == "Request"} == set(never)


def test_list_with_logql(cli):
    r = cli(["detect", "--list", "--logql"])
    assert 'logql: {job="kubernetes-audit", verb="create"}' in r.out
    assert "approximated:" in r.out


def test_custom_rules_and_disable(cli, tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("""rules:
  - id: exec-by-minikube
    title: exec by minikube-user
    severity: critical
    mitre: T1609
    level: Metadata
    description: d
    runbook: r
    false_positives: f
    when:
      objectRef.subresource: exec
      user.username: minikube-user
""")
    r = cli(["detect", "--log", FALCO, "--rules", mine, "--disable", "pod-exec,pod-attach", "-o", "json"])
    groups = json.loads(r.out)["groups"]
    ids = [g["rule"]["id"] for g in groups]
    assert ids[:2] == ["binding-to-cluster-admin", "exec-by-minikube"]  # both critical, newest first
    assert groups[1]["rule"]["source"] == f"{mine}:2"
    assert "pod-exec" not in ids and "pod-attach" not in ids
    mine.write_text(mine.read_text().replace("severity: critical", "severity: dire"))
    r = cli(["detect", "--log", FALCO, "--rules", mine])
    assert r.code == 1
    assert f"error: {mine}:4: rule exec-by-minikube: severity: 'dire'" in r.err


# -- retro-hunt over Loki ---------------------------------------------------------------------
def _push_corpus(loki: LokiDouble, clusters: dict | None = None, tenant: str = "fake") -> dict[str, str]:
    """Push every test line, re-based to the last hour (relative times kept per file), with
    the cluster label clusters[file name] when given. Returns line -> ref."""
    from kaudit.shipper.payload import Encoder

    enc = Encoder()
    now = time.time_ns()
    streams: dict[tuple, list] = {}
    refs = {}
    for fi, path in enumerate(sorted(DETECT.glob("*.jsonl"))):
        texts = path.read_text().splitlines()
        entries = [enc.encode(t.encode(), read_ns=n) for n, t in enumerate(texts, 1)]
        newest = max(e.ts for e in entries)
        for n, (t, e) in enumerate(zip(texts, entries), 1):
            ts = now - (fi + 1) * 60 * 10**9 - min(newest - e.ts, 600 * 10**9)
            labels = {"job": "kubernetes-audit", "node": "cp-1"}
            if clusters:
                labels["cluster"] = clusters[path.name]
            for name, v in zip(enc.labels, e.stream):
                if v is not None:
                    labels[name] = v.decode() if isinstance(v, bytes) else v
            streams.setdefault(tuple(sorted(labels.items())), []).append([str(ts), t])
            refs[t] = f"{path.name}:{n}"
    body = json.dumps({"streams": [{"stream": dict(k), "values": v} for k, v in streams.items()]}).encode()
    loki.push(body, content_type="application/json", encoding="", tenant=tenant)
    return refs


def test_retro_hunt_over_loki_matches_the_offline_run(cli):
    with LokiDouble("2.6.1", reject_old_samples_max_age_ns=10**30) as loki:
        _push_corpus(loki)
        r = cli(["detect", "--loki-url", loki.url, "--since", "24h", "-o", "json"])
    assert r.code == 3, r.err
    online = {g["rule"]["id"]: g for g in json.loads(r.out)["groups"]}
    offline = {g["rule"]["id"]: g for g in json.loads(cli(["detect", "--log", DETECT, "-o", "json"]).out)["groups"]}
    assert set(online) == set(offline)
    for rid, g in offline.items():
        if g["rule"]["aggregate"]:
            assert {json.dumps(f["key"]) for f in online[rid]["findings"]} >= {json.dumps(f["key"]) for f in g["findings"]}
            continue
        ids_off = {a for f in g["findings"] for a in f["auditIDs"]}
        ids_on = {a for f in online[rid]["findings"] for a in f["auditIDs"]}
        if rid == "role-grants-secrets-read":  # the LogQL approximation (test_detect_logql)
            assert ids_on > ids_off and len(ids_on - ids_off) == 1
        else:
            assert ids_on == ids_off, rid
    burst = next(f for f in online["repeated-denied-by-user"]["findings"] if f["key"] == {"user.username": "kubernetes-admin"})
    assert burst["count"] == 30


def test_retro_hunt_names_the_url_when_loki_is_down(cli):
    with LokiDouble() as loki:
        url = loki.url
    r = cli(["detect", "--loki-url", url, "--since", "1h"])
    assert r.code == 1 and url in r.err and "hint:" in r.err


def test_rule_cache_is_used_and_follows_the_pack(tmp_path, monkeypatch):
    """The packaged rules are parsed once and then read from the cache; a cache that is
    not JSON is ignored; a changed pack gets a new cache file."""
    from kaudit.core.detect import model
    from kaudit.adapters import rule_cache as cache

    monkeypatch.setenv("KAUDIT_CACHE_DIR", str(tmp_path))
    first = cache.packaged_rules()
    (path,) = tmp_path.glob("rules-*.json")
    assert [r.id for r in first] == [r.id for r in model.rule_pack()]
    assert [r.source for r in first] == [r.source for r in model.rule_pack()]
    assert cache.packaged_rules() == first  # from the cache: same rules, equal
    path.write_text("{not json")
    assert cache.packaged_rules() == first
    files = model.packaged_rule_files()
    monkeypatch.setattr(cache, "packaged_rule_files", lambda: files[:1])
    fewer = cache.packaged_rules()
    assert len(fewer) < len(first) and len(list(tmp_path.glob("rules-*.json"))) == 2
    monkeypatch.setenv("KAUDIT_CACHE_DIR", "off")
    monkeypatch.setattr(cache, "packaged_rule_files", lambda: files)
    assert cache.packaged_rules() == first


def test_detect_and_simulate_read_logs_alike(cli, tmp_path):
    """One reader for both commands: the same events from a rotated directory, the same errors."""
    lines = FALCO.read_bytes().splitlines(keepends=True)
    (tmp_path / "audit-2018-10-26T14-20-00.000.log.gz").write_bytes(gzip.compress(b"".join(lines[:10])))
    (tmp_path / "audit.log").write_bytes(b"\n" + b"".join(lines[10:]))
    det = json.loads(cli(["detect", "--log", tmp_path, "-o", "json"]).out)
    sim = json.loads(cli(["policy", "simulate", "--log", tmp_path, "--profile", "gce", "-o", "json"]).out)
    assert det["events"] == sim["input"]["events"] == len(lines)
    empty = tmp_path / "empty"
    empty.mkdir()
    errors = [cli([*cmd, "--log", empty]) for cmd in (["detect"], ["policy", "simulate"])]
    assert [r.code for r in errors] == [2, 2]
    first_error = lambda err: next(ln for ln in err.splitlines() if ln.startswith("error: "))  # noqa: E731
    assert first_error(errors[0].err) == first_error(errors[1].err)
    assert f"--log {empty}: no audit log files in this directory" in errors[0].err

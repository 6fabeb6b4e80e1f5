"""`kaudit ship` / `python -m kaudit.shipper`: options, exit codes, Loki versions, auth, metrics,
and the standard-library-only rule."""

from __future__ import annotations

import ast
import base64
import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO
from doubles.loki import LokiDouble
from shipper_helpers import ShipperProc, append, base_args, make_events, pairs_in_lines, pairs_in_loki, wait_for

SHIPPER_DIR = REPO / "kaudit" / "shipper"


def double(version="3.5.0", **kw) -> LokiDouble:
    return LokiDouble(version, reject_old_samples_max_age_ns=0, **kw).start()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_help_lists_the_options_and_an_example(cli):
    r = cli(["ship", "--help"])
    assert r.code == 0
    for opt in ("--path", "--loki-url", "--positions", "--label", "--tenant", "--basic-auth-user",
                "--basic-auth-password-file", "--bearer-token-file", "--ca-file", "--insecure-skip-verify",
                "--batch-wait", "--batch-bytes", "--max-line-bytes", "--structured-metadata", "--start-at",
                "--once", "--metrics-addr"):
        assert opt in r.out
    assert "examples:" in r.out and "kaudit ship --path" in r.out


@pytest.mark.parametrize("argv, message", [
    ([], "required: --loki-url"),
    (["--loki-url", "http://x"], "give either --path (follow the audit log) or --listen"),
    (["--path", "a", "--loki-url", "loki:3100"], "is not an http(s) URL"),
    (["--path", "a", "--loki-url", "http://x", "--dynamic-labels", "audit_id"], "auditID is unique per request"),
    (["--path", "a", "--loki-url", "http://x", "--dynamic-labels", "user,verb"], "one stream per user"),
    (["--path", "a", "--loki-url", "http://x", "--batch-wait", "soon"], "is not a duration"),
    (["--path", "a", "--loki-url", "http://x", "--label", "bad-name=1"], "not k=v with a Loki label name"),
    (["--path", "a", "--loki-url", "http://x", "--bearer-token-file", "/nonexistent/token"], "cannot read --bearer-token-file"),
])
def test_usage_errors_exit_2_with_one_clear_line(cli, argv, message):
    r = cli(["ship", *argv])
    assert r.code == 2
    assert message in r.err
    assert "Traceback" not in r.err


def test_in_process_kaudit_ship_once(cli, tmp_path):
    log = tmp_path / "audit.log"
    events = make_events(50)
    append(log, events)
    loki = double()
    try:
        r = cli(["ship", *base_args(log, loki, tmp_path / "pos.json", "--once")])
        assert r.code == 0, r.err
        assert pairs_in_loki(loki) == pairs_in_lines(events)
        again = cli(["ship", *base_args(log, loki, tmp_path / "pos.json", "--once")])  # resumes at the end
        assert again.code == 0 and loki.received == 50
    finally:
        loki.stop()


def test_loki_2_6_1_gets_no_structured_metadata_and_3x_does(tmp_path):
    log = tmp_path / "audit.log"
    events = make_events(40)
    append(log, events)
    old, new = double("2.6.1"), double("3.5.0")
    try:
        for d, name in ((old, "a"), (new, "b")):
            code, err = ShipperProc(base_args(log, d, tmp_path / f"{name}.json", "--once"), via_kaudit=True).wait()
            assert code == 0, err
            assert pairs_in_loki(d) == pairs_in_lines(events)
            assert {r.status for r in d.requests("/loki/api/v1/push")} == {204}
        assert all(not e.metadata for e in old.entries())
        assert all(e.structured_metadata["audit_id"] for e in new.entries())
        assert {"verb", "stage", "audit_level", "job", "node"} == set(new.entries()[0].stream)
    finally:
        old.stop()
        new.stop()


def test_structured_metadata_on_against_2x_falls_back_without_losing_entries(tmp_path):
    log = tmp_path / "audit.log"
    events = make_events(40)
    append(log, events)
    d = double("2.6.1")
    try:
        code, err = ShipperProc(base_args(log, d, tmp_path / "p.json", "--once", "--structured-metadata", "on",
                                          "--push-format", "json")).wait()
        assert code == 0, err
        assert "refuses structured metadata" in err
        assert pairs_in_loki(d) == pairs_in_lines(events)
    finally:
        d.stop()


def test_protobuf_push_is_the_default_and_carries_lines_and_metadata_unchanged(tmp_path):
    log = tmp_path / "audit.log"
    events = make_events(30) + [json.dumps({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
                                 "auditID": "odd-1", "stage": "ResponseComplete", "verb": "get",
                                 "user": {"username": 'odd "user" \\ n\u00e4me'},
                                 "stageTimestamp": "2026-11-28T23:13:43.957656Z"}, separators=(",", ":")).encode()]
    append(log, events)
    lines = log.read_bytes().decode().splitlines()
    d = double("3.5.0")
    try:
        code, err = ShipperProc(base_args(log, d, tmp_path / "p.json", "--once", "--structured-metadata", "on")).wait()
        assert code == 0, err
        assert d.proto_pushes >= 1
        stored = d.entries()
        assert sorted(e.line for e in stored) == sorted(lines)  # byte for byte, no re-escaping
        odd = next(e for e in stored if '"odd-1"' in e.line)
        assert dict(odd.metadata)["user"] == 'odd "user" \\ n\u00e4me'
        assert dict(odd.metadata)["audit_id"] == "odd-1"
    finally:
        d.stop()


def test_protobuf_push_to_loki_2x_stores_every_entry(tmp_path):
    # Loki 2.x's EntryAdapter has no field 3: its decoder skips the metadata, the lines are stored
    log = tmp_path / "audit.log"
    events = make_events(20)
    append(log, events)
    d = double("2.6.1")
    try:
        code, err = ShipperProc(base_args(log, d, tmp_path / "p.json", "--once", "--structured-metadata", "on")).wait()
        assert code == 0, err
        assert pairs_in_loki(d) == pairs_in_lines(events)
        assert all(not e.metadata for e in d.entries())
    finally:
        d.stop()


def test_a_server_refusing_protobuf_gets_json_without_losing_entries(tmp_path):
    log = tmp_path / "audit.log"
    events = make_events(20)
    append(log, events)
    d = double("3.5.0")
    d.fail_next(415, 1, "unsupported Content-Type")
    try:
        code, err = ShipperProc(base_args(log, d, tmp_path / "p.json", "--once")).wait()
        assert code == 0, err
        assert "does not take protobuf pushes" in err
        assert d.proto_pushes == 0
        assert pairs_in_loki(d) == pairs_in_lines(events)
    finally:
        d.stop()


def test_tenant_auth_gzip_and_static_labels_reach_loki(tmp_path):
    log = tmp_path / "audit.log"
    append(log, make_events(5))
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    d = double()
    try:
        code, err = ShipperProc(base_args(log, d, tmp_path / "p.json", "--once", "--tenant", "team-a", "--gzip", "1",
                                          "--basic-auth-user", "kaudit", "--basic-auth-password-file", pw,
                                          "--label", "cluster=prod")).wait()
        assert code == 0, err
        [push] = d.requests("/loki/api/v1/push")
        assert push.headers["X-Scope-OrgID"] == "team-a"
        assert push.headers["Content-Encoding"] == "gzip"
        assert push.headers["Authorization"] == "Basic " + base64.b64encode(b"kaudit:s3cret").decode()
        assert d.entries()[0].stream["cluster"] == "prod" and d.entries()[0].stream["node"] == "cp1"
        token = tmp_path / "token"
        token.write_text("tok-1")
        append(log, make_events(1, start=5))
        code, err = ShipperProc(base_args(log, d, tmp_path / "p.json", "--once", "--bearer-token-file", token)).wait()
        assert code == 0, err
        assert d.requests("/loki/api/v1/push")[-1].headers["Authorization"] == "Bearer tok-1"
    finally:
        d.stop()


def test_metrics_endpoint_counts_what_was_shipped(tmp_path):
    log = tmp_path / "audit.log"
    append(log, make_events(30) + [b"not json"])
    d = double()
    port = free_port()
    proc = ShipperProc(base_args(log, d, tmp_path / "p.json", "--metrics-addr", f"127.0.0.1:{port}"))
    try:
        wait_for(lambda: len(d.entries()) == 31, what="entries shipped")

        def scrape():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return r.read().decode()

        wait_for(lambda: "kaudit_shipper_entries_sent_total 31" in scrape(), what="metrics updated")
        text = scrape()
        assert "kaudit_shipper_malformed_lines_total 1" in text
        assert 'kaudit_shipper_pushes_total{status="204"}' in text
        assert "# TYPE kaudit_shipper_dropped_entries_total counter" in text
    finally:
        code, err = proc.term()
        d.stop()
    assert code == 0, err


def test_giving_up_after_max_retries_exits_1_and_keeps_positions(tmp_path):
    log = tmp_path / "audit.log"
    append(log, make_events(10))
    port = free_port()  # nobody listens
    code, err = ShipperProc(["--path", log, "--loki-url", f"http://127.0.0.1:{port}", "--positions", tmp_path / "p.json",
                             "--once", "--structured-metadata", "off", "--max-retries", "2", "--backoff-min", "10ms"]).wait()
    assert code == 1
    assert err.count("error: ") == 1 and "gave up pushing 10 entries" in err and "hint: " in err
    assert json.loads((tmp_path / "p.json").read_text())["files"][str(log)]["offset"] == 0


# --------------------------------------------------------------------------- standard library only

def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_shipper_modules_import_only_the_standard_library():
    allowed = set(sys.stdlib_module_names) | {"kaudit", "orjson", "__future__"}
    for path in SHIPPER_DIR.glob("*.py"):
        bad = _imports(path) - allowed
        assert not bad, f"{path.name} imports {sorted(bad)}: the shipper must run on a stock python image"


def test_shipper_sources_run_alone_on_a_bare_interpreter(tmp_path):
    """Write shipper_sources() into an empty directory and ship from there with `python -I -S`
    (no site-packages at all): proves the file list is complete and nothing else is needed."""
    from kaudit.shipper import configmap_key, shipper_sources

    sources = shipper_sources()
    assert set(sources) == {"kaudit/__init__.py"} | {f"kaudit/shipper/{p.name}" for p in SHIPPER_DIR.glob("*.py")}
    assert configmap_key("kaudit/shipper/tail.py") == "kaudit__shipper__tail.py"
    bundle = tmp_path / "bundle"
    for rel, text in sources.items():
        (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
        (bundle / rel).write_text(text)
    log = tmp_path / "audit.log"
    events = make_events(20)
    append(log, events)
    d = double()
    try:
        code = ("import sys; sys.path.insert(0, sys.argv.pop(1)); import runpy; "
                "sys.argv[0] = 'shipper'; runpy.run_module('kaudit.shipper', run_name='__main__')")
        p = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(bundle),
                            *map(str, base_args(log, d, tmp_path / "p.json", "--once"))],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        assert pairs_in_loki(d) == pairs_in_lines(events)
    finally:
        d.stop()


def test_once_on_a_missing_file_is_an_error(cli, tmp_path):
    r = cli(["ship", "--path", tmp_path / "nope.log", "--loki-url", "http://127.0.0.1:9", "--positions", tmp_path / "p.json", "--once"])
    assert r.code == 1
    assert "audit log not found" in r.err and "hint:" in r.err


@pytest.fixture
def tls_cert(tmp_path):
    """A self-signed certificate for 127.0.0.1 made with the openssl CLI."""
    cert, key = tmp_path / "loki.crt", tmp_path / "loki.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_tls_with_ca_file_insecure_skip_verify_and_an_untrusted_certificate(tmp_path, tls_cert):
    log = tmp_path / "audit.log"
    events = make_events(10)
    append(log, events)
    d = LokiDouble("3.5.0", reject_old_samples_max_age_ns=0, tls=tuple(map(str, tls_cert))).start()
    try:
        assert d.url.startswith("https://")
        code, err = ShipperProc(base_args(log, d, tmp_path / "a.json", "--once", "--max-retries", "1")).wait()
        assert code == 1 and "CERTIFICATE_VERIFY_FAILED" in err  # not trusted: refused, nothing acknowledged
        assert d.entries() == []
        code, err = ShipperProc(base_args(log, d, tmp_path / "b.json", "--once", "--ca-file", tls_cert[0])).wait()
        assert code == 0, err
        assert pairs_in_loki(d) == pairs_in_lines(events)
        code, err = ShipperProc(base_args(log, d, tmp_path / "c.json", "--once", "--insecure-skip-verify")).wait()
        assert code == 0, err
        assert d.received == 20
    finally:
        d.stop()


def test_full_push_url_and_start_at_end(tmp_path):
    log = tmp_path / "audit.log"
    old, new = make_events(5), make_events(5, start=5)
    append(log, old)
    d = double()
    try:
        args = ["--path", log, "--loki-url", d.push_url, "--positions", tmp_path / "p.json", "--start-at", "end",
                "--batch-wait", "100ms"]
        proc = ShipperProc(args)
        wait_for(lambda: (tmp_path / "p.json").exists(), what="first position saved")
        append(log, new)
        wait_for(lambda: len(d.entries()) == 5, what="new events shipped")
        code, err = proc.term()
        assert code == 0, err
        assert pairs_in_loki(d) == pairs_in_lines(new)
    finally:
        d.stop()


def test_backoff_doubles_with_jitter_up_to_the_cap():
    from kaudit.shipper.client import backoff_delays, split_url

    lo = backoff_delays(0.5, 300, rand=lambda: 0.0)
    assert [next(lo) for _ in range(12)] == [0.375 * 2**i for i in range(10)] + [225.0, 225.0]
    hi = backoff_delays(0.5, 300, rand=lambda: 1.0)
    assert max(next(hi) for _ in range(20)) == 375.0
    assert split_url("http://loki:3100/") == ("http://loki:3100", "http://loki:3100/loki/api/v1/push")
    assert split_url("https://gw/loki/api/v1/push") == ("https://gw", "https://gw/loki/api/v1/push")


def test_root_quiet_flag_silences_the_shipper_narrative(cli, tmp_path):
    log = tmp_path / "audit.log"
    append(log, make_events(3))
    d = double()
    try:
        loud = cli(["ship", *base_args(log, d, tmp_path / "a.json", "--once")])
        quiet = cli(["-q", "ship", *base_args(log, d, tmp_path / "b.json", "--once")])
    finally:
        d.stop()
    assert loud.code == quiet.code == 0
    assert "shipped 3 entries" in loud.err and quiet.err == ""


def test_a_scrape_never_sees_sent_entries_before_their_malformed_count(tmp_path):
    """The counters an ack publishes are set before entries_sent grows: a /metrics scrape in
    between must not show 31 lines sent and 0 malformed (CI once caught exactly that)."""
    from kaudit.shipper.client import LokiClient
    from kaudit.shipper.metrics import Metrics
    from kaudit.shipper.payload import Encoder
    from kaudit.shipper.pipeline import Options, Shipper
    from kaudit.shipper.positions import Positions
    from kaudit.shipper.tail import Follower

    class Watching(Metrics):
        seen: list = []

        def inc(self, name, value=1, **labels):
            if name == "kaudit_shipper_entries_sent_total":
                self.seen.append((self.total(name) + value, self.get("kaudit_shipper_malformed_lines_total")))
            super().inc(name, value, **labels)

    log = tmp_path / "audit.log"
    append(log, make_events(30) + [b"not json"])
    d = double()
    try:
        metrics = Watching()
        shipper = Shipper([Follower(str(log), start_at="beginning")], Encoder(), LokiClient(d.url), Positions(str(tmp_path / "p.json")).load(),
                          Options(once=True, structured_metadata="off", push_format="json"), metrics=metrics, log=lambda m: None)
        assert shipper.run() == 31  # entries sent
    finally:
        d.stop()
    assert metrics.seen == [(31, 1)]

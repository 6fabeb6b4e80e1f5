"""`kaudit query`: filters -> LogQL (labels where collectors set them, | json otherwise),
escaping of hostile values, and rendering of what the Loki double returns."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from doubles.loki import Query
from doubles.verify.cluster import Cluster, double_path, events
from kaudit.adapters.loki import LokiClient, LokiError
from kaudit.core.query import Filters, build_logql, json_label, logql_string, rows_from_entries
from kaudit.shipper import fields as F
from loki_fixture import loki  # noqa: F401

SEL = '{job="kubernetes-audit"}'


# --------------------------------------------------------------------------- building LogQL


@pytest.mark.parametrize(
    "filters, expected",
    [
        (Filters(), SEL),
        (Filters(verb="delete"), '{job="kubernetes-audit", verb="delete"}'),
        (Filters(user="alice"), SEL + ' |= "alice" | json | user_username="alice"'),
        (Filters(resource="secrets"), SEL + ' |= "secrets" | json | objectRef_resource="secrets"'),
        (Filters(namespace="team-a"), SEL + ' |= "team-a" | json | objectRef_namespace="team-a"'),
        (Filters(name="db-password"), SEL + ' |= "db-password" | json | objectRef_name="db-password"'),
        (Filters(decision="forbid"), SEL + ' |= "forbid" | json | annotations_authorization_k8s_io_decision="forbid"'),
        (Filters(code=403), SEL + ' |= "403" | json | responseStatus_code="403"'),
    ],
)
def test_each_filter(filters, expected):
    assert build_logql(filters).logql == expected


def test_filters_combine_labels_first_then_json():
    plan = build_logql(Filters(user="system:serviceaccount:kube-system:generic-garbage-collector", verb="list", namespace="kube-system"))
    assert plan.logql == (
        '{job="kubernetes-audit", verb="list"} |= "system:serviceaccount:kube-system:generic-garbage-collector"'
        ' | json | user_username="system:serviceaccount:kube-system:generic-garbage-collector"'
        ' | objectRef_namespace="kube-system"'
    )
    assert plan.labels == {"verb": "list"}


def test_labels_follow_the_collectors_configuration():
    plan = build_logql(Filters(resource="pods", verb="get", user="bob"), labels=("verb", "resource"), job="audit")
    assert plan.logql.startswith('{job="audit", verb="get", resource="pods"}')
    assert "objectRef_resource" not in plan.logql
    # a high-cardinality field is never a stream label, whatever the caller passes
    assert "user=" not in build_logql(Filters(user="bob"), labels=("user",)).logql.split("}")[0]


def test_json_labels_come_from_the_field_table():
    assert json_label(F.BY_NAME["decision"]) == "annotations_authorization_k8s_io_decision"
    assert json_label(F.BY_NAME["code"]) == "responseStatus_code"
    assert json_label(F.BY_NAME["user"]) == "user_username"


NASTY = ['say "hi"', "back\\slash", ".*", "a|b", "(x)[y]{z}+?^$", 'end\\"', "tab\tnew\nline", "ünï"]


@pytest.mark.parametrize("value", NASTY)
def test_values_are_escaped_and_literal(value):
    plan = build_logql(Filters(user=value, verb=value))
    parsed = Query.parse(plan.logql)  # the Loki double's LogQL parser reads it back whole
    assert ("verb", "=", value) in parsed.matchers
    assert ("label", "user_username", "=", value) in parsed.stages
    assert all(op in ("=",) for _, op, _ in parsed.matchers)  # never a regex matcher
    # no prefilter for values whose JSON form differs from the raw text
    assert ("line", "|=", value) not in parsed.stages or value.isalnum()


def test_logql_string_escapes_control_characters():
    assert logql_string('a"b\\c') == '"a\\"b\\\\c"'
    assert logql_string("\x01") == '"\\x01"'


def test_bad_decision_and_code_are_refused():
    with pytest.raises(ValueError):
        build_logql(Filters(decision="deny"))
    with pytest.raises(ValueError):
        build_logql(Filters(code=42))


def test_cli_logql_prints_only_the_query(cli):
    r = cli(["query", "--user", 'x"y', "--code", "403", "--logql"])
    assert r.code == 0
    assert r.out == SEL + ' |= "403" | json | user_username="x\\"y" | responseStatus_code="403"\n'


@pytest.mark.parametrize("argv", [["--decision", "deny"], ["--code", "42"], ["--since", "later"], ["--label", "user"]])
def test_cli_usage_errors(cli, argv):
    r = cli(["query", *argv, "--loki-url", "http://127.0.0.1:9"])
    assert r.code == 2 and "Traceback" not in r.err


# --------------------------------------------------------------------------- against the Loki double


def _push(loki, lines, labels_of=None):  # noqa: F811
    now = time.time_ns()
    for i, line in enumerate(lines):
        e = json.loads(line)
        labels = {"job": "kubernetes-audit", "audit_level": e["level"], "verb": e["verb"], "stage": e["stage"]}
        body = json.dumps({"streams": [{"stream": labels, "values": [[str(now - (len(lines) - i) * 1000), line]]}]})
        loki.push(body.encode(), content_type="application/json", encoding="", tenant="fake")


def test_query_renders_matching_events_as_a_table(cli, loki):  # noqa: F811
    _push(loki, events())
    r = cli(["query", "--loki-url", loki.url, "--resource", "secrets", "--decision", "forbid"])
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].split() == ["time", "user", "verb", "resource", "namespace/name", "code", "decision"]
    assert len(lines) == 2
    assert lines[1].split()[1:] == ["kubernetes-admin", "list", "secrets", "team-a", "403", "forbid"]
    assert "1 event(s)" in r.err


def test_query_json_output_and_newest_first(cli, loki):  # noqa: F811
    _push(loki, events())
    r = cli(["query", "--loki-url", loki.url, "--verb", "get", "-o", "json"])
    doc = json.loads(r.out)
    assert doc["query"] == '{job="kubernetes-audit", verb="get"}'
    assert doc["count"] == 3
    times = [e["time"] for e in doc["events"]]
    assert times == sorted(times, reverse=True)
    assert {e["code"] for e in doc["events"]} == {200, 500}


def test_query_limit(cli, loki):  # noqa: F811
    _push(loki, events())
    r = cli(["query", "--loki-url", loki.url, "--limit", "2", "-o", "json"])
    assert json.loads(r.out)["count"] == 2


def test_hostile_value_matches_only_itself(cli, loki):  # noqa: F811
    base = json.loads(events()[0])
    wanted, decoy = 'ev"il\\.*', 'evXil\\\\abc'
    lines = []
    for user in (wanted, decoy):
        e = dict(base, user={"username": user}, auditID=user)
        lines.append(json.dumps(e))
    _push(loki, lines)
    r = cli(["query", "--loki-url", loki.url, "--user", wanted, "-o", "json"])
    doc = json.loads(r.out)
    assert [e["user"] for e in doc["events"]] == [wanted]


def test_query_through_a_port_forward(cli, loki, tmp_path, monkeypatch):  # noqa: F811
    _push(loki, events())
    monkeypatch.setenv("PATH", double_path())
    c = Cluster(tmp_path / "cluster.json").healthy(loki_url=loki.url)
    monkeypatch.setenv("KAUDIT_VERIFY_CLUSTER", str(c.path))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    r = cli(["query", "--kubeconfig", kubeconfig, "--namespace", "team-a", "-o", "json"])
    assert r.code == 0, r.err
    assert [e["namespace"] for e in json.loads(r.out)["events"]] == ["team-a"]


def test_rows_skip_lines_that_are_not_events():
    rows, skipped = rows_from_entries([(1, "not json", {}), (2, '{"kind":"Other"}', {}), (3, events()[3], {})])
    assert skipped == 2 and len(rows) == 1
    assert rows[0].cells() == (json.loads(events()[3])["stageTimestamp"], "kubernetes-admin", "list", "secrets", "team-a", "403", "forbid")


# --------------------------------------------------------------------------- Loki errors


def test_refused_names_the_url_and_hints(cli):
    r = cli(["query", "--loki-url", "http://127.0.0.1:9"])
    assert r.code == 1
    assert r.err.splitlines()[0].startswith("error: Loki at http://127.0.0.1:9/loki/api/v1/query_range: connection refused")
    assert r.err.splitlines()[1].startswith("hint: ") and "Traceback" not in r.err


def test_400_shows_lokis_own_message(loki):  # noqa: F811
    with pytest.raises(LokiError) as e:
        LokiClient(loki.url).query_range("verb=get", start_ns=0)
    assert "answered 400: parse error at line 1, col 1" in e.value.message
    assert e.value.status == 400 and "query" in e.value.hint


@pytest.fixture
def failing_server():
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"rpc error: code = Unavailable desc = at least 1 live replicas required, could only find 0\n"
            status = 503 if self.path.startswith("/ready") else 500
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_500_shows_the_body_in_one_line(cli, failing_server):
    r = cli(["query", "--loki-url", failing_server])
    assert r.code == 1
    first = r.err.splitlines()[0]
    assert first == (f"error: Loki at {failing_server}/loki/api/v1/query_range answered 500: "
                     "rpc error: code = Unavailable desc = at least 1 live replicas required, could only find 0")
    with pytest.raises(LokiError) as e:
        LokiClient(failing_server).ready()
    assert "answered 503" in e.value.message

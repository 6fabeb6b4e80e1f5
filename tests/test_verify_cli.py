"""`kaudit verify` end to end through the CLI: exit codes, the table, JSON against the
documented schema, the `up` phase, and the reachability check over a real loopback sshd."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from doubles.verify.cluster import Cluster, NodeTree, double_path
from kaudit.engine.verify.schema import SCHEMA
from loki_fixture import loki  # noqa: F401

REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- a JSON Schema subset


def validate(instance, schema, path="$"):
    """Errors of instance against the JSON Schema keywords docs/verify.schema.json uses
    (type, const, enum, required, properties, additionalProperties, items, minimum)."""
    errors = []
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        checks = {
            "object": lambda v: isinstance(v, dict),
            "array": lambda v: isinstance(v, list),
            "string": lambda v: isinstance(v, str),
            "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
            "boolean": lambda v: isinstance(v, bool),
            "null": lambda v: v is None,
        }
        if not any(checks[t](instance) for t in names):
            return [f"{path}: {instance!r} is not of type {types}"]
    if "const" in schema and instance != schema["const"]:
        errors.append(f"{path}: {instance!r} is not {schema['const']!r}")
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{path}: {instance!r} is not one of {schema['enum']}")
    if "minimum" in schema and isinstance(instance, (int, float)) and instance < schema["minimum"]:
        errors.append(f"{path}: {instance} < {schema['minimum']}")
    if isinstance(instance, dict):
        for key in schema.get("required", []):
            if key not in instance:
                errors.append(f"{path}: missing {key}")
        props = schema.get("properties", {})
        for key, value in instance.items():
            if key in props:
                errors += validate(value, props[key], f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}: unexpected property {key}")
    if isinstance(instance, list) and "items" in schema:
        for i, item in enumerate(instance):
            errors += validate(item, schema["items"], f"{path}[{i}]")
    return errors


def test_the_validator_rejects_what_the_schema_forbids():
    good = {"schema": "kaudit.verify/v1", "ok": True, "exit_code": 0, "started_at": "x", "elapsed_s": 1.0,
            "summary": {"pass": 1, "fail": 0, "warn": 0, "skip": 0},
            "checks": [{"name": "loki", "node": None, "status": "pass", "elapsed_s": 0.1, "detail": "d", "hint": None, "data": {}}]}
    assert validate(good, SCHEMA) == []
    bad = json.loads(json.dumps(good))
    bad["checks"][0]["status"] = "ok"
    bad["checks"][0]["extra"] = 1
    del bad["summary"]["skip"]
    bad["exit_code"] = 1
    errors = validate(bad, SCHEMA)
    assert len(errors) == 4, errors


def test_schema_file_in_docs_is_the_schema(cli):
    documented = json.loads((REPO / "docs" / "verify.schema.json").read_text())
    assert documented == SCHEMA
    r = cli(["verify", "--print-schema"])
    assert r.code == 0 and json.loads(r.out) == SCHEMA


# --------------------------------------------------------------------------- whole runs


@pytest.fixture
def env(tmp_path, monkeypatch, loki):  # noqa: F811
    tree = NodeTree(tmp_path / "node").healthy()
    monkeypatch.setenv("PATH", double_path())
    cluster = Cluster(tmp_path / "cluster.json").healthy(loki_url=loki.url, audit_log=tree.p(tree.spec.log_path))
    monkeypatch.setenv("KAUDIT_VERIFY_CLUSTER", str(cluster.path))
    monkeypatch.delenv("KAUDIT_LOKI_URL", raising=False)
    # streams the collector shipped before verify runs
    from doubles.verify.cluster import events

    for i, verb in enumerate(("get", "list")):
        body = json.dumps({"streams": [{"stream": {"job": "kubernetes-audit", "node": "cp-1", "audit_level": "Metadata",
                                                   "verb": verb, "stage": "ResponseComplete"},
                                        "values": [[str(1_000 + i + __import__("time").time_ns()), events()[i]]]}]}).encode()
        loki.push(body, content_type="application/json", encoding="", tenant="fake")
    return tree, cluster


def test_all_checks_pass_exit_0_and_json_validates(cli, env, loki):  # noqa: F811
    tree, _ = env
    r = cli(["verify", "--host", "local", "--rootfs", tree.root, "--loki-url", loki.url, "--timeout", "10s", "--output", "json"])
    doc = json.loads(r.out)
    assert validate(doc, SCHEMA) == []
    assert [c["name"] for c in doc["checks"]] == [
        "reachable", "manifest", "policy", "apiserver", "audit-log", "collector", "loki", "probe", "labels"]
    assert {c["status"] for c in doc["checks"]} == {"pass"}, [c for c in doc["checks"] if c["status"] != "pass"]
    assert r.code == 0 and doc["ok"] is True and doc["exit_code"] == 0
    assert doc["loki_url"] == loki.url
    probe = next(c for c in doc["checks"] if c["name"] == "probe")
    assert probe["data"]["latency_s"] > 0
    # the double's apiserver wrote the probe's event into the node's audit log too
    assert probe["data"]["probe"] in tree.p(tree.spec.log_path).read_text()


def test_a_failing_check_exits_4_and_json_still_validates(cli, env, loki):  # noqa: F811
    tree, _ = env
    tree.p(tree.spec.policy_path).write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []\n")
    r = cli(["verify", "--rootfs", tree.root, "--loki-url", loki.url, "--timeout", "10s", "-o", "json"])
    assert r.code == 4
    doc = json.loads(r.out)
    assert validate(doc, SCHEMA) == []
    policy = next(c for c in doc["checks"] if c["name"] == "policy")
    assert policy["status"] == "fail" and policy["hint"]
    assert doc["summary"]["fail"] == 1 and doc["ok"] is False


def test_loki_down_skips_probe_and_labels(cli, env, loki):  # noqa: F811
    tree, _ = env
    url = loki.url
    loki.stop()
    r = cli(["verify", "--rootfs", tree.root, "--loki-url", url, "-o", "json"])
    assert r.code == 4
    doc = json.loads(r.out)
    status = {c["name"]: c["status"] for c in doc["checks"]}
    assert status["loki"] == "fail" and status["probe"] == "skip" and status["labels"] == "skip"
    assert validate(doc, SCHEMA) == []


def test_unreachable_node_skips_its_node_checks(cli, env, loki, tmp_path):  # noqa: F811
    # nothing listens on port 1 (a missing --rootfs is a usage error, tests/test_cli_review.py)
    r = cli(["verify", "--host", "ssh://root@127.0.0.1:1", "--loki-url", loki.url, "--collector", "none", "-o", "json"])
    assert r.code == 4
    doc = json.loads(r.out)
    node_checks = [c for c in doc["checks"] if c["node"]]
    assert node_checks[0]["status"] == "fail"
    assert [c["status"] for c in node_checks[1:]] == ["skip"] * 4


def test_plain_table_off_a_terminal(cli, env, loki):  # noqa: F811
    tree, _ = env
    r = cli(["verify", "--rootfs", tree.root, "--timeout", "10s"])  # Loki through the port-forward
    assert r.code == 0, r.out + r.err
    lines = r.out.splitlines()
    assert lines[0].startswith("PASS  reachable")
    assert any(line.startswith("PASS  loki") and "port-forward" in line for line in lines)
    assert lines[-1].startswith("verify passed: 9 passed, 0 failed")
    assert "\x1b[" not in r.out


def test_table_shows_hints_for_failures(cli, env, loki):  # noqa: F811
    tree, cluster = env
    cluster.state["readyz"] = "[-]etcd failed\nreadyz check failed"
    cluster.save()
    r = cli(["verify", "--rootfs", tree.root, "--loki-url", loki.url, "--timeout", "10s"])
    assert r.code == 4
    out = r.out.splitlines()
    i = next(i for i, line in enumerate(out) if line.startswith("FAIL  apiserver"))
    assert "hint:" in out[i + 1]
    assert out[-1].startswith("verify FAILED: 8 passed, 1 failed")


def test_rich_table_on_a_terminal(env, loki):  # noqa: F811
    import io

    from kaudit.engine.verify.checks import CheckResult
    from kaudit.engine.verify.report import render_table

    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    render_table([CheckResult("policy", "fail", 0.5, "differs [x]", "rewrite [it]", "local")], out, elapsed=0.5)
    text = out.getvalue()
    assert "┃" in text or "│" in text  # a rich table
    assert "differs [x]" in text and "hint: rewrite [it]" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--policy-profile", "gce", "--policy-file", "/etc/hostname"], "exclude each other"),
        (["--policy-profile", "nope"], "is not a profile"),
        (["--loki-url", "localhost:3100"], "is not an http(s) URL"),
        (["--timeout", "soon"], "is not a duration"),
        (["--host", "ssh://root@127.0.0.1", "--rootfs", "/tmp"], "--rootfs works only with --host local"),
    ],
)
def test_usage_errors(cli, argv, message):
    r = cli(["verify", *argv])
    assert r.code == 2
    assert message in r.err and "Traceback" not in r.err


# --------------------------------------------------------------------------- the up phase


def _up_ctx(tree, *, dry_run=False, facts=None, **opts):
    from types import SimpleNamespace

    from kaudit.adapters.hosts.local import LocalHost
    from kaudit.engine.ui import UI
    from kaudit.engine.workflow import UpContext

    import io

    ui = UI(stream=io.StringIO())
    opts.setdefault("cluster_name", "lab")
    return UpContext(LocalHost(tree.root), LocalHost(), ui, SimpleNamespace(**opts), dry_run=dry_run, facts=facts or {})


def test_phase_dry_run_plans(env, loki):  # noqa: F811
    from kaudit.engine.phases.verify import run
    from kaudit.engine.workflow import Status

    tree, _ = env
    out = run(_up_ctx(tree, dry_run=True, loki_url=loki.url))
    assert out.status is Status.PLANNED and loki.url in out.message


def test_phase_port_forwards_to_the_service_the_stack_recorded(env, loki):  # noqa: F811
    from kaudit.engine.phases.verify import run
    from kaudit.engine.workflow import Status

    tree, cluster = env
    cluster.state["services"] = {"audit-stack/loki-gw": loki.url.split("//")[1]}
    cluster.save()
    facts = {"namespace": "audit-stack", "loki_service": "loki-gw", "loki_port": 3100,
             "loki_url": "http://loki-gw.audit-stack.svc:3100"}  # in-cluster: not reachable from here
    ctx = _up_ctx(tree, facts=facts, verify_timeout="10s")
    out = run(ctx)
    assert out.status is Status.UNCHANGED and "all checks passed" in out.message
    report = ctx.ui.stream.getvalue()
    assert "PASS  probe" in report and "port-forward to svc/loki-gw in namespace audit-stack" in report
    assert ctx.node.exists("/etc/kubernetes/admin.conf")  # the node is still usable by up


def test_phase_failure_is_exit_4(env, loki):  # noqa: F811
    from kaudit.core.errors import ExitCode, KauditError
    from kaudit.engine.phases.verify import run

    tree, _ = env
    tree.set_process(None)
    with pytest.raises(KauditError) as e:
        run(_up_ctx(tree, loki_url=loki.url, verify_timeout="10s"))
    assert e.value.exit_code == ExitCode.VERIFY_FAILED
    assert "apiserver" in e.value.message


# --------------------------------------------------------------------------- SSH


def test_reachable_over_real_ssh(sshd):
    from kaudit.adapters.hosts import open_host
    from kaudit.engine.verify import checks as C
    from kaudit.engine.verify.checks import Node, Settings, VerifyContext
    from kaudit.adapters.hosts.local import LocalHost
    from kaudit.core.manifest import AuditSpec

    node = Node(sshd.url, lambda: open_host(sshd.url, ssh_key=sshd.key_path, known_hosts=sshd.known_hosts_path))
    ctx = VerifyContext(Settings(spec=AuditSpec()), [node], LocalHost())
    try:
        v = C.check_reachable(ctx, node)
    finally:
        ctx.close()
    assert v.status == C.PASS, v
    import socket

    assert v.data["hostname"] == socket.gethostname()


def test_reachable_fails_on_a_closed_ssh_port(cli, sshd, tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    r = cli(["verify", "--host", f"ssh://root@127.0.0.1:{port}", "--ssh-key", sshd.key_path,
             "--ssh-known-hosts", sshd.known_hosts_path, "--loki-url", "http://127.0.0.1:9", "--collector", "none",
             "--kubeconfig", sshd.key_path, "-o", "json"])
    assert r.code == 4
    doc = json.loads(r.out)
    first = doc["checks"][0]
    assert first["name"] == "reachable" and first["status"] == "fail"
    assert f"127.0.0.1:{port}" in first["detail"]
    assert validate(doc, SCHEMA) == []


def test_audit_options_say_what_the_node_should_carry(cli, env, loki):  # noqa: F811
    tree, _ = env
    r = cli(["verify", "--rootfs", tree.root, "--loki-url", loki.url, "--timeout", "10s", "-o", "json",
             "--audit-log-maxsize", "200MiB"])
    assert r.code == 4
    checks = {c["name"]: c for c in json.loads(r.out)["checks"]}
    assert checks["manifest"]["status"] == "fail" and checks["manifest"]["data"]["missing_flags"] == ["audit-log-maxsize"]
    assert checks["apiserver"]["status"] == "fail" and "--audit-log-maxsize=200" in checks["apiserver"]["detail"]
    assert checks["policy"]["status"] == "pass" and checks["audit-log"]["status"] == "pass"


def test_terminal_run_shows_a_live_status_then_the_table(tmp_path):
    import io

    from kaudit.core.manifest import AuditSpec
    from kaudit.adapters.hosts.local import LocalHost
    from kaudit.engine.ui import UI
    from kaudit.engine.verify import session

    class Tty(io.StringIO):
        def isatty(self):
            return True

    err, out = Tty(), Tty()
    settings = session.Settings(spec=AuditSpec(), loki_url="http://127.0.0.1:9", collector="none")
    nodes = [session.Node("local", lambda: LocalHost(tmp_path / "absent"))]
    results, doc = session.verify(settings, nodes, ui=UI(stream=err), stream=out)
    assert doc["exit_code"] == 4 and results[0].status == "fail"
    assert "verify FAILED" in out.getvalue() and "reachable" in out.getvalue()


def test_label_option_sets_the_expected_labels(cli, env, loki):  # noqa: F811
    tree, _ = env
    base = ["verify", "--rootfs", tree.root, "--loki-url", loki.url, "--timeout", "10s", "-o", "json"]
    r = cli(base + ["--label", "verb", "--label", "resource"])
    labels = next(c for c in json.loads(r.out)["checks"] if c["name"] == "labels")
    assert labels["status"] == "fail" and "resource (missing in" in labels["detail"]
    r = cli(base + ["--label", "name"])
    assert r.code == 2 and "'name' cannot be a label" in r.err


def test_max_streams_option(cli, env, loki):  # noqa: F811
    tree, _ = env
    r = cli(["verify", "--rootfs", tree.root, "--loki-url", loki.url, "--timeout", "10s", "-o", "json", "--max-streams", "1"])
    labels = next(c for c in json.loads(r.out)["checks"] if c["name"] == "labels")
    assert r.code == 4 and labels["status"] == "fail" and "more than 1" in labels["detail"]

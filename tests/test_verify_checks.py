"""Each verify check, passing and failing, through the host seam (a real rootfs tree),
the kubectl double (tests/doubles/verify/kubectl) and the Loki double."""

from __future__ import annotations

import json
import time

import pytest

from doubles.verify.cluster import Cluster, NodeTree, double_path, events
from kaudit.core.manifest import AuditSpec
from kaudit.adapters.hosts.local import LocalHost
from kaudit.engine.verify import checks as C
from kaudit.engine.verify.checks import Node, Settings, VerifyContext
from loki_fixture import loki, loki_factory  # noqa: F401


@pytest.fixture
def tree(tmp_path):
    return NodeTree(tmp_path / "node").healthy()


@pytest.fixture
def cluster(tmp_path, monkeypatch, loki):  # noqa: F811
    monkeypatch.setenv("PATH", double_path())
    c = Cluster(tmp_path / "cluster.json").healthy(loki_url=loki.url)
    monkeypatch.setenv("KAUDIT_VERIFY_CLUSTER", str(c.path))
    return c


def make(tree, **kw):
    settings = Settings(spec=kw.pop("spec", tree.spec), **kw)
    node = Node(f"local (rootfs {tree.root})", lambda: LocalHost(tree.root))
    ctx = VerifyContext(settings, [node], LocalHost())
    return ctx, node


def run_node_checks(ctx, node, upto):
    """Run the node checks in order up to `upto`, as the runner does (later checks use earlier facts)."""
    for name, fn in (("reachable", C.check_reachable), ("manifest", C.check_manifest), ("policy", C.check_policy),
                     ("apiserver", C.check_apiserver), ("audit-log", C.check_audit_log)):
        v = fn(ctx, node)
        if name == upto:
            return v


def push(loki, labels, lines, ts=None):  # noqa: F811
    ts = ts or time.time_ns()
    values = [[str(ts + i), line] for i, line in enumerate(lines)]
    body = json.dumps({"streams": [{"stream": labels, "values": values}]}).encode()
    loki.push(body, content_type="application/json", encoding="", tenant="fake")


AUDIT_LABELS = {"job": "kubernetes-audit", "node": "cp-1", "audit_level": "Metadata", "verb": "get", "stage": "ResponseComplete"}


# --------------------------------------------------------------------------- reachable


def test_reachable_passes_on_a_rootfs_tree(tree):
    ctx, node = make(tree)
    v = C.check_reachable(ctx, node)
    assert v.status == C.PASS, v
    assert str(tree.root) in v.detail


def test_reachable_fails_when_rootfs_is_missing(tmp_path):
    ctx, node = make(NodeTree(tmp_path / "nowhere"))
    v = C.check_reachable(ctx, node)
    assert v.status == C.FAIL
    assert "nowhere" in v.detail and v.hint


# --------------------------------------------------------------------------- manifest


def test_manifest_passes_when_patch_changes_nothing(tree):
    ctx, node = make(tree)
    v = run_node_checks(ctx, node, "manifest")
    assert v.status == C.PASS, v
    assert v.data["flags"]["audit-log-path"] == tree.spec.log_path


def test_manifest_fails_on_an_unpatched_manifest(tree):
    from doubles.verify.cluster import DATA, MANIFEST

    tree.write(MANIFEST, (DATA / "kube-apiserver.yaml").read_text())
    ctx, node = make(tree)
    v = run_node_checks(ctx, node, "manifest")
    assert v.status == C.FAIL
    assert "--audit-log-path" in v.detail and "diff-manifest" in v.hint
    assert set(v.data["missing_flags"]) == set(tree.spec.flags())


def test_manifest_fails_when_another_log_path_is_wanted(tree):
    ctx, node = make(tree, spec=AuditSpec(log_path="/var/log/elsewhere/audit.log"))
    v = run_node_checks(ctx, node, "manifest")
    assert v.status == C.FAIL
    assert v.data["missing_flags"] == ["audit-log-path"]


def test_manifest_fails_when_absent(tree):
    from doubles.verify.cluster import MANIFEST

    tree.p(MANIFEST).unlink()
    ctx, node = make(tree)
    v = run_node_checks(ctx, node, "manifest")
    assert v.status == C.FAIL and "kube-apiserver.yaml" in v.detail


# --------------------------------------------------------------------------- policy


def test_policy_passes_when_equal_to_the_profile(tree):
    ctx, node = make(tree, policy_profile="gce")
    v = run_node_checks(ctx, node, "policy")
    assert v.status == C.PASS, v
    assert "profile gce" in v.detail


def test_policy_fails_when_another_profile_was_chosen(tree):
    ctx, node = make(tree, policy_profile="gce-modern")
    v = run_node_checks(ctx, node, "policy")
    assert v.status == C.FAIL
    assert "differs from profile gce-modern" in v.detail and v.data["lines_differ"] > 0


def test_policy_compares_with_the_users_own_file(tree, tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n")
    ctx, node = make(tree, policy_file=mine)
    assert run_node_checks(ctx, node, "policy").status == C.FAIL  # the node has gce
    tree.write(tree.spec.policy_path, "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - {level: Metadata}\n")
    ctx, node = make(tree, policy_file=mine)
    v = run_node_checks(ctx, node, "policy")
    assert v.status == C.PASS and "formatting differs" in v.detail


def test_policy_fails_when_invalid(tree):
    tree.write(tree.spec.policy_path, "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Everything\n")
    ctx, node = make(tree)
    v = run_node_checks(ctx, node, "policy")
    assert v.status == C.FAIL and "not a valid audit policy" in v.detail
    assert "Everything" in v.detail


def test_policy_fails_when_missing(tree):
    tree.p(tree.spec.policy_path).unlink()
    ctx, node = make(tree)
    v = run_node_checks(ctx, node, "policy")
    assert v.status == C.FAIL and "no audit policy at /etc/kubernetes/audit-policy.yaml" in v.detail


# --------------------------------------------------------------------------- apiserver


def test_apiserver_passes_with_flags_and_readyz(tree, cluster):
    ctx, node = make(tree)
    v = run_node_checks(ctx, node, "apiserver")
    assert v.status == C.PASS, v
    assert v.data["source"] == "/proc/4242/cmdline"


def test_apiserver_fails_when_not_running(tree, cluster):
    tree.set_process(None)
    ctx, node = make(tree)
    v = run_node_checks(ctx, node, "apiserver")
    assert v.status == C.FAIL and "not running" in v.detail


def test_apiserver_fails_when_running_without_the_flags(tree, cluster):
    from doubles.verify.cluster import DATA

    # the manifest is patched, but kubelet has not restarted the apiserver yet
    tree.set_process(NodeTree.args_from_manifest((DATA / "kube-apiserver.yaml").read_text()))
    ctx, node = make(tree)
    v = run_node_checks(ctx, node, "apiserver")
    assert v.status == C.FAIL
    assert "no --audit-policy-file" in v.detail and "kubelet" in v.hint


def test_apiserver_flag_paths_are_read_under_rootfs(tree, cluster):
    tree.p(tree.spec.policy_path).unlink()
    ctx, node = make(tree)
    v = run_node_checks(ctx, node, "apiserver")
    assert v.status == C.FAIL
    assert f"looked at {tree.root}/etc/kubernetes/audit-policy.yaml" in v.detail


def test_apiserver_fails_when_readyz_is_not_ok(tree, cluster):
    cluster.state["readyz"] = "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed"
    cluster.save()
    ctx, node = make(tree)
    v = run_node_checks(ctx, node, "apiserver")
    assert v.status == C.FAIL
    assert "/readyz is not ok" in v.detail and "InternalError" in v.detail


def test_apiserver_readyz_uses_admin_conf_under_rootfs(tree, cluster):
    tree.p("/etc/kubernetes/admin.conf").unlink()
    ctx, node = make(tree)
    v = run_node_checks(ctx, node, "apiserver")
    assert v.status == C.FAIL
    assert f"stat {tree.root}/etc/kubernetes/admin.conf" in v.detail


# --------------------------------------------------------------------------- audit log


def test_audit_log_passes_when_fresh_and_ending_with_an_event(tree, cluster):
    ctx, node = make(tree)
    v = run_node_checks(ctx, node, "audit-log")
    assert v.status == C.PASS, v
    assert "last event create configmaps" in v.detail


def test_audit_log_ignores_a_line_still_being_written(tree, cluster):
    tree.write_log(events(), partial='{"kind":"Event","apiVersion":"audit.k8s.io/v1","lev')
    ctx, node = make(tree)
    assert run_node_checks(ctx, node, "audit-log").status == C.PASS


def test_audit_log_fails_when_stale(tree, cluster):
    tree.write_log(events(), age_s=300)
    ctx, node = make(tree)
    v = run_node_checks(ctx, node, "audit-log")
    assert v.status == C.FAIL and "last written 5m" in v.detail  # 5m or 5m1s on a loaded machine


def test_audit_log_fails_when_missing(tree, cluster):
    tree.p(tree.spec.log_path).unlink()
    ctx, node = make(tree)
    v = run_node_checks(ctx, node, "audit-log")
    assert v.status == C.FAIL and "no audit log at /var/log/kubernetes-audit/audit.log" in v.detail


def test_audit_log_fails_when_last_line_is_not_an_event(tree, cluster):
    tree.write_log(events() + ['{"level":"info","msg":"not an audit event"}'])
    ctx, node = make(tree)
    v = run_node_checks(ctx, node, "audit-log")
    assert v.status == C.FAIL and "not an audit Event" in v.detail


def test_audit_log_finds_the_last_line_behind_a_huge_event(tree, cluster):
    big = json.loads(events()[-1])
    big["annotations"]["padding"] = "x" * 300_000  # bigger than the first read window
    tree.write_log(events() + [json.dumps(big)])
    ctx, node = make(tree)
    assert run_node_checks(ctx, node, "audit-log").status == C.PASS


def test_audit_log_override_path(tree, cluster):
    ctx, node = make(tree, audit_log="/var/log/other/audit.log")
    v = run_node_checks(ctx, node, "audit-log")
    assert v.status == C.FAIL and "/var/log/other/audit.log" in v.detail


# --------------------------------------------------------------------------- collector


def _cluster_ctx(tree, **kw):
    ctx, node = make(tree, **kw)
    C.check_reachable(ctx, node)
    return ctx


def test_collector_passes_when_ready_on_every_control_plane_node(tree, cluster, loki):  # noqa: F811
    cluster.healthy(loki_url=loki.url, nodes=("cp-1", "cp-2", "cp-3"))
    v = C.check_collector(_cluster_ctx(tree))
    assert v.status == C.PASS, v
    assert v.data == {"collector": "promtail", "nodes": ["cp-1", "cp-2", "cp-3"]}


@pytest.mark.parametrize("kind", ["alloy", "shipper"])
def test_collector_finds_alloy_and_shipper(tree, cluster, loki, kind):  # noqa: F811
    cluster.healthy(loki_url=loki.url, collector=kind)
    assert C.check_collector(_cluster_ctx(tree, collector=kind)).status == C.PASS
    other = "promtail"
    assert C.check_collector(_cluster_ctx(tree, collector=other)).status == C.FAIL


def test_collector_fails_when_a_control_plane_node_has_none(tree, cluster, loki):  # noqa: F811
    cluster.healthy(loki_url=loki.url, nodes=("cp-1", "cp-2"))
    cluster.state["pods"] = cluster.state["pods"][:1]
    cluster.save()
    v = C.check_collector(_cluster_ctx(tree))
    assert v.status == C.FAIL and "no pod on control-plane node(s) cp-2" in v.detail
    assert "toleration" in v.hint


def test_collector_fails_when_not_ready(tree, cluster):
    cluster.state["pods"][0]["ready"] = False
    cluster.state["pods"][0]["phase"] = "Pending"
    cluster.save()
    v = C.check_collector(_cluster_ctx(tree))
    assert v.status == C.FAIL and "not ready" in v.detail and "Pending" in v.detail


def test_collector_none_is_skipped(tree, cluster):
    cluster.state["pods"] = []
    cluster.save()
    assert C.check_collector(_cluster_ctx(tree, collector="none")).status == C.SKIP
    assert C.check_collector(_cluster_ctx(tree)).status == C.FAIL


def test_collector_fails_when_the_api_is_down(tree, cluster):
    cluster.state["down"] = True
    cluster.save()
    v = C.check_collector(_cluster_ctx(tree))
    assert v.status == C.FAIL and "refused" in v.detail


# --------------------------------------------------------------------------- loki


def test_loki_passes_with_a_url(tree, cluster, loki):  # noqa: F811
    ctx = _cluster_ctx(tree, loki_url=loki.url)
    v = C.check_loki(ctx)
    assert v.status == C.PASS and "Loki 3.5.0" in v.detail
    ctx.close()


def test_loki_through_a_port_forward_that_is_closed_afterwards(tree, cluster, loki):  # noqa: F811
    ctx = _cluster_ctx(tree)
    v = C.check_loki(ctx)
    assert v.status == C.PASS, v
    assert "port-forward to svc/loki in namespace kaudit" in v.detail
    proc = ctx.port_forward.proc
    assert v.data["url"] != loki.url and proc.poll() is None
    assert ctx.loki.ready() == "ready"  # through the forward
    ctx.close()
    assert proc.poll() is not None


def test_loki_fails_when_refused(tree, cluster, loki):  # noqa: F811
    url = loki.url
    loki.stop()
    v = C.check_loki(_cluster_ctx(tree, loki_url=url))
    assert v.status == C.FAIL
    assert f"Loki at {url}/ready: connection refused" == v.detail


def test_loki_fails_when_another_server_answers_ready(tree, cluster):
    import http.server
    import threading

    class NotLoki(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html><body>Welcome to nginx!</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotLoki)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        v = C.check_loki(_cluster_ctx(tree, loki_url=url))
    finally:
        server.shutdown()
        server.server_close()
    assert v.status == C.FAIL
    assert "not Loki's 'ready'" in v.detail and "Welcome to nginx" in v.detail
    assert "is this Loki?" in v.hint


def test_loki_fails_when_the_service_is_missing(tree, cluster):
    cluster.state["services"] = {}
    cluster.save()
    v = C.check_loki(_cluster_ctx(tree))
    assert v.status == C.FAIL
    assert 'services "loki" not found' in v.detail and "--loki-url" in v.hint


# --------------------------------------------------------------------------- probe


def test_probe_found_reports_latency(tree, cluster, loki):  # noqa: F811
    ctx = _cluster_ctx(tree, loki_url=loki.url, timeout=10)
    assert C.check_loki(ctx).status == C.PASS
    v = C.check_probe(ctx)
    assert v.status == C.PASS, v
    assert v.data["probe"].startswith("kaudit-probe-")
    assert v.data["latency_s"] >= 0.2  # the double's collector ships after 0.2 s
    stored = [e for e in loki.entries() if v.data["probe"] in e.line]
    assert len(stored) == 1 and json.loads(stored[0].line)["auditID"] == v.data["audit_id"]


def test_probe_not_found_within_timeout(tree, cluster, loki):  # noqa: F811
    del cluster.state["audit"]  # the request is answered but nothing ships its event
    cluster.save()
    ctx = _cluster_ctx(tree, loki_url=loki.url, timeout=1.0)
    assert C.check_loki(ctx).status == C.PASS
    t0 = time.monotonic()
    v = C.check_probe(ctx)
    assert v.status == C.FAIL
    assert "no audit event for kaudit-probe-" in v.detail and "after 1" in v.detail
    assert time.monotonic() - t0 < 5
    assert v.data["query"].startswith('{job="kubernetes-audit"} |= "kaudit-probe-')


def test_probe_ignores_an_event_under_another_job(tree, cluster, loki):  # noqa: F811
    cluster.state["audit"]["labels"] = {**AUDIT_LABELS, "job": "something-else"}
    cluster.save()
    ctx = _cluster_ctx(tree, loki_url=loki.url, timeout=1.0)
    C.check_loki(ctx)
    assert C.check_probe(ctx).status == C.FAIL


def test_probe_fails_when_the_request_fails(tree, cluster, loki):  # noqa: F811
    ctx = _cluster_ctx(tree, loki_url=loki.url, timeout=1.0)
    C.check_loki(ctx)
    cluster.state["down"] = True
    cluster.save()
    v = C.check_probe(ctx)
    assert v.status == C.FAIL and "probe request" in v.detail and "refused" in v.detail


# --------------------------------------------------------------------------- labels


def _loki_ctx(tree, loki, **kw):  # noqa: F811
    ctx = _cluster_ctx(tree, loki_url=loki.url, **kw)
    assert C.check_loki(ctx).status == C.PASS
    return ctx


def test_labels_pass_with_the_default_labels(tree, cluster, loki):  # noqa: F811
    for verb in ("get", "list", "watch"):
        push(loki, {**AUDIT_LABELS, "verb": verb}, events()[:2])
    v = C.check_labels(_loki_ctx(tree, loki))
    assert v.status == C.PASS, v
    assert v.data["streams"] == 3 and "verb" in v.data["labels"]


def test_labels_fail_when_a_default_label_is_missing(tree, cluster, loki):  # noqa: F811
    push(loki, {"job": "kubernetes-audit", "node": "cp-1"}, events()[:1])
    v = C.check_labels(_loki_ctx(tree, loki))
    assert v.status == C.FAIL and "audit_level (missing in 1 of 1 streams)" in v.detail


def test_labels_fail_without_streams(tree, cluster, loki):  # noqa: F811
    push(loki, {**AUDIT_LABELS, "job": "other"}, events()[:1])
    v = C.check_labels(_loki_ctx(tree, loki))
    assert v.status == C.FAIL and 'no stream {job="kubernetes-audit"}' in v.detail


def test_labels_warn_on_a_high_cardinality_label(tree, cluster, loki):  # noqa: F811
    for i, user in enumerate(("alice", "bob")):
        push(loki, {**AUDIT_LABELS, "user": user}, events()[i : i + 1])
    v = C.check_labels(_loki_ctx(tree, loki))
    assert v.status == C.WARN
    assert "user (one stream per user and service account)" in v.detail


def test_labels_fail_when_streams_are_unbounded(tree, cluster, loki):  # noqa: F811
    for verb in ("get", "list", "watch", "create"):
        push(loki, {**AUDIT_LABELS, "verb": verb}, events()[:1])
    v = C.check_labels(_loki_ctx(tree, loki, max_streams=3))
    assert v.status == C.FAIL and "4 audit streams" in v.detail

"""`kaudit verify --mode webhook`: the webhook check against a real receiver (`python -m
kaudit.shipper --listen`) reached through the node's own kubeconfig, and the probe's
event arriving in Loki through the webhook path."""

from __future__ import annotations

import pytest

from doubles.loki import LokiDouble
from doubles.verify.cluster import NodeTree
from kaudit.core.manifest import AuditSpec
from kaudit.core.webhook_tls import webhook_kubeconfig
from kaudit.adapters.hosts.local import LocalHost
from kaudit.engine.verify import checks as C
from kaudit.engine.verify.checks import Node, Settings, VerifyContext
from kaudit.engine.verify.webhook import check_webhook
from shipper_helpers import make_events, pairs_in_lines, pairs_in_loki, wait_for
from webhook_helpers import Receiver, event_list, write_pki

SPEC = AuditSpec(mode="webhook")


def node_checks(tree, spec=SPEC):
    ctx = VerifyContext(Settings(spec=spec), [Node("local", lambda: LocalHost(tree.root))], LocalHost())
    node = ctx.nodes[0]
    out = {}
    for name, fn in (("reachable", C.check_reachable), ("manifest", C.check_manifest), ("policy", C.check_policy),
                     ("apiserver", C.check_apiserver), ("audit-log", C.check_audit_log), ("webhook", check_webhook)):
        out[name] = fn(ctx, node)
    return out


@pytest.fixture
def setup(tmp_path):
    pki_dir = tmp_path / "pki"
    pki_dir.mkdir()
    pki = write_pki(pki_dir)
    loki = LokiDouble("3.5.0", reject_old_samples_max_age_ns=0).start()
    r = Receiver(tmp_path, loki.url, pki)
    tree = NodeTree(tmp_path / "node", SPEC).healthy()
    url = f"https://127.0.0.1:{r.port}/audit"
    tree.write(SPEC.webhook_config_path, webhook_kubeconfig(url, pki["ca_cert"].read_bytes(),
                                                            pki["client_cert"].read_bytes(), pki["client_key"].read_bytes()))
    yield tree, r, loki, pki
    r.stop()
    loki.stop()


def test_webhook_mode_passes_with_a_reachable_receiver_and_events_reach_loki(setup):
    tree, r, loki, _ = setup
    res = node_checks(tree)
    assert res["webhook"].status == C.PASS, res["webhook"]
    assert "audit-log-path" not in res["apiserver"].detail  # webhook mode: no log directory is looked for
    assert res["audit-log"].status == C.SKIP
    assert res["manifest"].status == C.PASS, res["manifest"]
    events = make_events(5)
    assert r.post(event_list(events))[0] == 200
    wait_for(lambda: pairs_in_loki(loki) == pairs_in_lines(events), what="probe-like events in Loki")


def test_webhook_check_fails_when_the_receiver_is_down_or_trusts_another_ca(setup, tmp_path):
    tree, r, _, pki = setup
    other = tmp_path / "other"
    other.mkdir()
    wrong = write_pki(other)
    url = f"https://127.0.0.1:{r.port}/audit"
    tree.write(SPEC.webhook_config_path, webhook_kubeconfig(url, wrong["ca_cert"].read_bytes()))
    v = node_checks(tree)["webhook"]
    assert v.status == C.FAIL and "does not answer over TLS" in v.detail and "CERTIFICATE_VERIFY_FAILED" in v.detail
    tree.write(SPEC.webhook_config_path, webhook_kubeconfig(url, pki["ca_cert"].read_bytes()))
    r.stop()
    v = node_checks(tree)["webhook"]
    assert v.status == C.FAIL and "Connection refused" in v.detail, v


def test_webhook_check_fails_without_the_flag_and_skips_in_log_mode(tmp_path):
    tree = NodeTree(tmp_path / "node").healthy()  # a log-mode node
    v = node_checks(tree)["webhook"]
    assert v.status == C.FAIL and "--audit-webhook-config-file" in v.detail
    assert node_checks(tree, AuditSpec())["webhook"].status == C.SKIP

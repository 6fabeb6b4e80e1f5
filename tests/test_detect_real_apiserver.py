"""The detection rules on what a real kube-apiserver v1.36 writes, played live.

tests/detect_scenario.py drives a real apiserver (KAUDIT_KUBE_APISERVER or PATH, with etcd
and kubectl) under the gce policy `kaudit up` installs, through every attack of ATTACKS and
its benign twin of BENIGN. `kaudit detect --log` over the log the apiserver just wrote must
find each attack and none of the twins. The lines committed in
tests/data/detect/kube-apiserver-v1.36-kaudit-scenario.jsonl were recorded this way, so the
rule tests check them on a fresh clone too.
"""

from __future__ import annotations

import json

import pytest

from detect_scenario import ATTACKS, NS, record


@pytest.fixture(scope="module")
def scenario_log(tmp_path_factory):
    return record(tmp_path_factory.mktemp("scenario"))


@pytest.fixture(scope="module")
def found(scenario_log):
    from kaudit.cli import run

    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = run(["detect", "--log", str(scenario_log), "-o", "json"])
    assert code == 3
    doc = json.loads(out.getvalue())
    return {g["rule"]["id"]: [h for f in g["findings"] for h in f["events"]] for g in doc["groups"]}


@pytest.mark.parametrize("rule_id", sorted(ATTACKS))
def test_every_attack_is_found_in_the_real_log(found, rule_id):
    assert found.get(rule_id), f"{rule_id} did not fire on: {ATTACKS[rule_id]}"


def test_the_benign_twins_are_not_found(found):
    def names(rule_id, field="name"):
        return {h[field] for h in found.get(rule_id, [])}

    assert names("binding-to-broad-group") == {"view-everyone"}
    assert names("system-namespace-daemonset-or-cronjob", "namespace") == {"kube-system"}
    assert names("control-plane-mirror-pod-changed") == {"kube-apiserver-node-1"}
    assert {h["verb"] for h in found["admission-webhook-changed"]} == {"create", "delete"}
    assert names("token-request-by-human", "user") == {"admin"}
    assert names("binding-to-cluster-admin") == {"ops-admin"}
    assert names("role-grants-secrets-read") == {"ops-everything"}  # not config-reader: it deletes secrets
    assert names("role-grants-pod-exec") == {"debugger"}
    assert names("role-escalate-bind-impersonate") == {"ci-deployer"}


def test_the_apiserver_s_own_bootstrap_raises_nothing(found):
    """A fresh apiserver writes cluster-admin, the aggregated roles and their bindings
    (user system:apiserver), and rewrites them on restarts: no finding, only the scenario's."""
    assert {h["user"] for hits in found.values() for h in hits} == {"admin"}


def test_the_twins_are_in_the_log(scenario_log):
    """The benign requests were audited too: the rules above saw them and stayed quiet."""
    events = [json.loads(x) for x in scenario_log.read_text().splitlines()]

    def seen(**want):
        return any(all(_get(e, k) == v for k, v in want.items()) for e in events)

    assert seen(**{"objectRef.resource": "clusterrolebindings", "objectRef.name": "view-carol", "verb": "create"})
    assert seen(**{"objectRef.resource": "daemonsets", "objectRef.namespace": NS, "verb": "create"})
    assert seen(**{"objectRef.resource": "pods", "objectRef.name": "web", "verb": "patch"})
    assert seen(**{"objectRef.resource": "validatingwebhookconfigurations", "verb": "list"})
    assert seen(**{"objectRef.subresource": "token", "user.username": f"system:serviceaccount:{NS}:builder"})


def _get(event: dict, path: str):
    for part in path.split("."):
        event = event.get(part) if isinstance(event, dict) else None
    return event

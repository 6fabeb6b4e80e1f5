"""The detection rule pack on real audit events, and the rule schema's errors.

Every rule has positive and negative lines in tests/data/detect/cases.json: real events,
copied from the shared corpus or recorded from a real kube-apiserver v1.36 (see
ATTRIBUTION.md there).
"""

from __future__ import annotations

import json

import pytest

from conftest import DATA
from kaudit.core.detect.match import Detector, compile_rule
from kaudit.core.detect.model import REQUIRED, RuleError, load_rules, parse_path, rule_pack

CASES_DIR = DATA / "detect"
CASES = json.loads((CASES_DIR / "cases.json").read_text())
RULES = {r.id: r for r in rule_pack()}

#: the intents the issue asks for, each with the rules that cover it
INTENTS = {
    "exec/attach/portforward": {"pod-exec", "pod-attach", "pod-portforward"},
    "privileged or host namespaces": {"pod-privileged", "pod-host-pid", "pod-host-network", "pod-host-ipc"},
    "sensitive hostPath": {"pod-sensitive-hostpath"},
    "binding to cluster-admin": {"binding-to-cluster-admin"},
    "wildcard roles, escalate/bind/impersonate": {"role-wildcard-verbs", "role-wildcard-resources", "role-escalate-bind-impersonate"},
    "anonymous allowed": {"anonymous-request-allowed"},
    "repeated 401/403": {"repeated-denied-by-user", "repeated-denied-by-source-ip"},
    "secret reads by non-controllers": {"secret-read-by-non-controller"},
    "TokenRequest by a human": {"token-request-by-human"},
    "webhook configuration": {"admission-webhook-changed"},
    "changes in kube-system": {"kube-system-changed"},
    "deletion of events": {"events-deleted"},
    "CronJob/DaemonSet in system namespaces": {"system-namespace-daemonset-or-cronjob"},
    "node proxy": {"node-proxy-access"},
    "CSR approval": {"csr-approved"},
    "mirror pods": {"control-plane-mirror-pod-changed"},
}


def line(ref: str) -> dict:
    name, _, n = ref.rpartition(":")
    return json.loads((CASES_DIR / name).read_text().splitlines()[int(n) - 1])


def test_the_pack_has_30_rules_covering_every_intent():
    assert len(RULES) >= 30
    for intent, ids in INTENTS.items():
        assert ids <= set(RULES), f"{intent}: missing {ids - set(RULES)}"
    for r in RULES.values():
        assert r.title and r.description and r.runbook and r.false_positives
        assert r.mitre.startswith("T") and r.level in ("Metadata", "Request", "RequestResponse")
    # rules that read request bodies say so
    assert RULES["pod-privileged"].level == "Request"
    assert RULES["binding-to-cluster-admin"].level == "Request"


def test_every_single_event_rule_has_cases():
    single = {rid for rid, r in RULES.items() if r.aggregate is None}
    assert single == set(CASES)


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_on_real_events(rule_id):
    rule = RULES[rule_id]
    pred = compile_rule(rule)
    case = CASES[rule_id]
    for ref in case["positive"]:
        assert pred(line(ref)), f"{rule_id} should fire on {ref}"
    assert case["negative"], f"{rule_id} has no negative case"
    for ref in case["negative"]:
        assert not pred(line(ref)), f"{rule_id} must not fire on {ref}"


def test_every_rule_has_a_real_positive_and_a_real_negative():
    assert {rid for rid, c in CASES.items() if not c["positive"] or not c["negative"]} == set()


def _findings(rule_id: str, name: str):
    det = Detector([RULES[rule_id]])
    for n, text in enumerate((CASES_DIR / name).read_text().splitlines(), 1):
        det.feed(json.loads(text), name, n)
    return det.findings()


@pytest.mark.parametrize("rule_id,key", [("repeated-denied-by-user", ("kubernetes-admin",)), ("repeated-denied-by-source-ip", ("127.0.0.1",))])
def test_aggregate_rules_fire_on_a_real_burst_of_403s(rule_id, key):
    found = _findings(rule_id, "kube-apiserver-v1.36-gce.jsonl")
    assert [f.key for f in found] == [key]
    assert found[0].count == 30
    assert len(set(found[0].audit_ids)) == 30


@pytest.mark.parametrize("rule_id", ["repeated-denied-by-user", "repeated-denied-by-source-ip"])
def test_aggregate_rules_stay_quiet_on_spread_out_denials(rule_id):
    assert _findings(rule_id, "audit2rbac-demo-v1beta1.jsonl") == []


def test_one_finding_per_audit_id_across_stages():
    """exec is logged at ResponseStarted and ResponseComplete: one finding with both stages."""
    event = line(CASES["pod-exec"]["positive"][0])
    det = Detector([RULES["pod-exec"]])
    det.feed(event)
    det.feed({**event, "stage": "ResponseComplete"})
    (f,) = det.findings()
    assert f.hits[0].stages == [event["stage"], "ResponseComplete"]


# -- schema errors -----------------------------------------------------------------------
GOOD = """\
rules:
  - id: my-rule
    title: t
    severity: low
    mitre: T1609
    level: Metadata
    description: d
    runbook: r
    false_positives: f
    when:
      verb: get
"""


def test_a_valid_custom_rule_loads():
    (r,) = load_rules(GOOD, "mine.yaml")
    assert r.id == "my-rule" and r.source == "mine.yaml:2"


@pytest.mark.parametrize(
    "edit,expected",
    [
        (("severity: low", "severity: urgent"), "mine.yaml:4: rule my-rule: severity: 'urgent': use one of low, medium, high, critical"),
        (("mitre: T1609", "mitre: ATTACK-1"), "mine.yaml:5: rule my-rule: mitre:"),
        (("level: Metadata", "level: Full"), "mine.yaml:6: rule my-rule: level:"),
        (("      verb: get", "      verb: get\n      objectRef..resource: pods"), "mine.yaml:12: rule my-rule: when.objectRef..resource: path"),
        (("      verb: get", "      objectRef.name: {startswith: x}"), "mine.yaml:11: rule my-rule: when.objectRef.name: unknown operator 'startswith'"),
        (("      verb: get", "      objectRef.resource: pods\n      any:\n        - verb: get\n        - verb: list"), "verb: is a Loki stream label"),
        (("    runbook: r\n", ""), "mine.yaml:2: rule my-rule: runbook: missing"),
        (("    title: t", "    title: t\n    colour: red"), "mine.yaml:4: rule my-rule: colour: unknown field"),
        (("id: my-rule", "id: My Rule"), "mine.yaml:2: rules[0].id: 'My Rule' is not an id"),
        (("      verb: get", "      verb: get\n      objectRef.name:"), "mine.yaml:12: rule my-rule: when.objectRef.name: no value given (null)"),
    ],
)
def test_schema_errors_name_file_line_and_field(edit, expected):
    text = GOOD.replace(*edit)
    with pytest.raises(RuleError) as e:
        load_rules(text, "mine.yaml")
    assert expected in e.value.message


def test_duplicate_ids_and_unknown_disable_are_errors():
    with pytest.raises(RuleError, match=r"mine.yaml:12: rule my-rule: id: already defined at mine.yaml:2"):
        load_rules(GOOD + GOOD.split("rules:\n", 1)[1], "mine.yaml")
    with pytest.raises(RuleError, match="--disable: no rule with id nope"):
        rule_pack(disable=("nope",))


def test_custom_rule_replaces_a_packaged_one_and_disable_removes():
    mine = GOOD.replace("my-rule", "pod-exec")
    rules = {r.id: r for r in rule_pack((("mine.yaml", mine),), ("pod-attach",))}
    assert rules["pod-exec"].source == "mine.yaml:2"
    assert "pod-attach" not in rules


def test_paths_parse_arrays_indexes_and_quoted_keys():
    p = parse_path('annotations."authorization.k8s.io/decision"')
    assert p.keys == ("annotations", "authorization.k8s.io/decision")
    assert parse_path("sourceIPs[0]").segments == (("key", "sourceIPs"), ("index", 0))
    assert parse_path("a.b[].c").fans_out
    with pytest.raises(ValueError):
        parse_path("a.")


def test_required_fields_are_documented():
    text = (CASES_DIR.parent.parent.parent / "docs" / "detect.md").read_text()
    for f in REQUIRED:
        assert f"`{f}`" in text


def test_every_rule_is_in_the_docs_table():
    text = (CASES_DIR.parent.parent.parent / "docs" / "detect.md").read_text()
    for rid, r in RULES.items():
        assert f"| `{rid}` | {r.severity} | {r.mitre} | {r.level} |" in text, rid


def test_an_event_with_odd_types_is_matched_without_errors():
    """verb as a list (unhashable), objectRef as a string: every rule still just answers."""
    from kaudit.core.detect.match import detect

    lines = [("x", 1, json.dumps({"kind": "Event", "verb": ["get"], "objectRef": "pods", "user": {"username": "system:anonymous"},
                                  "stage": "ResponseComplete", "responseStatus": {"code": 200}, "auditID": "a"}))]
    findings, events = detect(list(RULES.values()), lines)
    assert events == 1 and [f.rule.id for f in findings] == ["anonymous-request-allowed"]


def test_lines_copied_from_the_corpus_are_byte_for_byte_where_it_is_present():
    """cases.json's `from` gives each line's place in ../shared/corpus; the copies must match."""
    corpus = CASES_DIR.parent.parent.parent.parent / "shared" / "corpus"
    if not corpus.is_dir():
        pytest.skip(f"{corpus} is absent (a fresh clone has no shared corpus)")
    checked = 0
    for case in CASES.values():
        for kind in ("positive", "negative"):
            for ref, origin in zip(case[kind], case["from"][kind]):
                name, _, n = origin.rpartition(":")
                if name == "recording":
                    continue  # recorded by this project: tests/detect_scenario.py
                here = ref.rpartition(":")
                copy = (CASES_DIR / here[0]).read_bytes().splitlines()[int(here[2]) - 1]
                assert copy == (corpus / name).read_bytes().splitlines()[int(n) - 1], f"{ref} is not {origin}"
                checked += 1
    assert checked > 50

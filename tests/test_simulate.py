"""Event sizes as the apiserver writes them, and the simulation of the gce and gce-modern
profiles on real audit events (tests/data/simulate, see ATTRIBUTION.md there)."""

from __future__ import annotations

import json

import pytest

from conftest import DATA
from kaudit.adapters.audit_files import read_lines
from kaudit.core.event_bytes import EventSizes, encode_event, go_json, request_received, without_managed_fields
from kaudit.core.policy import policy_text
from kaudit.core.policy_eval import evaluate, load_policy, request_from_event
from kaudit.core.simulate import Simulation

SIM = DATA / "simulate"
V136 = SIM / "v1.36-gce.jsonl"
LEVELS = ("Metadata", "Request", "RequestResponse")


def lines(path):
    return [line for line in path.read_bytes().splitlines(keepends=True) if line.strip()]


def profile(name):
    return load_policy(policy_text(name), f"<profile {name}>", name)


def policy(text, name):
    return load_policy(text, name, name)


def simulate(policies, *paths):
    sim = Simulation([(p, p.name) for p in policies])
    sim.add_lines(read_lines([str(p) for p in paths]))
    return sim, sim.report([str(p) for p in paths])


# ------------------------------------------------------------ bytes


def test_go_escaping():
    assert go_json({"a": "<b>&\u2028\u2029é\n"}) == '{"a":"\\u003cb\\u003e\\u0026\\u2028\\u2029é\\n"}'


@pytest.mark.parametrize("name", ["v1.36-gce.jsonl", "rbac-tool-levels.jsonl"])
def test_re_encoding_at_the_recorded_level_gives_the_apiservers_bytes(name):
    for line in lines(SIM / name):
        event = json.loads(line)
        assert encode_event(event, event["level"]) == line


def test_sizes_at_every_lower_level_match_a_full_re_encoding():
    checked = 0
    for path in (V136, SIM / "rbac-tool-levels.jsonl", SIM / "audit2rbac-v1beta1.jsonl"):
        for line in lines(path):
            event = json.loads(line)
            sizes = EventSizes(event, line)
            for level in LEVELS[: LEVELS.index(event["level"]) + 1]:
                for omit in (False, True):
                    assert sizes.size(level, omit) == len(encode_event(event, level, omit)), (path.name, level, omit)
                    checked += 1
            rr = {**request_received(event), "level": "Request"}
            assert sizes.request_received_size("Request") == len(go_json(rr)) + 1
    assert checked > 600


def test_lower_levels_drop_the_bodies_and_keep_the_rest():
    line = [l for l in lines(SIM / "rbac-tool-levels.jsonl") if b'"level":"RequestResponse"' in l][0]
    event = json.loads(line)
    meta = json.loads(encode_event(event, "Metadata"))
    assert "requestObject" not in meta and "responseObject" not in meta
    assert meta["objectRef"] == event["objectRef"] and meta["responseStatus"] == event["responseStatus"]
    req = json.loads(encode_event(event, "Request"))
    assert req["requestObject"] == event["requestObject"] and "responseObject" not in req


def test_managed_fields_are_dropped_from_objects_lists_and_tables_but_not_from_a_patch():
    mf = [{"manager": "kubectl", "operation": "Update"}]
    obj = {"kind": "Pod", "metadata": {"name": "a", "managedFields": mf}}
    assert without_managed_fields(obj) == {"kind": "Pod", "metadata": {"name": "a"}}
    assert obj["metadata"]["managedFields"] == mf  # the input is not changed
    lst = {"kind": "PodList", "metadata": {}, "items": [obj, {"metadata": {"managedFields": mf}}]}
    assert without_managed_fields(lst)["items"] == [{"kind": "Pod", "metadata": {"name": "a"}}, {"metadata": {}}]
    table = {"kind": "Table", "rows": [{"cells": ["a"], "object": obj}]}
    assert without_managed_fields(table)["rows"][0]["object"]["metadata"] == {"name": "a"}
    patch = {"kind": "Event", "level": "RequestResponse", "verb": "patch", "requestObject": obj, "responseObject": obj}
    out = json.loads(encode_event(patch, "RequestResponse", omit_managed_fields=True))
    assert out["requestObject"] == obj  # the raw patch is logged as sent
    assert "managedFields" not in out["responseObject"]["metadata"]
    sizes = EventSizes(patch, go_json(patch).encode() + b"\n")
    assert sizes.size("RequestResponse", True) == len(encode_event(patch, "RequestResponse", True))


# ------------------------------------------------------------ the profiles on real events


def test_gce_on_a_log_recorded_under_gce_predicts_every_event_exactly():
    """The v1.36 events were written by a real kube-apiserver under the gce profile: the
    simulation must keep each one, at its recorded level and stage, with its exact bytes."""
    gce = profile("gce")
    for line in lines(V136):
        event = json.loads(line)
        d = evaluate(gce, request_from_event(event))
        assert d.level == event["level"], (event["auditID"], d.rule)
        assert d.writes(event["stage"]) and "RequestReceived" in d.omit_stages
    sim, doc = simulate([gce], V136)
    p = doc["policies"][0]
    assert p["written"] == {"events": len(lines(V136)), "bytes": V136.stat().st_size}
    assert p["unjudged"]["events"] == 0 and p["inferred_request_received"]["events"] == 0
    assert {k: v["events"] for k, v in p["levels"].items()} == doc["input"]["levels"]


def test_gce_modern_against_gce_on_real_events():
    gce, modern = profile("gce"), profile("gce-modern")
    sim, doc = simulate([gce, modern], V136)
    a, b = doc["policies"]
    events = [json.loads(l) for l in lines(V136)]
    # probes of /livez, /readyz... are dropped by gce-modern's rule 8; gce kept them (rule 16)
    probes = [e for e in events if "objectRef" not in e and e["requestURI"].startswith(("/livez", "/readyz"))]
    assert probes
    for e in probes:
        assert evaluate(modern, request_from_event(e)).rule == 8
    by_rule = {(r["from_rule"], r["to_rule"]): r["events"] for r in doc["diffs"][0]["dropped_by_rule"]}
    assert by_rule[(16, 8)] == len(probes)
    # gce-modern omits managedFields: an event that recorded them is written smaller, exactly
    with_mf = [(l, e) for l, e in zip(lines(V136), events) if b'"managedFields"' in l
               and evaluate(modern, request_from_event(e)).level == e["level"]]
    assert with_mf
    for line, e in with_mf:
        assert EventSizes(e, line).size(e["level"], True) == len(encode_event(e, e["level"], True)) < len(line)
    both = doc["diffs"][0]["kept_by_both"]
    assert both["events"] >= len(with_mf) and both["bytes_to"] < both["bytes_from"]
    # leases are a known group in gce-modern: recorded at Metadata, wanted at Request or more
    assert b["unjudged"]["events"] > 0 and set(b["unjudged"]["levels"]) <= {"Metadata->Request", "Metadata->RequestResponse"}
    assert b["written"]["bytes"] < a["written"]["bytes"]
    assert sum(r["matched"] for r in b["rules"]) == len(events)


def test_request_received_is_inferred_only_when_the_log_omitted_it():
    keep_all = policy("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n", "all-metadata")
    # audit2rbac's log recorded RequestReceived for most requests: those are not inferred again
    sim, doc = simulate([keep_all], SIM / "audit2rbac-v1beta1.jsonl")
    events = [json.loads(l) for l in lines(SIM / "audit2rbac-v1beta1.jsonl")]
    recorded_rr = {e["auditID"] for e in events if e["stage"] == "RequestReceived"}
    finals = [e for e in events if e["stage"] == "ResponseComplete"]
    p = doc["policies"][0]
    assert p["inferred_request_received"]["events"] == len([e for e in finals if e["auditID"] not in recorded_rr]) > 0
    assert p["stages"]["RequestReceived"]["events"] == len(recorded_rr) + p["inferred_request_received"]["events"]
    # the gce-recorded log has none: one is inferred per finished request
    sim, doc = simulate([keep_all], V136)
    finished = [json.loads(l) for l in lines(V136) if b'"stage":"ResponseComplete"' in l]
    inferred = doc["policies"][0]["inferred_request_received"]
    assert inferred["events"] == len(finished)
    assert inferred["bytes"] == sum(len(go_json({**request_received(e), "level": "Metadata"})) + 1 for e in finished)


def test_events_recorded_below_the_level_asked_are_counted_apart():
    everything = policy("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n"
                        "- level: RequestResponse\n", "all-rr")
    sim, doc = simulate([everything], SIM / "rbac-tool-levels.jsonl")
    p = doc["policies"][0]
    assert p["written"]["events"] == 1  # only the RequestResponse event can be judged
    assert p["unjudged"]["events"] == 2
    assert set(p["unjudged"]["levels"]) == {"Metadata->RequestResponse", "Request->RequestResponse"}
    assert p["rules"][0] == {**p["rules"][0], "matched": 3, "written": 1, "unjudged": 2}


def test_resource_names_match_the_url_name_and_not_a_created_objects_name():
    named = policy("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n"
                   "- level: None\n  resources: [{group: '', resources: [configmaps], resourceNames: [cm-2]}]\n"
                   "- level: None\n  resources: [{group: rbac.authorization.k8s.io, resourceNames: [system:discovery],"
                   " resources: [clusterrolebindings]}]\n"
                   "- level: Metadata\n", "named")
    sim, doc = simulate([named], SIM / "rbac-tool-levels.jsonl", V136)
    p = doc["policies"][0]
    # rbac-tool's configmap create shows name cm-2 in objectRef, filled from the object:
    # the apiserver evaluated the policy with no name, so rule 0 does not drop it
    assert p["rules"][0]["matched"] == 0
    discovery = [l for l in lines(V136) if b'"name":"system:discovery"' in l and b'"resource":"clusterrolebindings"' in l]
    assert p["rules"][1]["matched"] == len([l for l in discovery if b'"verb":"create"' not in l]) > 0


def test_the_observed_rate_gives_bytes_per_day():
    sim, doc = simulate([profile("gce")], V136)
    p, seconds = doc["policies"][0], doc["input"]["seconds"]
    events = [json.loads(l) for l in lines(V136)]
    stamps = sorted(e["stageTimestamp"] for e in events)
    assert doc["input"]["first"] == stamps[0] and doc["input"]["last"] == stamps[-1]
    assert 0 < seconds and p["bytes_per_day"] == round(p["written"]["bytes"] * 86400 / seconds)


def test_bounded_memo_and_counters_give_the_same_report(monkeypatch):
    """Memory stays flat by flushing the memo of request shapes when it is full, and by
    folding users/resources into "(other)" past a limit: neither may change the totals."""
    import kaudit.core.simulate as sim_mod

    policies = [profile("gce"), profile("gce-modern")]
    _, unlimited = simulate(policies, V136, SIM / "audit2rbac-v1beta1.jsonl")
    monkeypatch.setattr(sim_mod, "MEMO_LIMIT", 3)
    _, flushed = simulate(policies, V136, SIM / "audit2rbac-v1beta1.jsonl")
    assert flushed == unlimited
    monkeypatch.setattr(sim_mod, "KEY_LIMIT", 5)
    _, folded = simulate(policies, V136, SIM / "audit2rbac-v1beta1.jsonl")
    for a, b in zip(unlimited["policies"], folded["policies"]):
        assert (a["written"], a["stages"], a["levels"], a["rules"]) == (b["written"], b["stages"], b["levels"], b["rules"])
        assert "(other)" in {t["user"] for t in b["top_users"]} | {t["resource"] for t in b["top_resources"]}
    assert folded["diffs"] == unlimited["diffs"]

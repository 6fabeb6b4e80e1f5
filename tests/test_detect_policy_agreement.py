"""`kaudit detect --list` and `kaudit policy simulate` name the same detection rules a policy
can never fire (issue 12 point 4), with the same reasons, and the set is the one reasoned out
by hand from the policies' rules."""

from __future__ import annotations

import json
import re

import pytest

from conftest import DATA

LOG = DATA / "detect" / "kube-apiserver-v1.36-gce.jsonl"

# Secrets are dropped, pods are logged at RequestResponse but only at RequestReceived, the rest
# at Metadata: rules about secrets cannot fire, nor any rule about pods (it reads the response
# stages), nor any rule that needs a request body; pods/exec is another resource and can fire.
DROPS = """apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: None
    resources:
      - group: ""
        resources: ["secrets"]
  - level: RequestResponse
    resources:
      - group: ""
        resources: ["pods"]
    omitStages: ["ResponseStarted", "ResponseComplete"]
  - level: Metadata
"""
METADATA = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Metadata\n"


def _packaged():
    from kaudit.adapters.rule_cache import packaged_rules

    return {r.id: r for r in packaged_rules()}


def _expected(name: str) -> set[str]:
    rules = _packaged()
    body = {i for i, r in rules.items() if r.level != "Metadata"}
    pods = {i for i in rules if i.startswith("pod-") and i not in ("pod-exec", "pod-attach", "pod-portforward", "pod-ephemeral-container")}
    return {
        # gce-modern's rule 10 (index 9) logs Events of both APIs at None
        "gce-modern": {"events-deleted"},
        # gce's rule 10 drops core v1 Events only: a delete through events.k8s.io/v1 reaches
        # its catch-all Metadata rule, so events-deleted can fire; everything else is logged
        "gce": set(),
        "metadata": body,
        "drops": body | pods | {"secret-read-by-non-controller", "bootstrap-token-created", "control-plane-mirror-pod-changed"},
    }[name]


@pytest.fixture
def policies(tmp_path):
    out = {}
    for name, text in (("metadata", METADATA), ("drops", DROPS)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        out[name] = ["--policy", str(path)]
    out["gce"] = ["--profile", "gce"]
    out["gce-modern"] = ["--profile", "gce-modern"]
    return out


@pytest.mark.parametrize("name", ["gce", "gce-modern", "metadata", "drops"])
def test_detect_list_and_simulate_agree(cli, policies, name, tmp_path):
    listed = cli(["detect", "--list", *policies[name], "-o", "json"])
    assert listed.code == 0, listed.err
    from_detect = {r["id"]: r["never_fires"] for r in json.loads(listed.out)["rules"] if r["never_fires"]}

    page = tmp_path / "sim.html"
    sim = cli(["policy", "simulate", "--log", LOG, *policies[name], "-o", "json", "--html", page])
    assert sim.code == 0, sim.err
    (entry,) = json.loads(sim.out)["policies"]
    from_simulate = {r["id"]: r["reason"] for r in entry["detections_never_fire"]}

    assert from_simulate == from_detect
    assert set(from_detect) == _expected(name)
    html = page.read_text()
    section = html.split("<h2>Detection rules each policy can never fire</h2>")[1].split("</table>")[0]
    assert set(re.findall(r"<td class=l>([a-z0-9-]+)</td><td class=l>(?:Metadata|Request)", section)) == set(from_detect)
    table = cli(["policy", "simulate", "--log", LOG, *policies[name]])
    assert table.code == 0
    block = table.out.split("Detections that can never fire")[1].split("Top resources")[0]
    for rid in from_detect:
        assert rid in block
    if not from_detect:
        assert "every rule can fire" in block


def test_hand_reasoned_reasons(cli, policies):
    doc = json.loads(cli(["policy", "simulate", "--log", LOG, *policies["drops"], *policies["gce-modern"], "-o", "json"]).out)
    modern, drops = ({r["id"]: r["reason"] for r in p["detections_never_fire"]} for p in doc["policies"])
    assert modern == {"events-deleted": "policy rule 10 logs delete events at level None, the rule needs Metadata"}
    assert drops["secret-read-by-non-controller"] == "policy rule 1 logs get secrets at level None, the rule needs Metadata"
    assert drops["pod-in-kube-public"] == ("policy rule 2 omits stages ResponseComplete, ResponseStarted, "
                                           "the rule reads ResponseStarted, ResponseComplete")
    assert drops["binding-to-cluster-admin"].endswith("at level Metadata, the rule needs Request")
    assert "pod-exec" not in drops  # pods/exec is not "pods": the catch-all logs it


def test_a_policy_the_apiserver_refuses_is_refused_alike(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Everything\n")
    first = lambda err: next(ln for ln in err.splitlines() if ln.startswith("error: "))  # noqa: E731
    runs = [cli(["policy", "validate", bad]), cli(["detect", "--list", "--policy", bad]),
            cli(["policy", "simulate", "--log", LOG, "--policy", bad])]
    assert [r.code for r in runs] == [1, 1, 1]
    assert len({first(r.err) for r in runs}) == 1 and "unknown level 'Everything'" in first(runs[1].err)

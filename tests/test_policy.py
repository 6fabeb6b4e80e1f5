"""The packaged audit policies and the validator.

REFERENCE below is Google's GCE/COS master audit policy (kubernetes/kubernetes
cluster/gce/gci/configure-helper.sh, create-master-audit-policy), transcribed
rule for rule from FACTS.md §1 independently of policies/gce.yaml, so the test
compares two separate transcriptions field by field.
"""

from __future__ import annotations

import io
import re

import pytest
from ruamel.yaml import YAML

from kaudit.core.policy import PROFILES, PolicyError, check_policy, policy_text, validate_policy
from kaudit.core.errors import KauditError

KNOWN_APIS = [
    {"group": g}
    for g in [
        "", "admissionregistration.k8s.io", "apiextensions.k8s.io", "apiregistration.k8s.io", "apps",
        "authentication.k8s.io", "authorization.k8s.io", "autoscaling", "batch", "certificates.k8s.io",
        "extensions", "metrics.k8s.io", "networking.k8s.io", "node.k8s.io", "policy",
        "rbac.authorization.k8s.io", "scheduling.k8s.io", "storage.k8s.io",
    ]
]
RR = ["RequestReceived"]
CORE = ""
REFERENCE = [
    {"level": "None", "users": ["system:kube-proxy"], "verbs": ["watch"],
     "resources": [{"group": CORE, "resources": ["endpoints", "services", "services/status"]}]},
    {"level": "None", "users": ["system:unsecured"], "namespaces": ["kube-system"], "verbs": ["get"],
     "resources": [{"group": CORE, "resources": ["configmaps"]}]},
    {"level": "None", "users": ["kubelet"], "verbs": ["get"],
     "resources": [{"group": CORE, "resources": ["nodes", "nodes/status"]}]},
    {"level": "None", "userGroups": ["system:nodes"], "verbs": ["get"],
     "resources": [{"group": CORE, "resources": ["nodes", "nodes/status"]}]},
    {"level": "None",
     "users": ["system:kube-controller-manager", "system:cloud-controller-manager", "system:kube-scheduler",
               "system:serviceaccount:kube-system:endpoint-controller"],
     "verbs": ["get", "update"], "namespaces": ["kube-system"],
     "resources": [{"group": CORE, "resources": ["endpoints"]}]},
    {"level": "None", "users": ["system:apiserver"], "verbs": ["get"],
     "resources": [{"group": CORE, "resources": ["namespaces", "namespaces/status", "namespaces/finalize"]}]},
    {"level": "None", "users": ["cluster-autoscaler"], "verbs": ["get", "update"], "namespaces": ["kube-system"],
     "resources": [{"group": CORE, "resources": ["configmaps", "endpoints"]}]},
    {"level": "None", "users": ["system:kube-controller-manager", "system:cloud-controller-manager"],
     "verbs": ["get", "list"], "resources": [{"group": "metrics.k8s.io"}]},
    {"level": "None", "nonResourceURLs": ["/healthz*", "/version", "/swagger*"]},
    {"level": "None", "resources": [{"group": CORE, "resources": ["events"]}]},
    {"level": "Request",
     "users": ["kubelet", "system:node-problem-detector", "system:serviceaccount:kube-system:node-problem-detector"],
     "verbs": ["update", "patch"], "resources": [{"group": CORE, "resources": ["nodes/status", "pods/status"]}],
     "omitStages": RR},
    {"level": "Request", "userGroups": ["system:nodes"], "verbs": ["update", "patch"],
     "resources": [{"group": CORE, "resources": ["nodes/status", "pods/status"]}], "omitStages": RR},
    {"level": "Request", "users": ["system:serviceaccount:kube-system:namespace-controller"],
     "verbs": ["deletecollection"], "omitStages": RR},
    {"level": "Metadata",
     "resources": [{"group": CORE, "resources": ["secrets", "configmaps", "serviceaccounts/token"]},
                   {"group": "authentication.k8s.io", "resources": ["tokenreviews"]}],
     "omitStages": RR},
    {"level": "Request", "verbs": ["get", "list", "watch"], "resources": KNOWN_APIS, "omitStages": RR},
    {"level": "RequestResponse", "resources": KNOWN_APIS, "omitStages": RR},
    {"level": "Metadata", "omitStages": RR},
]
# Field order inside each rule, as the script writes it (rule 2 puts namespaces before verbs,
# rules 5 and 7 verbs before namespaces).
ORDER = {1: ["level", "users", "namespaces", "verbs", "resources"], 4: ["level", "users", "verbs", "namespaces", "resources"],
         6: ["level", "users", "verbs", "namespaces", "resources"]}
SCRIPT_COMMENTS = [
    "The following requests were manually identified as high-volume and low-risk",
    "Ingress controller reads 'configmaps/ingress-uid' through the unsecured port.",
    "legacy kubelet identity",
    "Don't log HPA fetching metrics.",
    "Don't log these read-only URLs.",
    "Don't log events requests because of performance impact.",
    "node and pod status calls from nodes are high-volume and can be large",
    "deletecollection calls can be large, don't log responses for expected namespace deletions",
    "Secrets, ConfigMaps, TokenRequest and TokenReviews can contain sensitive & binary data,",
    "Get responses can be large; skip them.",
    "Default level for known APIs",
    "Default level for all other requests.",
]


def load(text: str):
    return YAML(typ="safe", pure=True).load(io.StringIO(text))


def plain(rule: dict) -> dict:
    return {k: v for k, v in rule.items()}


# -- gce: rule for rule ---------------------------------------------------------------------


def test_gce_header():
    policy = load(policy_text("gce"))
    assert policy["apiVersion"] == "audit.k8s.io/v1"
    assert policy["kind"] == "Policy"
    assert set(policy) == {"apiVersion", "kind", "rules"}
    assert len(policy["rules"]) == 17


@pytest.mark.parametrize("index", range(17), ids=[f"R{i + 1}" for i in range(17)])
def test_gce_rule_equals_reference_field_by_field(index):
    rule = load(policy_text("gce"))["rules"][index]
    ref = REFERENCE[index]
    assert list(rule) == ORDER.get(index, list(ref)), "field order differs from the script"
    for key in ref:
        assert rule[key] == ref[key], f"R{index + 1}.{key}"
    assert set(rule) == set(ref)


def test_gce_known_apis_are_spliced_in_order_with_the_core_comment():
    text = policy_text("gce")
    assert text.count('- group: "" # core\n') >= 2
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == '- group: "" # core' and
              lines[i + 1].strip() == '- group: "admissionregistration.k8s.io"']
    assert len(starts) == 2
    for start in starts:
        groups = [re.search(r'group: "([^"]*)"', lines[start + k]).group(1) for k in range(18)]
        assert groups == [g["group"] for g in KNOWN_APIS]


@pytest.mark.parametrize("comment", SCRIPT_COMMENTS)
def test_gce_keeps_the_scripts_comments(comment):
    assert comment in policy_text("gce")


# -- gce-modern ---------------------------------------------------------------------------------


def level_for(policy: dict, *, user: str, groups=(), verb: str, group: str = "", resource: str = "",
              namespace: str = "", url: str = "") -> str:
    """A small evaluator of audit rules (first match wins), to state what each profile logs."""
    for rule in policy["rules"]:
        if rule.get("users") and user not in rule["users"]:
            continue
        if rule.get("userGroups") and not set(groups) & set(rule["userGroups"]):
            continue
        if rule.get("verbs") and verb not in rule["verbs"]:
            continue
        if rule.get("namespaces") and namespace not in rule["namespaces"]:
            continue
        if rule.get("nonResourceURLs"):
            if not url or not any(url == u or (u.endswith("*") and url.startswith(u[:-1])) for u in rule["nonResourceURLs"]):
                continue
        if rule.get("resources"):
            if url or not any(gr.get("group", "") == group and (not gr.get("resources") or resource in gr["resources"])
                              for gr in rule["resources"]):
                continue
        return rule["level"]
    return "None"


NODE = {"user": "system:node:cp-1", "groups": ["system:nodes", "system:authenticated"]}
CASES = [
    # (request, level with gce, level with gce-modern)
    (dict(NODE, verb="update", group="coordination.k8s.io", resource="leases", namespace="kube-node-lease"), "Metadata", "None"),
    (dict(user="system:kube-scheduler", verb="update", group="coordination.k8s.io", resource="leases", namespace="kube-system"), "Metadata", "None"),
    (dict(user="system:anonymous", verb="get", url="/readyz"), "Metadata", "None"),
    (dict(user="system:kube-proxy", verb="watch", group="discovery.k8s.io", resource="endpointslices"), "Metadata", "None"),
    (dict(user="alice", verb="create", group="events.k8s.io", resource="events", namespace="default"), "Metadata", "None"),
    (dict(user="alice", verb="list", group="discovery.k8s.io", resource="endpointslices"), "Metadata", "Request"),
    (dict(user="alice", verb="create", group="resource.k8s.io", resource="resourceclaims"), "Metadata", "RequestResponse"),
    (dict(user="alice", verb="update", group="flowcontrol.apiserver.k8s.io", resource="flowschemas"), "Metadata", "RequestResponse"),
    # unchanged: sensitive resources stay at Metadata, known APIs as before
    (dict(user="alice", verb="get", resource="secrets", namespace="default"), "Metadata", "Metadata"),
    (dict(user="alice", verb="create", resource="configmaps", namespace="default"), "Metadata", "Metadata"),
    (dict(user="alice", verb="create", resource="serviceaccounts/token", namespace="default"), "Metadata", "Metadata"),
    (dict(user="alice", verb="create", group="authentication.k8s.io", resource="tokenreviews"), "Metadata", "Metadata"),
    (dict(user="alice", verb="list", resource="pods", namespace="default"), "Request", "Request"),
    (dict(user="alice", verb="create", resource="serviceaccounts", namespace="default"), "RequestResponse", "RequestResponse"),
    (dict(user="alice", verb="get", url="/healthz"), "None", "None"),
    (dict(user="alice", verb="get", url="/openapi/v2"), "Metadata", "Metadata"),
]


@pytest.mark.parametrize("request_,gce,modern", CASES, ids=[f"{c[0].get('resource') or c[0].get('url')}-{c[0]['verb']}" for c in CASES])
def test_what_each_profile_logs(request_, gce, modern):
    assert level_for(load(policy_text("gce")), **request_) == gce
    assert level_for(load(policy_text("gce-modern")), **request_) == modern


def test_modern_adds_the_groups_gce_predates():
    rules = load(policy_text("gce-modern"))["rules"]
    known = {gr["group"] for gr in rules[-2]["resources"]}
    assert known >= {g["group"] for g in KNOWN_APIS}
    assert known >= {"coordination.k8s.io", "discovery.k8s.io", "events.k8s.io", "flowcontrol.apiserver.k8s.io", "resource.k8s.io"}
    assert rules[-2]["resources"] == rules[-3]["resources"]
    assert rules[-1] == {"level": "Metadata", "omitStages": RR}


def test_modern_explains_each_change_in_a_comment():
    text = policy_text("gce-modern")
    marks = re.findall(r"#\s*(CHANGED|NEW|DROPPED):", text)
    assert len(marks) >= 8
    gce_rules, modern_rules = load(policy_text("gce"))["rules"], load(text)["rules"]
    # every gce rule not found verbatim in gce-modern must be accounted for by a comment
    missing = [r for r in gce_rules if r not in modern_rules]
    assert len(missing) <= marks.count("CHANGED") + marks.count("DROPPED")
    assert load(text)["omitManagedFields"] is True


@pytest.mark.parametrize("profile", PROFILES)
def test_packaged_profiles_validate_cleanly(profile):
    assert validate_policy(policy_text(profile), profile) == []


def test_unknown_profile():
    with pytest.raises(KauditError) as e:
        policy_text("gke")
    assert "gke" in e.value.message and "gce-modern" in e.value.hint


# -- validation ---------------------------------------------------------------------------------

GOOD = """apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: Metadata
"""


#: policies kube-apiserver or kaudit refuses, with the problem kaudit names (regex);
#: test_policy_real_apiserver.py runs each through a real apiserver too
INVALID_POLICIES = [
    ("apiVersion: audit.k8s.io/v1beta1\nkind: Policy\nrules:\n  - level: Metadata\n",
     r"^p\.yaml:1:1: apiVersion: must be audit\.k8s\.io/v1, not 'audit\.k8s\.io/v1beta1'"),
    ("apiVersion: audit.k8s.io/v1\nkind: Policies\nrules:\n  - level: Metadata\n", r"^p\.yaml:2:1: kind: must be Policy"),
    ("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []\n", r"^p\.yaml:3:1: rules: at least one rule is required"),
    ("apiVersion: audit.k8s.io/v1\nkind: Policy\n", r"^p\.yaml: rules: at least one rule is required"),
    (GOOD + "  - level: Everything\n", r"^p\.yaml:5:5: rules\[1\]\.level: unknown level 'Everything'"),
    (GOOD + "  - users: [bob]\n", r"^p\.yaml:5:5: rules\[1\]\.level: required"),
    (GOOD + "  - level: None\n    omitStages: [RequestRecieved]\n", r"^p\.yaml:6:18: rules\[1\]\.omitStages\[0\]: unknown stage 'RequestRecieved'"),
    ("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [Done]\nrules:\n  - level: None\n", r"^p\.yaml:3:14: policy\.omitStages\[0\]: unknown stage 'Done'"),
    (GOOD + "  - level: None\n    resource:\n      - group: ''\n", r"^p\.yaml:6:5: rules\[1\]\.resource: unknown field; did you mean resources\?"),
    (GOOD + "  - level: None\n    omitStage: [RequestReceived]\n", r"rules\[1\]\.omitStage: unknown field; did you mean omitStages\?"),
    ("apiVersion: audit.k8s.io/v1\nkind: Policy\nrulez: []\nrules:\n  - level: None\n", r"^p\.yaml:3:1: policy\.rulez: unknown field"),
    (GOOD + "  - level: None\n    resources:\n      - group: ''\n        resource: [pods]\n",
     r"^p\.yaml:8:9: rules\[1\]\.resources\[0\]\.resource: unknown field; did you mean resources\?"),
    (GOOD + "  - level: None\n    resources:\n      - group: apps\n        resourceName: [x]\n", r"rules\[1\]\.resources\[0\]\.resourceName: unknown field"),
    (GOOD + "  - level: None\n    nonResourceURLs: [/healthz]\n    resources:\n      - group: ''\n",
     r"^p\.yaml:6:5: rules\[1\]: nonResourceURLs and resources cannot be in the same rule"),
    (GOOD + "  - level: None\n    nonResourceURLs: [/healthz]\n    namespaces: [default]\n",
     r"rules\[1\]: nonResourceURLs and namespaces cannot be in the same rule"),
    (GOOD + "  - level: None\n    nonResourceURLs: ['/api/*/pods']\n",
     r"^p\.yaml:6:23: rules\[1\]\.nonResourceURLs\[0\]: '/api/\*/pods': '\*' is allowed only as the last character"),
    (GOOD + "  - level: None\n    nonResourceURLs: ['*healthz']\n", r"'\*' is allowed only as the last character"),
    (GOOD + "  - level: None\n    nonResourceURLs: [healthz]\n", r"rules\[1\]\.nonResourceURLs\[0\]: 'healthz' must begin with '/'"),
    (GOOD + "  - level: None\n    resources:\n      - group: Apps\n", r"rules\[1\]\.resources\[0\]\.group: 'Apps' is not a valid API group name"),
    (GOOD + "  - level: None\n    resources:\n      - group: apps\n        resourceNames: [x]\n",
     r"rules\[1\]\.resources\[0\]\.resourceNames: resourceNames needs at least one resource"),
    (GOOD + "  - level: None\n    users: bob\n", r"^p\.yaml:6:5: rules\[1\]\.users: must be a list of strings"),
    (GOOD + "  - level: None\n    omitManagedFields: yes please\n", r"rules\[1\]\.omitManagedFields: must be true or false"),
    (GOOD + "  - level: None\n  - level: None\n    level: Metadata\n", r"^p\.yaml:\d+:\d+: not valid YAML: .*duplicate key"),
    ("rules: [\n", r"^p\.yaml:2:1: not valid YAML"),
    ("a: 1\n---\nb: 2\n", r"^p\.yaml: holds 2 YAML documents"),
    ("- level: None\n", r"^p\.yaml: not a Policy"),
]
INVALID_IDS = [
    "apiVersion", "kind", "no-rules", "rules-missing", "level", "level-missing", "stage", "policy-stage",
    "typo-resource", "typo-omitStage", "policy-field", "groupresources-field", "resourceName", "urls+resources",
    "urls+namespaces", "wildcard-middle", "wildcard-prefix", "url-slash", "group-name", "resourceNames-alone",
    "users-type", "bool", "duplicate-key", "yaml", "two-docs", "not-mapping",
]


@pytest.mark.parametrize("text,message", INVALID_POLICIES, ids=INVALID_IDS)
def test_validation_rejects_with_rule_index_and_field(text, message):
    with pytest.raises(PolicyError) as e:
        validate_policy(text, "p.yaml")
    assert any(re.search(message, p) for p in e.value.problems), e.value.problems
    assert e.value.message == e.value.problems[0] + (f" (and {len(e.value.problems) - 1} more)" if len(e.value.problems) > 1 else "")


def test_validation_lists_every_problem():
    text = GOOD + "  - level: Bogus\n    verbz: [get]\n    nonResourceURLs: [bad]\n"
    problems, _ = check_policy(text, "p.yaml")
    assert len(problems) == 3


def test_valid_policy_with_every_field():
    text = """apiVersion: audit.k8s.io/v1
kind: Policy
metadata:
  name: full
omitStages: [RequestReceived]
omitManagedFields: true
rules:
  - level: RequestResponse
    users: [alice]
    userGroups: [admins]
    verbs: [create, update, patch, delete]
    namespaces: [default]
    resources:
      - group: apps
        resources: [deployments, deployments/scale]
        resourceNames: [web]
    omitStages: [ResponseStarted, Panic]
    omitManagedFields: false
  - level: None
    nonResourceURLs: ["/healthz*", "*"]
  - level: Metadata
"""
    assert validate_policy(text, "p.yaml") == []


def test_warnings_for_unreachable_rules_and_unknown_verbs():
    text = GOOD + "  - level: None\n    verbs: [gett]\n"
    warnings = validate_policy(text, "p.yaml")
    assert any("rules[1]: never matches: rules[0] above matches every request" in w for w in warnings)
    assert any("rules[1].verbs[0]: 'gett' is not a verb" in w for w in warnings)

"""The policy evaluator against hand-made policies: every field kube-apiserver matches on,
first match wins, omitStages and omitManagedFields, and partly known requests."""

from __future__ import annotations

import json

import pytest

from kaudit.core.policy import PolicyError, check_policy, policy_text
from kaudit.core.policy_eval import (
    Request,
    Selector,
    can_ever_log,
    evaluate,
    load_policy,
    max_level_for,
    possible_rules,
    request_from_event,
)


def pol(*rules: dict, **top) -> object:
    doc = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", **top, "rules": list(rules)}
    return load_policy(json.dumps(doc), "<test>")


def res(verb="get", resource="pods", group="", sub="", ns="default", name="", user="alice", groups=("system:authenticated",)):
    return Request(user, tuple(groups), verb, True, group, resource, sub, ns, name)


def url(path, verb="get", user="alice", groups=("system:authenticated",)):
    return Request(user, tuple(groups), verb, False, path=path)


# (rule under test, request, matches?)
MATCH_CASES = [
    # users / userGroups / verbs: exact strings, any of the list
    ({"users": ["alice", "bob"]}, res(user="bob"), True),
    ({"users": ["alice"]}, res(user="alicia"), False),
    ({"users": ["alice"]}, res(user=None, groups=()), False),  # unauthenticated: no user at all
    ({"userGroups": ["system:nodes"]}, res(groups=("system:authenticated", "system:nodes")), True),
    ({"userGroups": ["system:nodes"]}, res(groups=("system:authenticated",)), False),
    ({"userGroups": ["system:unauthenticated"]}, res(user=None, groups=()), False),
    ({"verbs": ["get", "list"]}, res(verb="list"), True),
    ({"verbs": ["get"]}, res(verb="watch"), False),
    ({"verbs": ["post"]}, url("/apis", verb="post"), True),
    # resources with group: "" is core; "*" any group; a group without resources: all of it
    ({"resources": [{"group": "", "resources": ["pods"]}]}, res(), True),
    ({"resources": [{"group": "", "resources": ["pods"]}]}, res(group="apps"), False),
    ({"resources": [{"group": "apps", "resources": ["deployments"]}]}, res(resource="deployments", group="apps"), True),
    ({"resources": [{"group": "*", "resources": ["deployments"]}]}, res(resource="deployments", group="extensions"), True),
    ({"resources": [{"group": "apps"}]}, res(resource="replicasets", group="apps", sub="scale"), True),
    ({"resources": [{"group": "", "resources": ["*"]}]}, res(resource="pods", sub="exec"), True),
    # subresources: exact "pods/log", "*/scale", "pods/*" (which also matches plain pods)
    ({"resources": [{"group": "", "resources": ["pods/log"]}]}, res(sub="log"), True),
    ({"resources": [{"group": "", "resources": ["pods/log"]}]}, res(), False),
    ({"resources": [{"group": "", "resources": ["pods"]}]}, res(sub="log"), False),
    ({"resources": [{"group": "*", "resources": ["*/scale"]}]}, res(resource="deployments", group="apps", sub="scale"), True),
    ({"resources": [{"group": "*", "resources": ["*/scale"]}]}, res(resource="deployments", group="apps"), False),
    ({"resources": [{"group": "", "resources": ["pods/*"]}]}, res(sub="exec"), True),
    ({"resources": [{"group": "", "resources": ["pods/*"]}]}, res(), True),
    ({"resources": [{"group": "", "resources": ["pods/*"]}]}, res(resource="services", sub="proxy"), False),
    # resourceNames restrict by the object name; a create carries no name in its attributes
    ({"resources": [{"group": "", "resources": ["configmaps"], "resourceNames": ["cfg"]}]}, res(resource="configmaps", name="cfg"), True),
    ({"resources": [{"group": "", "resources": ["configmaps"], "resourceNames": ["cfg"]}]}, res(resource="configmaps", name="other"), False),
    ({"resources": [{"group": "", "resources": ["configmaps"], "resourceNames": ["cfg"]}]}, res(verb="create", resource="configmaps"), False),
    # namespaces: "" is cluster-scoped
    ({"namespaces": ["kube-system"]}, res(ns="kube-system"), True),
    ({"namespaces": ["kube-system"]}, res(ns="default"), False),
    ({"namespaces": [""]}, res(resource="nodes", ns=""), True),
    ({"namespaces": [""]}, res(ns="default"), False),
    ({"namespaces": ["kube-system"]}, url("/healthz"), False),  # a namespace rule is for resource requests only
    # nonResourceURLs: exact, trailing "*" prefix, "*" alone; never a resource request
    ({"nonResourceURLs": ["/version"]}, url("/version"), True),
    ({"nonResourceURLs": ["/version"]}, url("/version/x"), False),
    ({"nonResourceURLs": ["/healthz*"]}, url("/healthz/etcd"), True),
    ({"nonResourceURLs": ["/healthz*"]}, url("/healthzz"), True),
    ({"nonResourceURLs": ["/healthz*"]}, url("/livez"), False),
    ({"nonResourceURLs": ["*"]}, url("/anything"), True),
    ({"nonResourceURLs": ["*"]}, res(), False),
    # a rule with neither resources nor URLs matches both kinds
    ({"verbs": ["get"]}, url("/version"), True),
    ({"verbs": ["get"]}, res(), True),
]


@pytest.mark.parametrize("rule,req,matches", MATCH_CASES)
def test_each_matching_field(rule, req, matches):
    p = pol({"level": "Request", **rule})
    d = evaluate(p, req)
    assert (d.level, d.rule) == (("Request", 0) if matches else ("None", None))


def test_first_matching_rule_wins_and_no_match_is_not_logged():
    p = pol({"level": "None", "users": ["system:kube-proxy"]},
            {"level": "Metadata", "resources": [{"group": "", "resources": ["secrets"]}]},
            {"level": "RequestResponse", "resources": [{"group": ""}]})
    assert evaluate(p, res(user="system:kube-proxy", resource="secrets")).rule == 0
    assert (evaluate(p, res(resource="secrets")).level, evaluate(p, res(resource="secrets")).rule) == ("Metadata", 1)
    assert evaluate(p, res()).level == "RequestResponse"
    d = evaluate(p, res(group="apps", resource="deployments"))
    assert (d.level, d.rule) == ("None", None)
    assert not d.writes("ResponseComplete")


def test_omit_stages_unite_policy_and_rule():
    p = pol({"level": "Metadata", "omitStages": ["ResponseStarted"]}, omitStages=["RequestReceived"])
    d = evaluate(p, res())
    assert d.omit_stages == {"RequestReceived", "ResponseStarted"}
    assert [s for s in ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic") if d.writes(s)] == ["ResponseComplete", "Panic"]
    # the default (no rule matched) carries the policy's own
    none = evaluate(pol({"level": "Metadata", "users": ["x"]}, omitStages=["Panic"]), res())
    assert none.omit_stages == {"Panic"} and none.level == "None"


@pytest.mark.parametrize("policy_value,rule_value,expected", [
    (None, None, False), (True, None, True), (False, True, True), (True, False, False), (None, True, True),
])
def test_omit_managed_fields_rule_overrides_policy(policy_value, rule_value, expected):
    rule = {"level": "RequestResponse"} if rule_value is None else {"level": "RequestResponse", "omitManagedFields": rule_value}
    top = {} if policy_value is None else {"omitManagedFields": policy_value}
    assert evaluate(pol(rule, **top), res()).omit_managed_fields is expected


def test_request_from_event_uses_the_authenticated_user_and_the_path_without_query():
    impersonated = {"kind": "Event", "level": "Metadata", "stage": "ResponseComplete", "verb": "list",
                    "requestURI": "/api/v1/namespaces/default/pods",
                    "user": {"username": "system:admin", "groups": ["system:masters"]},
                    "impersonatedUser": {"username": "bob", "groups": ["system:authenticated"]},
                    "objectRef": {"resource": "pods", "namespace": "default", "apiVersion": "v1"}}
    req = request_from_event(impersonated)
    assert (req.user, req.groups, req.resource_request, req.group, req.namespace) == ("system:admin", ("system:masters",), True, "", "default")
    p = pol({"level": "None", "users": ["bob"]}, {"level": "Metadata"})
    assert evaluate(p, req).level == "Metadata"  # the policy never sees the impersonated user
    nonres = request_from_event({"verb": "get", "requestURI": "/healthz%2Fetcd?verbose=1", "user": {}})
    assert (nonres.resource_request, nonres.path, nonres.user) == (False, "/healthz/etcd", None)


@pytest.mark.parametrize("text,fragment", [
    ("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Everything\n", "unknown level 'Everything'"),
    ("apiVersion: audit.k8s.io/v1beta1\nkind: Policy\nrules:\n- level: None\n", "must be audit.k8s.io/v1"),
    ("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  nonResourceURLs: [/a]\n  resources: [{group: ''}]\n",
     "cannot be in the same rule"),
    ("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []\n", "at least one rule"),
])
def test_a_policy_the_apiserver_refuses_is_refused_with_the_validators_reason(text, fragment):
    with pytest.raises(PolicyError) as e:
        load_policy(text, "p.yaml")
    problems, _ = check_policy(text, "p.yaml")
    assert e.value.problems == problems
    assert fragment in e.value.message


# ------------------------------------------------------------ partly known requests

@pytest.fixture(scope="module")
def gce():
    return load_policy(policy_text("gce"), "gce", "gce")


@pytest.fixture(scope="module")
def gce_modern():
    return load_policy(policy_text("gce-modern"), "gce-modern", "gce-modern")


def test_secret_reads_never_carry_bodies_under_gce(gce):
    reads = Selector(verb=("get", "list", "watch"), group="", resource="secrets")
    assert max_level_for(gce, reads) == "Metadata"
    assert can_ever_log(gce, reads, "Metadata")
    assert not can_ever_log(gce, reads, "Request")
    # any verb: the namespace controller's deletecollection (rule 12, no resources named) comes first
    anything = possible_rules(gce, Selector(group="", resource="secrets"))
    assert [(r.index, r.level, sure) for r, sure in anything] == [(12, "Request", False), (13, "Metadata", True)]


def test_event_deletion_leaves_no_trace_under_gce(gce):
    assert max_level_for(gce, Selector(verb="delete", group="", resource="events")) == "None"


def test_no_request_received_stage_under_gce(gce):
    assert not can_ever_log(gce, Selector(), "Metadata", stage="RequestReceived")
    assert can_ever_log(gce, Selector(), "Metadata", stage="ResponseComplete")


def test_pod_exec_and_privileged_pod_creation_under_gce(gce):
    assert max_level_for(gce, Selector(verb="create", group="", resource="pods", subresource="exec")) == "RequestResponse"
    assert can_ever_log(gce, Selector(verb="create", group="", resource="pods", subresource=""), "RequestResponse")


def test_unknown_user_keeps_user_rules_possible_but_not_sure(gce):
    rules = possible_rules(gce, Selector(verb="get", group="", resource="nodes", namespace=""))
    indexes = [(r.index if r else None, sure) for r, sure in rules]
    assert (2, False) in indexes and (3, False) in indexes  # kubelet user, system:nodes group
    assert indexes[-1] == (14, True)  # everybody else: reads of known APIs at Request
    # a known user that neither rule names goes straight to rule 14
    assert [(r.index, s) for r, s in possible_rules(gce, Selector(user="alice", groups=("system:authenticated",), verb="get",
                                                                   group="", resource="nodes", namespace=""))] == [(14, True)]


def test_several_values_and_leases_between_the_profiles(gce, gce_modern):
    leases = Selector(verb=("get", "update"), group="coordination.k8s.io", resource="leases")
    assert max_level_for(gce, leases) == "Metadata"  # gce predates coordination.k8s.io: the catch-all
    assert max_level_for(gce_modern, leases) == "RequestResponse"  # updates of a known group
    nodes_leases = Selector(groups=("system:nodes",), verb="update", group="coordination.k8s.io",
                            resource="leases", namespace="kube-node-lease")
    assert max_level_for(gce_modern, nodes_leases) == "None"


def test_non_resource_selectors(gce):
    assert max_level_for(gce, Selector(path="/healthz/etcd")) == "None"
    assert max_level_for(gce, Selector(path="/metrics")) == "Metadata"
    assert max_level_for(gce, Selector(path="/version", resource_request=False)) == "None"

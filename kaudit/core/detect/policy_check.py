"""Can an audit policy ever log what a rule needs? (pure)

``never_fires(rule, policy)`` walks the requests a rule can match (its verbs, resources,
subresources, namespaces and users, read from the top of its ``when``) through the
policy's rules, first match wins as in kube-apiserver, and says why the rule can never
fire when every such request is logged below the level the rule needs (or not at all,
or only at stages the rule does not read).

The policy evaluation is kept in one function, ``policy_decision``, so it can be swapped
for a shared audit-policy evaluator without touching the rest.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from itertools import product
from typing import Any, Optional

from kaudit.core.detect.model import LEVELS, Rule

_ORDER = {"None": 0, **{lvl: i + 1 for i, lvl in enumerate(LEVELS)}}
RESPONSE_STAGES = ("ResponseStarted", "ResponseComplete")

#: API group of the resources the rule pack names (core is "")
RESOURCE_GROUPS = {
    "clusterroles": "rbac.authorization.k8s.io", "clusterrolebindings": "rbac.authorization.k8s.io",
    "roles": "rbac.authorization.k8s.io", "rolebindings": "rbac.authorization.k8s.io",
    "daemonsets": "apps", "deployments": "apps", "replicasets": "apps", "statefulsets": "apps",
    "cronjobs": "batch", "jobs": "batch",
    "mutatingwebhookconfigurations": "admissionregistration.k8s.io",
    "validatingwebhookconfigurations": "admissionregistration.k8s.io",
    "certificatesigningrequests": "certificates.k8s.io",
    "leases": "coordination.k8s.io", "endpointslices": "discovery.k8s.io",
}
CLUSTER_SCOPED = {
    "clusterroles", "clusterrolebindings", "namespaces", "nodes", "mutatingwebhookconfigurations",
    "validatingwebhookconfigurations", "certificatesigningrequests", "persistentvolumes",
}
#: what a rule without a verb or resource constraint is tried with
ANY_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete")
ANY_RESOURCES = ("pods", "secrets", "configmaps", "clusterroles")


@dataclass(frozen=True)
class Request:
    verb: str
    resource: Optional[str]  # None: a non-resource request
    subresource: str = ""
    group: str = ""
    namespace: str = ""
    user: str = "kaudit:any-user"
    groups: tuple[str, ...] = ("system:authenticated",)
    path: str = "/api"


@dataclass(frozen=True)
class Decision:
    level: str
    omit_stages: frozenset
    rule_index: Optional[int]  # the policy rule that matched (None: no rule matched)


def _in(values: Optional[list], value: str) -> bool:
    return not values or value in values or "*" in values


def _resource_matches(entry: dict, req: Request) -> bool:
    if (entry.get("group") or "") != req.group and entry.get("group") != "*":
        return False
    names = entry.get("resources") or []
    if names:
        full = f"{req.resource}/{req.subresource}" if req.subresource else req.resource
        ok = False
        for n in names:
            if n in (full, "*") or (n == f"*/{req.subresource}" and req.subresource) or (n == f"{req.resource}/*" and req.subresource):
                ok = True
                break
        if not ok:
            return False
    # a rule limited to some object names cannot be relied on for the others
    return not entry.get("resourceNames")


def policy_decision(policy: dict, req: Request) -> Decision:
    """The level and omitted stages kube-apiserver gives a request under policy (first match)."""
    base_omit = set(policy.get("omitStages") or [])
    for i, rule in enumerate(policy.get("rules") or []):
        if rule.get("users") and req.user not in rule["users"]:
            continue
        if rule.get("userGroups") and not set(req.groups) & set(rule["userGroups"]):
            continue
        if not _in(rule.get("verbs"), req.verb):
            continue
        if rule.get("nonResourceURLs"):
            if req.resource is not None:
                continue
            if not any(fnmatch.fnmatchcase(req.path, u) if u.endswith("*") else req.path == u for u in rule["nonResourceURLs"]):
                continue
        if rule.get("resources") or rule.get("namespaces"):
            if req.resource is None:
                continue
        if rule.get("namespaces") and req.namespace not in rule["namespaces"]:
            continue
        if rule.get("resources") and not any(_resource_matches(e, req) for e in rule["resources"]):
            continue
        return Decision(rule.get("level", "None"), frozenset(base_omit | set(rule.get("omitStages") or [])), i)
    return Decision("None", frozenset(base_omit), None)


def _values(rule: Rule, path: str) -> Optional[list]:
    for c in rule.when.conditions:
        if c.path.text == path and c.op in ("eq", "in"):
            return [c.value] if c.op == "eq" else list(c.value)
    return None


def requests_for(rule: Rule) -> list[Request]:
    """Representative requests the rule can match, from the top of its `when`."""
    verbs = _values(rule, "verb") or list(ANY_VERBS)
    resources = _values(rule, "objectRef.resource") or list(ANY_RESOURCES)
    subs = _values(rule, "objectRef.subresource") or [""]
    namespaces = _values(rule, "objectRef.namespace")
    users = _values(rule, "user.username")
    groups_given = _values(rule, "objectRef.apiGroup")
    out = []
    for verb, res, sub, user in product(verbs, resources, subs, users or [None]):
        for ns in namespaces or ["" if res in CLUSTER_SCOPED else "default"]:
            groups = ("system:unauthenticated",) if user == "system:anonymous" else ("system:authenticated",)
            out.append(Request(
                verb=str(verb), resource=str(res), subresource=str(sub),
                group=str(groups_given[0]) if groups_given else RESOURCE_GROUPS.get(str(res), ""),
                namespace=str(ns), user=str(user) if user else "kaudit:any-user", groups=groups,
            ))
    return out


def never_fires(rule: Rule, policy: dict) -> Optional[str]:
    """Why the policy can never log what the rule needs, or None when it can."""
    stages = rule.stages or RESPONSE_STAGES
    reasons = []
    for req in requests_for(rule):
        d = policy_decision(policy, req)
        if _ORDER[d.level] >= _ORDER[rule.level] and any(s not in d.omit_stages for s in stages):
            return None
        where = f"policy rule {d.rule_index + 1}" if d.rule_index is not None else "no policy rule"
        what = f"{req.verb} {req.resource}{'/' + req.subresource if req.subresource else ''}"
        if _ORDER[d.level] < _ORDER[rule.level]:
            reasons.append(f"{where} logs {what} at level {d.level}, the rule needs {rule.level}")
        else:
            reasons.append(f"{where} omits stages {', '.join(sorted(d.omit_stages))}, the rule reads {', '.join(stages)}")
    return reasons[0] if reasons else None


def load_policy(text: str, source: str) -> dict:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    from kaudit.core.errors import UsageError

    try:
        doc: Any = YAML(typ="safe", pure=True).load(text)
    except YAMLError as e:
        raise UsageError(f"--policy {source}: not valid YAML: {e}", "kaudit policy validate FILE shows what is wrong") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise UsageError(f"--policy {source}: not an audit Policy (no rules: list)", "kaudit policy validate FILE checks it")
    return doc

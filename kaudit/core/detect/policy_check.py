"""Can an audit policy ever log what a detection rule needs? (pure)

A rule's requirement is read from the top of its ``when`` (verbs, resources, subresources,
namespaces, names, users, API group) as a kaudit.core.policy_eval ``Selector``; a field the
rule leaves open, or matches by prefix, stays open, so "never fires" is only said when no
request the rule could match is ever written at the level and stage it needs. The policy
semantics are policy_eval's (kube-apiserver's own), the same that `kaudit policy simulate`
uses; ``never_firing`` is the one answer both `kaudit detect --list` and the simulate report
give.
"""

from __future__ import annotations

import itertools
from typing import Optional

from kaudit.core.policy_eval import LEVEL_RANK, Policy, Selector, max_level_for, possible_rules
from kaudit.core.detect.model import Rule

RESPONSE_STAGES = ("ResponseStarted", "ResponseComplete")

#: API groups that serve the built-in resources the rule pack names (core is ""). A rule that
#: names a resource and no objectRef.apiGroup matches it in every group that serves it: Events
#: are served by core v1 and by events.k8s.io/v1.
RESOURCE_GROUPS = {
    "clusterroles": ("rbac.authorization.k8s.io",), "clusterrolebindings": ("rbac.authorization.k8s.io",),
    "roles": ("rbac.authorization.k8s.io",), "rolebindings": ("rbac.authorization.k8s.io",),
    "daemonsets": ("apps",), "deployments": ("apps",), "replicasets": ("apps",), "statefulsets": ("apps",),
    "cronjobs": ("batch",), "jobs": ("batch",),
    "mutatingwebhookconfigurations": ("admissionregistration.k8s.io",),
    "validatingwebhookconfigurations": ("admissionregistration.k8s.io",),
    "certificatesigningrequests": ("certificates.k8s.io",),
    "leases": ("coordination.k8s.io",), "endpointslices": ("discovery.k8s.io",),
    "events": ("", "events.k8s.io"),
    **{r: ("",) for r in ("pods", "secrets", "configmaps", "serviceaccounts", "namespaces", "nodes", "services",
                          "endpoints", "persistentvolumes", "persistentvolumeclaims")},
}


def _values(rule: Rule, path: str) -> Optional[tuple]:
    """The values a top-level equality/one-of condition allows, or None (open)."""
    for c in rule.when.conditions:
        if c.path.text == path and c.op in ("eq", "in"):
            return tuple(str(v) for v in ((c.value,) if c.op == "eq" else c.value))
    return None


def selector_for(rule: Rule) -> Selector:
    """The requests the rule can match, as far as its `when` says."""
    resources = _values(rule, "objectRef.resource")
    groups = _values(rule, "objectRef.apiGroup")
    if groups is None and resources is not None and all(r in RESOURCE_GROUPS for r in resources):
        groups = tuple(dict.fromkeys(g for r in resources for g in RESOURCE_GROUPS[r]))
    sub = _values(rule, "objectRef.subresource")
    ref = any(c.path.text.startswith("objectRef.") and not c.negative for c in rule.when.conditions)
    return Selector(
        user=_values(rule, "user.username"), verb=_values(rule, "verb"), group=groups, resource=resources,
        subresource=sub if sub is not None else ("" if resources is not None else None),
        namespace=_values(rule, "objectRef.namespace"), name=_values(rule, "objectRef.name"),
        resource_request=True if ref else None,
    )


def never_fires(rule: Rule, policy: Policy) -> Optional[str]:
    """Why the policy can never write what the rule needs, or None when it can."""
    stages = rule.stages or RESPONSE_STAGES
    sel = selector_for(rule)
    need = LEVEL_RANK[rule.level]
    if any(LEVEL_RANK[max_level_for(policy, sel, st)] >= need for st in stages):
        return None
    return _reason(rule, sel, policy, stages)


def never_firing(rules, policy: Policy) -> list[tuple[Rule, str]]:
    """The rules the policy can never fire, each with the reason, in rule order."""
    return [(r, why) for r in rules if (why := never_fires(r, policy)) is not None]


def _reason(rule: Rule, sel: Selector, policy: Policy, stages: tuple) -> str:
    """The first concrete request (one verb, resource, group) and the policy rule deciding it."""
    one = lambda v: (None,) if v is None else ((v,) if isinstance(v, str) else v)  # noqa: E731
    verb, res, group = next(itertools.product(one(sel.verb), one(sel.resource), one(sel.group)))
    probe = Selector(**{**sel.__dict__, "verb": verb, "resource": res, "group": group})
    decided = [p for p, _sure in possible_rules(policy, probe, stages[-1])]
    top = max(decided, key=lambda p: -1 if p is None else LEVEL_RANK[p.level])
    where = "no policy rule" if top is None else f"policy rule {top.index + 1}"
    level = "None" if top is None else top.level
    sub = next(iter(one(sel.subresource)))
    what = f"{verb or 'any verb'} {res or 'any resource'}{'/' + sub if sub else ''}"
    if LEVEL_RANK[level] < LEVEL_RANK[rule.level]:
        return f"{where} logs {what} at level {level}, the rule needs {rule.level}"
    return f"{where} omits stages {', '.join(sorted(top.omit_stages))}, the rule reads {', '.join(stages)}"

"""Which level and stages an audit policy gives a request: kube-apiserver's own rules.

The semantics follow k8s.io/apiserver pkg/audit/policy/checker.go (read at
kubernetes/apiserver 24a394e): the first rule that matches decides; a request no
rule matches is not logged (level None); the policy's omitStages are added to
every rule's; a rule's omitManagedFields, when set, overrides the policy's. The
facts that decide a match, as that file states them:

* users / userGroups / verbs: exact strings; an empty list restricts nothing. A
  request without an authenticated user matches no rule that names users or groups.
* A rule naming namespaces or resources matches resource requests only; "" in
  namespaces means cluster-scoped. Group "*" matches every API group; resource
  "*" every resource and subresource; "pods/log" one subresource; "*/scale" that
  subresource of any resource; "pods/*" pods and every subresource of pods (also
  plain pods); resourceNames restrict by object name.
* A rule naming only nonResourceURLs matches non-resource requests whose path is
  equal, or starts with the text before a trailing "*" ("*" alone: every path).

The attributes come from the recorded event: the apiserver evaluates the policy
with the authenticated user (before impersonation), the verb it records, and
objectRef exactly when the request is a resource request; the name of a create
is empty then (the URL names the collection), although the event shows it.

Besides evaluating one request, ``possible_rules``/``max_level_for``/
``can_ever_log`` answer "can this policy ever log requests like these?" for a
partly known request (a detection rule's requirement).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple, Optional, Union
from urllib.parse import unquote

from kaudit.core.policy import LEVELS, STAGES, PolicyError, check_policy

LEVEL_RANK = {name: i for i, name in enumerate(LEVELS)}  # None < Metadata < Request < RequestResponse
HTTP_VERBS = frozenset(("get", "post", "put", "patch", "delete", "head", "options"))


@dataclass(frozen=True)
class GroupResources:
    group: str
    resources: tuple[str, ...]
    names: tuple[str, ...]


@dataclass(frozen=True)
class Rule:
    index: int
    level: str
    users: Optional[frozenset]
    user_groups: Optional[frozenset]
    verbs: Optional[frozenset]
    resources: tuple[GroupResources, ...]
    namespaces: Optional[frozenset]
    urls: tuple[str, ...]
    omit_stages: frozenset  # the rule's own, united with the policy's
    omit_managed_fields: bool  # the rule's value, or the policy's when the rule has none
    description: str


@dataclass(frozen=True)
class Policy:
    name: str
    rules: tuple[Rule, ...]
    omit_stages: frozenset
    omit_managed_fields: bool

    @property
    def uses_resource_names(self) -> bool:
        return any(gr.names for r in self.rules for gr in r.resources)


class Request(NamedTuple):
    """The authorizer attributes the apiserver evaluates a policy with."""

    user: Optional[str]
    groups: tuple[str, ...]
    verb: str
    resource_request: bool
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


@dataclass(frozen=True)
class Decision:
    level: str
    omit_stages: frozenset
    omit_managed_fields: bool
    rule: Optional[int]  # index of the deciding rule; None: no rule matched

    def writes(self, stage: str) -> bool:
        return self.level != "None" and stage not in self.omit_stages


# ---------------------------------------------------------------- loading


def load_policy(text: str, source: str, name: Optional[str] = None, warnings: Optional[list] = None) -> Policy:
    """Parse and compile a policy; one kube-apiserver would refuse raises the PolicyError
    `kaudit policy validate` gives for it. Its warnings (legal but suspicious) are appended
    to `warnings` when given."""
    problems, found = check_policy(text, source)
    if warnings is not None:
        warnings.extend(found)
    if problems:
        raise PolicyError(problems, f"`kaudit policy validate {source}` lists every problem; fix them and run again")
    from ruamel.yaml import YAML

    doc = YAML(typ="safe", pure=True).load(text)
    return compile_policy(doc, name or source)


def _set(values: Any) -> Optional[frozenset]:
    return frozenset(values) if values else None


def compile_policy(doc: dict, name: str) -> Policy:
    """A validated policy document (plain dicts) as a Policy."""
    policy_stages = frozenset(doc.get("omitStages") or ())
    policy_mf = bool(doc.get("omitManagedFields", False))
    rules = []
    for i, r in enumerate(doc["rules"]):
        groups = tuple(
            GroupResources(gr.get("group") or "", tuple(gr.get("resources") or ()), tuple(gr.get("resourceNames") or ()))
            for gr in (r.get("resources") or ())
        )
        mf = r.get("omitManagedFields")
        rule = Rule(
            index=i, level=r["level"], users=_set(r.get("users")), user_groups=_set(r.get("userGroups")),
            verbs=_set(r.get("verbs")), resources=groups, namespaces=_set(r.get("namespaces")),
            urls=tuple(r.get("nonResourceURLs") or ()),
            omit_stages=policy_stages | frozenset(r.get("omitStages") or ()),
            omit_managed_fields=policy_mf if mf is None else bool(mf), description="",
        )
        rules.append(_described(rule))
    return Policy(name, tuple(rules), policy_stages, policy_mf)


def _short(values: Iterable[str], limit: int = 3) -> str:
    values = sorted(values)
    shown = ",".join(v or '""' for v in values[:limit])
    return shown + (f",+{len(values) - limit}" if len(values) > limit else "")


def _described(rule: Rule) -> Rule:
    """A one-line summary of what the rule selects, for tables."""
    parts = []
    if rule.users:
        parts.append(f"users={_short(rule.users, 2)}")
    if rule.user_groups:
        parts.append(f"groups={_short(rule.user_groups, 2)}")
    if rule.verbs:
        parts.append(f"verbs={_short(rule.verbs)}")
    if rule.namespaces:
        parts.append(f"ns={_short(rule.namespaces, 2)}")
    if rule.resources:
        groups = {gr.group for gr in rule.resources}
        qualify = len(groups) > 1  # say which group when the rule names several
        res = [f"{gr.group}/{r}" if qualify and gr.group and gr.resources else r
               for gr in rule.resources for r in (gr.resources or (f"{gr.group or 'core'}/*",))]
        parts.append(f"{len(groups)} groups" if len(groups) > 3 and not any(gr.resources for gr in rule.resources)
                     else f"res={_short(res)}")
    if rule.urls:
        parts.append(f"urls={_short(rule.urls, 2)}")
    text = " ".join(parts) or "everything else"
    return Rule(**{**rule.__dict__, "description": text})


# ---------------------------------------------------------------- one request


def request_from_event(event: dict) -> Request:
    """The attributes a recorded audit event was evaluated with."""
    user = event.get("user") or {}
    username = user.get("username") or None
    groups = tuple(user.get("groups") or ()) if username else ()
    ref = event.get("objectRef")
    verb = event.get("verb") or ""
    if ref is not None:
        sub = ref.get("subresource") or ""
        # A create is POSTed to the collection: the name the policy sees is empty; the
        # event's objectRef.name was filled in from the object afterwards (request.go).
        name = "" if verb == "create" and not sub else ref.get("name") or ""
        return Request(username, groups, verb, True, ref.get("apiGroup") or "", ref.get("resource") or "",
                       sub, ref.get("namespace") or "", name)
    uri = event.get("requestURI") or ""
    return Request(username, groups, verb, False, path=unquote(uri.split("?", 1)[0]))


def evaluate(policy: Policy, req: Request) -> Decision:
    for rule in policy.rules:
        if rule_matches(rule, req):
            return Decision(rule.level, rule.omit_stages, rule.omit_managed_fields, rule.index)
    return Decision("None", policy.omit_stages, policy.omit_managed_fields, None)


def rule_matches(rule: Rule, req: Request) -> bool:
    if rule.users is not None and (req.user is None or req.user not in rule.users):
        return False
    if rule.user_groups is not None and (req.user is None or rule.user_groups.isdisjoint(req.groups)):
        return False
    if rule.verbs is not None and req.verb not in rule.verbs:
        return False
    if rule.namespaces is not None or rule.resources:
        return req.resource_request and _resource_matches(rule, req.group, req.resource, req.subresource,
                                                          req.namespace, req.name)
    if rule.urls:
        return not req.resource_request and any(path_matches(req.path, spec) for spec in rule.urls)
    return True


def path_matches(path: str, spec: str) -> bool:
    if spec == "*" or spec == path:
        return True
    return spec.endswith("*") and path.startswith(spec.rstrip("*"))


def _resource_matches(rule: Rule, group: str, resource: str, sub: str, namespace: str, name: str) -> bool:
    if rule.namespaces is not None and namespace not in rule.namespaces:
        return False
    if not rule.resources:
        return True
    combined = f"{resource}/{sub}" if sub else resource
    for gr in rule.resources:
        if gr.group != group and gr.group != "*":
            continue
        if not gr.resources:
            return True
        if gr.names and name not in gr.names:
            continue
        for res in gr.resources:
            if res == combined or res == "*":
                return True
            if sub and res.startswith("*/") and res[2:] == sub:
                return True
            if res.endswith("/*") and res[:-2] == resource:
                return True
    return False


# ---------------------------------------------------------------- partly known requests

Field = Union[None, str, Iterable[str]]


@dataclass(frozen=True)
class Selector:
    """Requests described partly: each field None (any value), one value, or several.

    ``resource_request`` None means either kind; it is implied True by any of
    group/resource/subresource/namespace/name, and False by path. ``subresource``
    defaults to "" (the resource itself, as a detection about "secrets" means);
    None means any subresource. ``groups`` are the user's groups (any of them).
    """

    user: Field = None
    groups: Optional[tuple[str, ...]] = None
    verb: Field = None
    group: Field = None
    resource: Field = None
    subresource: Field = ""
    namespace: Field = None
    name: Field = None
    path: Field = None
    resource_request: Optional[bool] = None


def _alts(value: Field) -> tuple[Optional[str], ...]:
    if value is None:
        return (None,)
    if isinstance(value, str):
        return (value,)
    return tuple(value) or (None,)


def _may(values: Optional[frozenset], v: Optional[str]) -> tuple[bool, bool]:
    """(possibly, surely) that a request whose field is v (None: unknown) passes the rule's list."""
    if values is None:
        return True, True
    if v is None:
        return True, False
    return v in values, v in values


def _rule_fits(rule: Rule, s: dict) -> tuple[bool, bool]:
    """(possibly, surely) that the rule matches every/some request the concrete-or-unknown fields in s describe."""
    possible, sure = True, True
    for values, v in ((rule.users, s["user"]), (rule.verbs, s["verb"])):
        p, q = _may(values, v)
        possible, sure = possible and p, sure and q
    if rule.users is not None and s["user"] is None:
        sure = False
    if rule.user_groups is not None:
        if s["groups"] is None:
            sure = False
        elif rule.user_groups.isdisjoint(s["groups"]):
            return False, False
    if not possible:
        return False, False
    kind = s["resource_request"]
    if kind is False and rule.verbs is not None and rule.verbs.isdisjoint(HTTP_VERBS):
        return False, False  # a non-resource request's verb is its lower-cased HTTP method
    if rule.namespaces is not None or rule.resources:
        if kind is False:
            return False, False
        p, q = _resource_fit(rule, s)
        return p, sure and q and kind is True
    if rule.urls:
        if kind is True:
            return False, False
        if s["path"] is None:
            return True, False
        hit = any(path_matches(s["path"], spec) for spec in rule.urls)
        return hit, sure and hit and kind is False
    return True, sure


def _resource_fit(rule: Rule, s: dict) -> tuple[bool, bool]:
    known = {k: s[k] for k in ("group", "resource", "subresource", "namespace", "name")}
    if all(v is not None for v in known.values()):
        hit = _resource_matches(rule, *known.values())
        return hit, hit
    # try the unknown fields as a value the rule names and as one it does not
    probes = {k: ((v,) if v is not None else _candidates(rule, k)) for k, v in known.items()}
    outcomes = {_resource_matches(rule, *combo) for combo in itertools.product(*probes.values())}
    return True in outcomes, outcomes == {True}


def _candidates(rule: Rule, field: str) -> tuple[str, ...]:
    other = "\x00not-named-by-the-policy"
    if field == "namespace":
        return tuple(rule.namespaces or ()) + ("", other)
    if field == "group":
        return tuple({gr.group for gr in rule.resources}) + ("", other)
    if field == "name":
        return tuple({n for gr in rule.resources for n in gr.names}) + ("", other)
    parts = [r.split("/", 1) for gr in rule.resources for r in gr.resources]
    if field == "resource":
        return tuple({p[0] for p in parts}) + (other,)
    return tuple({p[1] for p in parts if len(p) > 1}) + ("", other)


def _concrete(selector: Selector) -> Iterable[dict]:
    kind = selector.resource_request
    if kind is None:
        if any(getattr(selector, f) is not None for f in ("group", "resource", "namespace", "name")) or selector.subresource:
            kind = True
        elif selector.path is not None:
            kind = False
    names = ("user", "verb", "group", "resource", "subresource", "namespace", "name", "path")
    for combo in itertools.product(*(_alts(getattr(selector, n)) for n in names)):
        yield {**dict(zip(names, combo)), "groups": selector.groups, "resource_request": kind}


def possible_rules(policy: Policy, selector: Selector, stage: str = "ResponseComplete") -> list[tuple[Optional[Rule], bool]]:
    """The rules that could decide some request the selector describes, in policy order,
    each with whether it surely decides all of them; (None, True) stands for "no rule
    matched" (not logged). A rule that omits `stage` is still listed (it decides)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    found: dict[Optional[int], tuple[Optional[Rule], bool]] = {}
    for s in _concrete(selector):
        for rule in policy.rules:
            possible, sure = _rule_fits(rule, s)
            if possible:
                found.setdefault(rule.index, (rule, sure))
                if sure:
                    break
        else:
            found.setdefault(None, (None, True))
    return sorted(found.values(), key=lambda rs: len(policy.rules) if rs[0] is None else rs[0].index)


def max_level_for(policy: Policy, selector: Selector, stage: str = "ResponseComplete") -> str:
    """The highest level at which `stage` events of some request the selector describes
    can be written ("None" when the policy can never write one)."""
    best = "None"
    for rule, _sure in possible_rules(policy, selector, stage):
        if rule is not None and stage not in rule.omit_stages and LEVEL_RANK[rule.level] > LEVEL_RANK[best]:
            best = rule.level
    return best


def can_ever_log(policy: Policy, selector: Selector, min_level: str = "Metadata", stage: str = "ResponseComplete") -> bool:
    """Whether the policy can write a `stage` event at `min_level` or more for some such request.
    False means a detection needing that level can never fire under this policy."""
    return LEVEL_RANK[max_level_for(policy, selector, stage)] >= LEVEL_RANK[min_level]

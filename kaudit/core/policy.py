"""Audit policies: the packaged profiles, and a validator stricter than kube-apiserver.

kube-apiserver decodes the policy leniently in places: a misspelt field such as
``omitStage`` or ``resource`` is dropped without a word, and the rule then matches
more (or logs more) than its author meant. The validator therefore refuses
unknown fields at every depth, besides what the apiserver itself refuses
(k8s.io/apiserver pkg/apis/audit/validation). Errors name the rule index and the
field, and the line and column when the YAML gives them.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from kaudit.core.errors import KauditError

PROFILES = ("gce", "gce-modern")

LEVELS = ("None", "Metadata", "Request", "RequestResponse")
STAGES = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")
# Request verbs the apiserver records (resource and non-resource requests).
VERBS = (
    "get", "list", "watch", "create", "update", "patch", "delete", "deletecollection",
    "post", "put", "head", "options", "proxy", "*",
)

POLICY_FIELDS = ("apiVersion", "kind", "metadata", "rules", "omitStages", "omitManagedFields")
RULE_FIELDS = (
    "level", "users", "userGroups", "verbs", "resources", "namespaces", "nonResourceURLs",
    "omitStages", "omitManagedFields",
)
GROUP_RESOURCE_FIELDS = ("group", "resources", "resourceNames")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


class PolicyError(KauditError):
    """A policy kube-apiserver would refuse, or one whose meaning is not what it says."""

    def __init__(self, problems: list[str], hint: Optional[str] = None):
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(first + more, hint or "fix the policy; `kaudit policy validate FILE` lists every problem")
        self.problems = problems


def policy_text(profile: str) -> str:
    """The YAML text of a packaged profile (see PROFILES)."""
    if profile not in PROFILES:
        raise KauditError(f"unknown policy profile {profile!r}", f"choose one of: {', '.join(PROFILES)}")
    from kaudit.core.resources import read_resource

    return read_resource("policies", f"{profile}.yaml")


def validate_policy(text: str, source: str = "<file>") -> list[str]:
    """Raise PolicyError listing every problem; return warnings (legal but suspicious)."""
    problems, warnings = check_policy(text, source)
    if problems:
        raise PolicyError(problems)
    return warnings


def check_policy(text: str, source: str = "<file>") -> tuple[list[str], list[str]]:
    """(problems, warnings) of a policy's text, without raising."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="rt")
    try:
        docs = [d for d in yaml.load_all(text) if d is not None]
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = " ".join(str(p) for p in (e.context, e.problem) if p)
        return [f"{where}: not valid YAML: {problem}"], []
    except YAMLError as e:
        return [f"{source}: not valid YAML: {e}"], []
    if len(docs) != 1:
        return [f"{source}: holds {len(docs)} YAML documents; a policy file holds one Policy"], []
    return _Checker(source).policy(docs[0])


class _Checker:
    def __init__(self, source: str):
        self.source = source
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def at(self, parent: Any, key: Any) -> str:
        """source:line:col of parent[key] when ruamel recorded it."""
        try:
            if isinstance(key, int):
                line, col = parent.lc.item(key)
            else:
                line, col = parent.lc.key(key)
            return f"{self.source}:{line + 1}:{col + 1}"
        except Exception:
            return self.source

    def bad(self, parent: Any, key: Any, path: str, msg: str) -> None:
        self.problems.append(f"{self.at(parent, key)}: {path}: {msg}")

    def fields(self, obj: dict, known: tuple[str, ...], path: str) -> None:
        for key in obj:
            if key not in known:
                import difflib

                close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.7)
                tip = f"; did you mean {close[0]}?" if close else f" (known: {', '.join(known)})"
                self.bad(obj, key, f"{path}.{key}", f"unknown field{tip}")

    def strings(self, parent: dict, key: str, path: str) -> Optional[list[str]]:
        if key not in parent or parent[key] is None:
            return None
        value = parent[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.bad(parent, key, path, "must be a list of strings")
            return None
        return value

    def stages(self, parent: dict, path: str) -> None:
        for i, stage in enumerate(self.strings(parent, "omitStages", f"{path}.omitStages") or []):
            if stage not in STAGES:
                self.bad(parent["omitStages"], i, f"{path}.omitStages[{i}]",
                         f"unknown stage {stage!r} (known: {', '.join(STAGES)})")

    def boolean(self, parent: dict, key: str, path: str) -> None:
        if key in parent and not isinstance(parent[key], bool):
            self.bad(parent, key, path, "must be true or false")

    def policy(self, doc: Any) -> tuple[list[str], list[str]]:
        if not isinstance(doc, dict):
            self.problems.append(f"{self.source}: not a Policy: the document is not a mapping")
            return self.problems, self.warnings
        if doc.get("apiVersion") != "audit.k8s.io/v1":
            self.bad(doc, "apiVersion", "apiVersion",
                     f"must be audit.k8s.io/v1, not {doc.get('apiVersion')!r}"
                     + (" (v1beta1/v1alpha1 were removed in Kubernetes 1.24)" if str(doc.get("apiVersion", "")).startswith("audit.k8s.io/") else ""))
        if doc.get("kind") != "Policy":
            self.bad(doc, "kind", "kind", f"must be Policy, not {doc.get('kind')!r}")
        self.fields(doc, POLICY_FIELDS, "policy")
        self.stages(doc, "policy")
        self.boolean(doc, "omitManagedFields", "policy.omitManagedFields")
        rules = doc.get("rules")
        if not isinstance(rules, list) or not rules:
            self.bad(doc, "rules", "rules", "at least one rule is required" if not rules else "must be a list")
            return self.problems, self.warnings
        catch_all: Optional[int] = None
        for i, rule in enumerate(rules):
            path = f"rules[{i}]"
            if not isinstance(rule, dict):
                self.bad(rules, i, path, "must be a mapping with at least level:")
                continue
            self.rule(rule, path, rules, i)
            selectors = [k for k in ("users", "userGroups", "verbs", "resources", "namespaces", "nonResourceURLs") if rule.get(k)]
            if catch_all is not None:
                self.warnings.append(
                    f"{self.at(rules, i)}: {path}: never matches: rules[{catch_all}] above matches every request"
                )
            elif not selectors:
                catch_all = i
        return self.problems, self.warnings

    def rule(self, rule: dict, path: str, rules: list, i: int) -> None:
        self.fields(rule, RULE_FIELDS, path)
        level = rule.get("level")
        if level is None:
            self.bad(rules, i, f"{path}.level", f"required (one of {', '.join(LEVELS)})")
        elif level not in LEVELS:
            self.bad(rule, "level", f"{path}.level", f"unknown level {level!r} (known: {', '.join(LEVELS)})")
        for key in ("users", "userGroups", "namespaces"):
            self.strings(rule, key, f"{path}.{key}")
        for j, verb in enumerate(self.strings(rule, "verbs", f"{path}.verbs") or []):
            if verb not in VERBS:
                self.warnings.append(f"{self.at(rule['verbs'], j)}: {path}.verbs[{j}]: {verb!r} is not a verb kube-apiserver records")
        self.stages(rule, path)
        self.boolean(rule, "omitManagedFields", f"{path}.omitManagedFields")
        urls = self.strings(rule, "nonResourceURLs", f"{path}.nonResourceURLs") or []
        for j, url in enumerate(urls):
            where = f"{path}.nonResourceURLs[{j}]"
            if url == "*":
                continue
            if not url.startswith("/"):
                self.bad(rule["nonResourceURLs"], j, where, f"{url!r} must begin with '/'")
            if "*" in url[:-1]:
                self.bad(rule["nonResourceURLs"], j, where, f"{url!r}: '*' is allowed only as the last character")
        if urls and (rule.get("resources") or rule.get("namespaces")):
            both = "resources" if rule.get("resources") else "namespaces"
            self.bad(rule, "nonResourceURLs", path,
                     f"nonResourceURLs and {both} cannot be in the same rule; split it into two rules")
        resources = rule.get("resources")
        if resources is None:
            return
        if not isinstance(resources, list):
            self.bad(rule, "resources", f"{path}.resources", "must be a list of {group, resources, resourceNames}")
            return
        for j, gr in enumerate(resources):
            gpath = f"{path}.resources[{j}]"
            if not isinstance(gr, dict):
                self.bad(resources, j, gpath, "must be a mapping {group, resources, resourceNames}")
                continue
            self.fields(gr, GROUP_RESOURCE_FIELDS, gpath)
            group = gr.get("group", "")
            if not isinstance(group, str):
                self.bad(gr, "group", f"{gpath}.group", "must be a string (\"\" is the core group, \"*\" every group)")
            elif group and group != "*" and not (_DNS1123_SUBDOMAIN.fullmatch(group) and len(group) <= 253):
                self.bad(gr, "group", f"{gpath}.group", f"{group!r} is not a valid API group name (lower-case DNS subdomain)")
            names = self.strings(gr, "resourceNames", f"{gpath}.resourceNames")
            res = self.strings(gr, "resources", f"{gpath}.resources")
            if names and not res:
                self.bad(gr, "resourceNames", f"{gpath}.resourceNames", "resourceNames needs at least one resource")
            for k, r in enumerate(res or []):
                if "/" in r and r.count("/") > 1:
                    self.bad(gr["resources"], k, f"{gpath}.resources[{k}]", f"{r!r}: write resource or resource/subresource")

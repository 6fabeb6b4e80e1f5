"""An inventory (`kaudit up -f clusters.yaml`): several clusters, one Loki. Pure: text in, data out.

    loki:                      # optional: without it every cluster gets its own stack
      url: https://loki.example.net
      tenant: audit            # X-Scope-OrgID
      username: kaudit         # basic auth; the password from password_file or password_env
      password_file: secrets/loki-password
      token_file: ...          # or a bearer token (token_env names a variable instead)
      ca_file: ca.pem
    parallel: 4                # clusters at once (--parallel overrides)
    clusters:
      - name: lab              # the cluster label: unique, 1-63 of [A-Za-z0-9._-]
        hosts: [lima:lab]
      - name: prod-eu
        hosts: [ssh://root@10.0.0.5, ssh://root@10.0.0.6]
        ssh_key: ~/.ssh/prod
        kubeconfig: ~/.kube/prod-eu
        options: {collector: alloy, policy_profile: gce-modern}

Every error names file:line and the field (clusters[1].hosts[0]) and says what to write.
Relative paths are relative to the inventory's directory; ``~`` is expanded.
docs/inventory.md is the reference.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from kaudit.core.errors import UsageError
from kaudit.shipper import fields as F

LOKI_KEYS = ("url", "tenant", "username", "password_file", "password_env", "token_file", "token_env", "ca_file")
CLUSTER_KEYS = ("name", "hosts", "rootfs", "ssh_key", "known_hosts", "ssh_accept_new_host_key", "kubeconfig", "options")
#: per-cluster settings of `kaudit up` an inventory may set (UpOptions field -> allowed values or type)
OPTION_KEYS: dict[str, Any] = {
    "collector": ("promtail", "shipper", "alloy", "none"),
    "stack": ("loki-stack", "loki"),
    "policy_profile": ("gce", "gce-modern"),
    "policy_file": "path",
    "namespace": str,
    "shipper_image": str,
    "structured_metadata": bool,
    "loki_tenant": str,
}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")


@dataclass(frozen=True)
class LokiTarget:
    url: str
    tenant: Optional[str] = None
    username: Optional[str] = None
    password_file: Optional[str] = None
    password_env: Optional[str] = None
    token_file: Optional[str] = None
    token_env: Optional[str] = None
    ca_file: Optional[str] = None
    #: "clusters.yaml:3" where the loki section starts (for errors reading the files)
    where: str = ""


@dataclass(frozen=True)
class ClusterEntry:
    name: str
    hosts: tuple[str, ...]
    rootfs: Optional[str] = None
    ssh_key: Optional[str] = None
    known_hosts: Optional[str] = None
    accept_new_host_key: bool = False
    kubeconfig: Optional[str] = None
    options: dict[str, Any] = field(default_factory=dict)
    where: str = ""


@dataclass(frozen=True)
class Inventory:
    source: str
    clusters: tuple[ClusterEntry, ...]
    loki: Optional[LokiTarget] = None
    parallel: Optional[int] = None


class _Doc:
    """Line numbers for error messages, from ruamel's round-trip nodes."""

    def __init__(self, source: str):
        self.source = source

    def at(self, parent: Any, key: Any = None) -> str:
        try:
            if key is None:
                line = parent.lc.line
            elif isinstance(key, int):
                line = parent.lc.item(key)[0]
            else:
                line = parent.lc.key(key)[0]
            return f"{self.source}:{line + 1}"
        except (AttributeError, KeyError, IndexError, TypeError):
            return self.source

    def fail(self, parent: Any, key: Any, path: str, message: str, hint: str) -> UsageError:
        return UsageError(f"{self.at(parent, key)}: {path}: {message}", hint)


def _path(value: str, base: str) -> str:
    p = os.path.expanduser(value)
    return p if os.path.isabs(p) else os.path.normpath(os.path.join(base, p))


def _string(doc: _Doc, parent: Any, key: Any, path: str, hint: str = "write a string") -> str:
    value = parent[key]
    if not isinstance(value, str) or not value.strip():
        raise doc.fail(parent, key, path, f"{value!r} is not a non-empty string", hint)
    return value.strip()


def _keys(doc: _Doc, mapping: Any, allowed: tuple[str, ...], path: str) -> None:
    for key in mapping:
        if key not in allowed:
            raise doc.fail(mapping, key, f"{path}.{key}" if path else str(key), "unknown field", f"fields here are: {', '.join(allowed)}")


def parse_inventory(text: str, source: str, base_dir: str = ".") -> Inventory:
    """Validate and load an inventory; raises UsageError naming file:line and the field."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        root = YAML(typ="rt").load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        raise UsageError(f"{where}: not valid YAML: {e.problem or e}", "fix the YAML syntax (indentation, quotes)") from None
    except YAMLError as e:
        raise UsageError(f"{source}: not valid YAML: {e}") from None
    doc = _Doc(source)
    if not isinstance(root, dict):
        raise UsageError(f"{source}: an inventory is a mapping with clusters: (and loki:)", "see docs/inventory.md for an example")
    _keys(doc, root, ("loki", "parallel", "clusters"), "")
    loki = _loki(doc, root, base_dir) if root.get("loki") is not None else None
    parallel = None
    if "parallel" in root:
        parallel = root["parallel"]
        if not isinstance(parallel, int) or isinstance(parallel, bool) or parallel < 1:
            raise doc.fail(root, "parallel", "parallel", f"{parallel!r} is not a whole number of at least 1", "e.g. parallel: 4")
    items = root.get("clusters")
    if not isinstance(items, list) or not items:
        raise doc.fail(root, "clusters" if "clusters" in root else None, "clusters", "needs a list of at least one cluster",
                       "clusters:\n  - name: lab\n    hosts: [lima:lab]")
    clusters = []
    seen: dict[str, str] = {}
    for i, item in enumerate(items):
        c = _cluster(doc, items, i, base_dir)
        if c.name in seen:
            raise doc.fail(items[i], "name", f"clusters[{i}].name", f"{c.name!r} is already the name of the cluster at {seen[c.name]}",
                           "every cluster needs its own name: it becomes the cluster label")
        seen[c.name] = c.where
        clusters.append(c)
    hosts_seen: dict[str, str] = {}
    for c in clusters:
        for h in c.hosts:
            if h != "local" and h in hosts_seen:
                raise UsageError(f"{c.where}: clusters[{clusters.index(c)}].hosts: {h} is also a host of cluster {hosts_seen[h]}",
                                 "a node belongs to one cluster")
            hosts_seen[h] = c.name
    return Inventory(source, tuple(clusters), loki, parallel)


def _loki(doc: _Doc, root: Any, base_dir: str) -> LokiTarget:
    m = root["loki"]
    if not isinstance(m, dict):
        raise doc.fail(root, "loki", "loki", "is not a mapping", "loki:\n  url: https://loki.example.net")
    _keys(doc, m, LOKI_KEYS, "loki")
    if "url" not in m:
        raise doc.fail(root, "loki", "loki.url", "is missing", "give Loki's base URL, e.g. https://loki.example.net")
    url = _string(doc, m, "url", "loki.url")
    if not re.match(r"https?://[^/\s]+", url):
        raise doc.fail(m, "url", "loki.url", f"{url!r} is not an http(s) URL", "e.g. https://loki.example.net:3100")
    values: dict[str, Any] = {"url": url.rstrip("/")}
    for key in LOKI_KEYS[1:]:
        if key in m:
            value = _string(doc, m, key, f"loki.{key}")
            if key.endswith("_env") and not _ENV_NAME.match(value):
                raise doc.fail(m, key, f"loki.{key}", f"{value!r} is not an environment variable name", "e.g. KAUDIT_LOKI_PASSWORD")
            values[key] = _path(value, base_dir) if key.endswith("_file") else value
    for a, b in (("password_file", "password_env"), ("token_file", "token_env")):
        if a in values and b in values:
            raise doc.fail(m, b, f"loki.{b}", f"excludes loki.{a}", "give the secret one way")
    has_password = "password_file" in values or "password_env" in values
    if has_password and "username" not in values:
        raise doc.fail(root, "loki", "loki.username", "is missing: a password needs a user", "add username: NAME")
    if "username" in values and not has_password:
        raise doc.fail(m, "username", "loki.password_file", "is missing: basic auth needs a password", "add password_file: FILE or password_env: VAR")
    if "username" in values and ("token_file" in values or "token_env" in values):
        raise doc.fail(m, "username", "loki", "basic auth and a bearer token exclude each other", "keep one of them")
    return LokiTarget(**values, where=doc.at(root, "loki"))


def _cluster(doc: _Doc, items: list, i: int, base_dir: str) -> ClusterEntry:
    m = items[i]
    path = f"clusters[{i}]"
    if not isinstance(m, dict):
        raise doc.fail(items, i, path, "is not a mapping", "each cluster is a mapping with name: and hosts:")
    _keys(doc, m, CLUSTER_KEYS, path)
    for required in ("name", "hosts"):
        if required not in m:
            raise doc.fail(items, i, f"{path}.{required}", "is missing", "each cluster needs name: and hosts:")
    name = _string(doc, m, "name", f"{path}.name")
    try:
        F.check_cluster_name(name)
    except ValueError as e:
        raise doc.fail(m, "name", f"{path}.name", str(e), "the name becomes the cluster label, e.g. prod-eu") from None
    hosts = m["hosts"]
    if isinstance(hosts, str):
        hosts = [hosts]
    if not isinstance(hosts, list) or not hosts:
        raise doc.fail(m, "hosts", f"{path}.hosts", "needs a list of at least one host", "e.g. hosts: [ssh://root@10.0.0.5]")
    out_hosts = []
    for j, h in enumerate(hosts):
        if not isinstance(h, str) or not h.strip():
            raise doc.fail(hosts if isinstance(m["hosts"], list) else m, j if isinstance(m["hosts"], list) else "hosts",
                           f"{path}.hosts[{j}]", f"{h!r} is not a host", "write lima:NAME, ssh://user@host[:port] or local")
        h = h.strip()
        err = _host_problem(h)
        if err:
            raise doc.fail(hosts if isinstance(m["hosts"], list) else m, j if isinstance(m["hosts"], list) else "hosts",
                           f"{path}.hosts[{j}]", err, "write lima:NAME, ssh://user@host[:port] or local")
        out_hosts.append(h)
    if len(set(out_hosts)) != len(out_hosts):
        raise doc.fail(m, "hosts", f"{path}.hosts", "lists a host twice", "each control-plane node once")
    paths = {}
    for key in ("rootfs", "ssh_key", "known_hosts", "kubeconfig"):
        if key in m:
            paths[key] = _path(_string(doc, m, key, f"{path}.{key}", "write a path"), base_dir)
    if "rootfs" in paths and out_hosts != ["local"]:
        raise doc.fail(m, "rootfs", f"{path}.rootfs", "works only with hosts: [local]", "drop rootfs, or make the hosts [local]")
    accept = m.get("ssh_accept_new_host_key", False)
    if not isinstance(accept, bool):
        raise doc.fail(m, "ssh_accept_new_host_key", f"{path}.ssh_accept_new_host_key", f"{accept!r} is not true or false", "write true or false")
    options = _options(doc, m, path, base_dir) if m.get("options") is not None else {}
    return ClusterEntry(name, tuple(out_hosts), paths.get("rootfs"), paths.get("ssh_key"), paths.get("known_hosts"), accept,
                        paths.get("kubeconfig"), options, doc.at(items, i))


def _host_problem(spec: str) -> Optional[str]:
    from kaudit.core.host_spec import LIMA_NAME, parse_ssh_url

    if spec == "local":
        return None
    if spec.startswith("lima:"):
        return None if LIMA_NAME.match(spec[5:]) else f"{spec[5:]!r} is not a Lima instance name"
    if spec.startswith("ssh://"):
        try:
            parse_ssh_url(spec)
        except UsageError as e:
            return e.message.split(": ", 1)[-1]
        return None
    return f"{spec!r} is not a host kaudit knows"


def _options(doc: _Doc, m: Any, path: str, base_dir: str) -> dict[str, Any]:
    opts = m["options"]
    if not isinstance(opts, dict):
        raise doc.fail(m, "options", f"{path}.options", "is not a mapping", "e.g. options: {collector: alloy}")
    out: dict[str, Any] = {}
    for key in opts:
        where = f"{path}.options.{key}"
        if key not in OPTION_KEYS:
            raise doc.fail(opts, key, where, "unknown option", f"options here are: {', '.join(OPTION_KEYS)}")
        kind, value = OPTION_KEYS[key], opts[key]
        if isinstance(kind, tuple):
            if value not in kind:
                raise doc.fail(opts, key, where, f"{value!r} is not one of: {', '.join(kind)}", f"write one of: {', '.join(kind)}")
        elif kind is bool:
            if not isinstance(value, bool):
                raise doc.fail(opts, key, where, f"{value!r} is not true or false", "write true or false")
        else:
            value = _string(doc, opts, key, where)
            if kind == "path":
                value = _path(value, base_dir)
            elif key == "namespace" and not _NAMESPACE.match(value):
                raise doc.fail(opts, key, where, f"{value!r} is not a namespace name", "lower-case letters, digits and '-'")
        out[key] = value
    return out

"""Record kaudit's audit settings in kubeadm's ClusterConfiguration: text in, text out.

`kubeadm upgrade` regenerates the static pod manifests from the
``kube-system/kubeadm-config`` ConfigMap, so a hand-patched manifest loses its
audit flags on the next upgrade (kubernetes/kubeadm#2157). Writing the same
flags and volumes into ``apiServer.extraArgs`` and ``apiServer.extraVolumes``
keeps them (FACTS.md §2.5).

The two shapes kubeadm uses:

* v1beta3 (and v1beta2): ``extraArgs`` is a map ``{flag: value}``.
* v1beta4: ``extraArgs`` is a list of ``{name, value}`` (a flag may repeat).

``extraVolumes`` has the same shape in both: ``{name, hostPath, mountPath,
readOnly, pathType}``. Everything kaudit does not own is kept as it was
(ruamel round trip), and applying twice changes nothing.
"""

from __future__ import annotations

import io
from typing import Any

from kaudit.core.errors import KauditError

MAP_VERSIONS = ("kubeadm.k8s.io/v1beta2", "kubeadm.k8s.io/v1beta3")
LIST_VERSIONS = ("kubeadm.k8s.io/v1beta4",)


class KubeadmConfigError(KauditError):
    """The ClusterConfiguration is not one kaudit can edit."""


def _yaml():
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=2, offset=0)  # kubeadm's (sigs.k8s.io/yaml) unindented lists
    return yaml


def _load(text: str, source: str):
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        doc = _yaml().load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise KubeadmConfigError(f"{where}: not valid YAML: {e.problem or e}") from None
    except YAMLError as e:
        raise KubeadmConfigError(f"{source}: not valid YAML: {e}") from None
    if not isinstance(doc, dict) or doc.get("kind") != "ClusterConfiguration":
        raise KubeadmConfigError(
            f"{source}: not a kubeadm ClusterConfiguration (kind: {doc.get('kind') if isinstance(doc, dict) else None})",
            "read it with: kubectl -n kube-system get cm kubeadm-config -o jsonpath='{.data.ClusterConfiguration}'",
        )
    version = doc.get("apiVersion")
    if version not in MAP_VERSIONS + LIST_VERSIONS:
        raise KubeadmConfigError(
            f"{source}: apiVersion {version!r} is not one kaudit knows (v1beta2, v1beta3, v1beta4)",
            "skip this step with --no-persist and record the audit flags with your kubeadm configuration",
        )
    return doc


def _dump(doc: Any) -> str:
    buf = io.StringIO()
    _yaml().dump(doc, buf)
    return buf.getvalue()


def _block_map(items: dict | None = None):
    from ruamel.yaml.comments import CommentedMap

    m = CommentedMap(items or {})
    m.fa.set_block_style()
    return m


def _api_server(doc) -> Any:
    api = doc.get("apiServer")
    if api is None or (isinstance(api, dict) and not api):
        # kubeadm writes `apiServer: {}`; grow it as a block mapping
        new = _block_map(dict(api or {}))
        doc["apiServer"] = new
        return new
    if not isinstance(api, dict):
        raise KubeadmConfigError("ClusterConfiguration: apiServer is not a mapping")
    return api


def _volumes(spec) -> list[dict]:
    vols = []
    for m in spec.mounts():
        vols.append({
            "name": m.name,
            "hostPath": m.path,
            "mountPath": m.path,
            "readOnly": m.read_only,
            "pathType": m.host_type,
        })
    return vols


def persist_audit(text: str, spec, *, source: str = "ClusterConfiguration") -> str:
    """ClusterConfiguration text with kaudit's audit flags and volumes in apiServer."""
    doc = _load(text, source)
    before = _plain(doc)
    api = _api_server(doc)
    flags = spec.flags()
    _drop(api, *_foreign(spec, doc, (spec.mode,)))  # a --mode switch: the backend kaudit set up before
    if doc["apiVersion"] in LIST_VERSIONS:
        args = api.get("extraArgs")
        if args is None:
            from ruamel.yaml.comments import CommentedSeq

            args = api["extraArgs"] = CommentedSeq()
        if not isinstance(args, list):
            raise KubeadmConfigError(f"{source}: apiServer.extraArgs must be a list of {{name, value}} in {doc['apiVersion']}")
        for name, value in flags.items():
            same = [a for a in args if isinstance(a, dict) and a.get("name") == name]
            if same:
                for a in same[1:]:
                    args.remove(a)
                if same[0].get("value") != value:
                    same[0]["value"] = value
            else:
                args.append(_block_map({"name": name, "value": value}))
    else:
        args = api.get("extraArgs")
        if args is None or (isinstance(args, dict) and not args):
            args = api["extraArgs"] = _block_map(dict(args or {}))
        if not isinstance(args, dict):
            raise KubeadmConfigError(f"{source}: apiServer.extraArgs must be a map of flag: value in {doc['apiVersion']}")
        for name, value in flags.items():
            if args.get(name) != value:
                args[name] = value
    vols = api.get("extraVolumes")
    if vols is None:
        from ruamel.yaml.comments import CommentedSeq

        vols = api["extraVolumes"] = CommentedSeq()
    if not isinstance(vols, list):
        raise KubeadmConfigError(f"{source}: apiServer.extraVolumes must be a list")
    for want in _volumes(spec):
        have = next((v for v in vols if isinstance(v, dict) and v.get("name") == want["name"]), None)
        if have is None:
            vols.append(_block_map(want))
        else:
            for k, v in want.items():
                if have.get(k) != v:
                    have[k] = v
    # nothing to change: hand back the input itself, so callers can compare text
    return text if _plain(doc) == before else _dump(doc)


def unpersist_audit(text: str, spec, *, source: str = "ClusterConfiguration") -> str:
    """ClusterConfiguration text without kaudit's flags (by name) and volumes (by name)."""
    doc = _load(text, source)
    api = doc.get("apiServer")
    if not isinstance(api, dict):
        return text
    names, vol_names = _foreign(spec, doc, ("log", "webhook"))  # either backend, where kaudit set it up
    if not _drop(api, names | set(spec.flags()), vol_names | {m.name for m in spec.mounts()}):
        return text
    for key in ("extraArgs", "extraVolumes"):
        if key in api and not api[key]:
            del api[key]
    return _dump(doc)


def audit_args(text: str, *, source: str = "ClusterConfiguration") -> dict[str, str]:
    """The audit-* extraArgs of the ClusterConfiguration, as {flag: value}."""
    doc = _load(text, source)
    args = (doc.get("apiServer") or {}).get("extraArgs") or {}
    if isinstance(args, list):
        pairs = [(a.get("name"), a.get("value")) for a in args if isinstance(a, dict)]
    else:
        pairs = list(args.items())
    return {str(k): str(v) for k, v in pairs if str(k).startswith("audit-")}


#: kubeadm's default clusterName (ClusterConfiguration.clusterName)
DEFAULT_CLUSTER_NAME = "kubernetes"


def cluster_name(text: str, *, source: str = "ClusterConfiguration") -> str:
    """ClusterConfiguration.clusterName, or kubeadm's default when it is not set."""
    doc = _load(text, source)
    return str(doc.get("clusterName") or DEFAULT_CLUSTER_NAME)


def _plain(doc: Any) -> Any:
    """A plain-Python deep copy for comparing (ruamel types compare by content too,
    but a copy is immune to the edits that follow)."""
    import json

    return json.loads(json.dumps(doc, default=str))


def _foreign(spec, doc, modes) -> tuple[set, set]:
    """Flag and volume names of the audit backends kaudit set up that `spec` (in each of
    these modes) does not use: see AuditSpec.foreign_backends."""
    import dataclasses

    present = audit_args(_dump(doc)) if doc.get("apiServer") else {}
    flags: set = set()
    volumes: set = set()
    for mode in modes:
        f, v = dataclasses.replace(spec, mode=mode).foreign_backends(present) if hasattr(spec, "foreign_backends") else ({}, [])
        flags |= set(f)
        volumes |= set(v)
    return flags, volumes


def _drop(api, names: set, vol_names: set) -> bool:
    """Remove these extraArgs and extraVolumes by name; True if any went."""
    changed = False
    args = api.get("extraArgs")
    if isinstance(args, list):
        changed = _drop_named(args, names)
    elif isinstance(args, dict):
        for name in [n for n in args if n in names]:
            del args[name]
            changed = True
    vols = api.get("extraVolumes")
    if isinstance(vols, list):
        changed = _drop_named(vols, vol_names) or changed
    return changed


def _drop_named(items: list, names: set) -> bool:
    """Remove the {name: ...} entries whose name is in names, in place; True if any went."""
    keep = [i for i in items if not (isinstance(i, dict) and i.get("name") in names)]
    if len(keep) == len(items):
        return False
    items[:] = keep
    return True

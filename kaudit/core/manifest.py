"""Patch a kube-apiserver static pod manifest for audit logging: text in, text out.

ruamel.yaml composes the manifest into nodes that carry exact source positions.
The patch is then a list of splices on the original text (insert whole lines,
replace one scalar, delete whole lines). Whatever kaudit does not mean to change
keeps every byte: comments, quoting, key order, kubeadm's unindented sequences.
So a fresh kubeadm manifest's diff shows only added lines, and
``unpatch_manifest`` deletes exactly those lines again.

kubeadm's own conventions are kept: flags sorted by name, volumes and
volumeMounts sorted by name (cmd/kubeadm/app/util/arguments.go,
staticpod/utils.go). A flag, mount or volume that already exists is updated in
place, never duplicated.
"""

# size: one algorithm over one text (compose with positions, plan the splices, apply them):
# the locating, splicing and kubeadm-ordering helpers share private state about node positions,
# and split apart they would only pass that state back and forth.

from __future__ import annotations

import difflib
import posixpath
import re
from dataclasses import dataclass, field, replace as _replace
from typing import Callable, Optional

from kaudit.core.errors import KauditError

CONTAINER = "kube-apiserver"


class ManifestError(KauditError):
    """The manifest cannot be patched; the message names where (line/column or field path)."""


@dataclass(frozen=True)
class AuditSpec:
    """What kaudit sets on kube-apiserver. Defaults are the seed's values, except the
    policy path, which lives outside the manifests directory (kubelet reads every
    non-dot file there as a pod manifest)."""

    log_path: str = "/var/log/kubernetes-audit/audit.log"
    policy_path: str = "/etc/kubernetes/audit-policy.yaml"
    maxsize: int = 100
    maxbackup: int = 10
    maxage: int = 7
    extra_flags: tuple[tuple[str, str], ...] = ()
    policy_volume: str = "audit"
    log_volume: str = "audit-log"
    #: which audit backends: "log" (the file), "webhook" (kaudit's receiver), or "both"
    mode: str = "log"
    webhook_config_path: str = "/etc/kubernetes/audit-webhook.kubeconfig"
    webhook_volume: str = "audit-webhook"

    def flags(self) -> dict[str, str]:
        """Flag name (no leading --) -> value, for every audit flag kaudit sets."""
        flags = {"audit-policy-file": self.policy_path}
        if self.mode in ("log", "both"):
            flags.update({
                "audit-log-path": self.log_path,
                "audit-log-maxsize": str(self.maxsize),
                "audit-log-maxbackup": str(self.maxbackup),
                "audit-log-maxage": str(self.maxage),
            })
        if self.mode in ("webhook", "both"):
            # batch is kube-apiserver's default; written out so the manifest says how events leave
            flags.update({"audit-webhook-config-file": self.webhook_config_path, "audit-webhook-mode": "batch"})
        for name, value in self.extra_flags:
            flags[name.lstrip("-")] = value
        return flags

    def foreign_backends(self, present: dict[str, str]) -> tuple[dict[str, str], list[str]]:
        """(flags, volume names) of a backend this mode does not use but kaudit set up before
        (a --mode switch). A backend counts as kaudit's only when its path flag has kaudit's
        value: a webhook or log the user configured on their own is left alone."""
        flags: dict[str, str] = {}
        volumes: list[str] = []
        if self.mode == "webhook" and present.get("audit-log-path") == self.log_path:
            flags.update({k: "" for k in ("audit-log-path", "audit-log-maxsize", "audit-log-maxbackup", "audit-log-maxage")})
            volumes.append(self.log_volume)
        if self.mode == "log" and present.get("audit-webhook-config-file") == self.webhook_config_path:
            flags.update({k: "" for k in ("audit-webhook-config-file", "audit-webhook-mode")})
            volumes.append(self.webhook_volume)
        return flags, volumes

    @property
    def writes_log(self) -> bool:
        return self.mode in ("log", "both")

    @property
    def log_dir(self) -> str:
        return posixpath.dirname(self.log_path.rstrip("/")) or "/"

    def mounts(self) -> list["_Mount"]:
        """The volumes, in the order kaudit owns them: policy file, log directory, webhook kubeconfig."""
        out = [_Mount(self.policy_volume, self.policy_path, read_only=True, host_type="File")]
        if self.mode in ("log", "both"):
            out.append(_Mount(self.log_volume, self.log_dir, read_only=False, host_type="DirectoryOrCreate"))
        if self.mode in ("webhook", "both"):
            out.append(_Mount(self.webhook_volume, self.webhook_config_path, read_only=True, host_type="File"))
        return out


@dataclass(frozen=True)
class _Mount:
    name: str
    path: str  # both the hostPath and the mountPath: the apiserver sees node paths unchanged
    read_only: bool
    host_type: str


# --------------------------------------------------------------------------- public API


def patch_manifest(text: str, spec: AuditSpec, *, source: str = "<manifest>") -> str:
    """The manifest with kaudit's audit flags, mounts and volumes set. Flags and volumes
    kaudit sets only in another --mode (a switch from log to webhook) are taken out."""
    old = _Manifest(text, source)
    stale_flags, stale_volumes = spec.foreign_backends(old.flag_values())
    if stale_flags:
        old.remove_flags(stale_flags)
        old.remove_mounts(stale_volumes)
        text = old.render()
    doc = _Manifest(text, source)
    doc.set_flags(spec.flags())
    doc.set_mounts(spec.mounts())
    out = doc.render()
    _check_patched(out, spec, source)
    return out


def unpatch_manifest(text: str, spec: AuditSpec, *, source: str = "<manifest>") -> str:
    """The manifest without kaudit's flags (by name), mounts and volumes (by name).

    On a manifest kaudit patched, this deletes exactly the lines the patch added.
    Values the patch changed in place (a flag that existed before) cannot be
    restored; such a flag is removed like the others.
    """
    doc = _Manifest(text, source)
    flags, volumes = spec.flags(), [m.name for m in spec.mounts()]
    for mode in ("log", "webhook"):  # the other backend too, where kaudit set it up
        other_flags, other_volumes = _replace(spec, mode=mode).foreign_backends(doc.flag_values())
        flags = {**flags, **other_flags}
        volumes += other_volumes
    doc.remove_flags(flags)
    doc.remove_mounts(volumes)
    return doc.render()


def audit_flags_in(text: str, *, source: str = "<manifest>") -> dict[str, str]:
    """The --audit-* flags the manifest's kube-apiserver carries (name without --)."""
    doc = _Manifest(text, source)
    return {name: value for name, value in doc.flag_values().items() if name.startswith("audit-")}


def audit_mounts_in(text: str, *, source: str = "<manifest>") -> dict[str, dict]:
    """volumeMounts and hostPath volumes of the kube-apiserver pod, by name:
    {name: {"mountPath", "readOnly", "hostPath", "type"}} (absent keys are None)."""
    doc = _Manifest(text, source)
    return doc.mount_table()


def manifest_diff(before: str, after: str, fromfile: str, tofile: str) -> str:
    """Unified diff text ('' if equal), marking a missing final newline as diff does."""
    if before == after:
        return ""

    def lines(text: str) -> list[str]:
        out = text.splitlines(keepends=True)
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n\\ No newline at end of file\n"
        return out

    return "".join(difflib.unified_diff(lines(before), lines(after), fromfile, tofile))


# --------------------------------------------------------------------------- YAML nodes


def _compose(text: str, source: str):
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="rt")
    try:
        docs = list(yaml.compose_all(text))
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = " ".join(str(p) for p in (e.context, e.problem) if p)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ManifestError(
            f"{where}: not valid YAML: {problem}",
            "fix the YAML at that position (kubeadm writes plain block YAML indented with spaces)",
        ) from None
    except YAMLError as e:
        raise ManifestError(f"{source}: not valid YAML: {e}") from None
    docs = [d for d in docs if d is not None]
    if not docs:
        raise ManifestError(
            f"{source}: is empty, not a kube-apiserver Pod manifest",
            "on a kubeadm node it is /etc/kubernetes/manifests/kube-apiserver.yaml; "
            "if that file was emptied, restore it from /etc/kubernetes/tmp/ (kaudit's and kubeadm's backups)",
        )
    if len(docs) > 1:
        raise ManifestError(
            f"{source}:{docs[1].start_mark.line + 1}: holds {len(docs)} YAML documents; "
            "a static pod manifest holds one Pod",
            "pass the kube-apiserver manifest alone (/etc/kubernetes/manifests/kube-apiserver.yaml)",
        )
    _refuse_duplicate_keys(docs[0], source)
    return docs[0]


def _refuse_duplicate_keys(node, source: str) -> None:
    """ruamel's composer keeps both copies of a repeated key; which one counts would be
    anyone's guess, so name the second one."""
    stack = [node]
    while stack:
        n = stack.pop()
        if _is_map(n):
            seen = set()
            for k, v in n.value:
                if _is_scalar(k):
                    if k.value in seen:
                        raise ManifestError(
                            f"{source}:{k.start_mark.line + 1}:{k.start_mark.column + 1}: duplicate key {k.value!r}",
                            "delete one of the two",
                        )
                    seen.add(k.value)
                stack.append(v)
        elif _is_seq(n):
            stack.extend(n.value)


def _is_map(node) -> bool:
    return type(node).__name__ == "MappingNode"


def _is_seq(node) -> bool:
    return type(node).__name__ == "SequenceNode"


def _is_scalar(node) -> bool:
    return type(node).__name__ == "ScalarNode"


def _get(mapping, key: str):
    """(key_node, value_node) of key in a MappingNode, or None."""
    for k, v in mapping.value:
        if _is_scalar(k) and k.value == key:
            return k, v
    return None


def _str(node) -> Optional[str]:
    return node.value if node is not None and _is_scalar(node) else None


def _end(node) -> int:
    """Index just past the last character that belongs to node. A block collection's
    own end mark lies at the next token (maybe lines further on), so use its last leaf."""
    if _is_scalar(node) or node.flow_style or not node.value:
        return node.end_mark.index
    last = node.value[-1]
    return _end(last[1] if isinstance(last, tuple) else last)


_RESOLVES = re.compile(
    r"(?i)(true|false|yes|no|on|off|y|n|null|~|[-+]?(\d[\d_]*)?\.?\d[\d_]*(e[-+]?\d+)?|0x[0-9a-f]+|0o[0-7]+|[-+]?\.(inf|nan))"
)
_PLAIN = re.compile(r"(--)?[A-Za-z0-9/_.][A-Za-z0-9/_.=:@+~%-]*")


def _scalar_text(value: str, style: Optional[str] = None) -> str:
    """YAML text for a string scalar: plain where that reads back as the same string,
    else single-quoted. An existing quoting style is kept."""
    if style == '"':
        import json

        return json.dumps(value)
    if style != "'" and _PLAIN.fullmatch(value) and not _RESOLVES.fullmatch(value) and ": " not in value:
        return value
    return "'" + value.replace("'", "''") + "'"


# --------------------------------------------------------------------------- the editor


@dataclass
class _Edit:
    start: int
    end: int
    text: str
    order: int


@dataclass
class _Manifest:
    text: str
    source: str
    edits: list[_Edit] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Work on text with a final newline; render() strips it again if the input had none.
        self.had_newline = self.text.endswith("\n") or self.text == ""
        if not self.had_newline:
            self.text += "\n"
        self.nl = "\r\n" if "\r\n" in self.text else "\n"
        self.root = _compose(self.text, self.source)
        self._find_container()

    # -- locating ------------------------------------------------------------
    def where(self, node) -> str:
        return f"{self.source}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"

    def _find_container(self) -> None:
        root = self.root
        if not _is_map(root):
            raise ManifestError(f"{self.where(root)}: not a Pod: the document is not a mapping")
        kind = _get(root, "kind")
        if kind is None or _str(kind[1]) != "Pod":
            at = self.where(kind[1]) if kind else self.source
            found = f"kind is {_str(kind[1])!r}" if kind else "no kind field"
            raise ManifestError(
                f"{at}: not a Pod ({found})",
                "pass the kube-apiserver static pod manifest, /etc/kubernetes/manifests/kube-apiserver.yaml",
            )
        spec = _get(root, "spec")
        if spec is None or not _is_map(spec[1]):
            raise ManifestError(f"{self.source}: spec: missing or not a mapping")
        self.spec = spec[1]
        containers = _get(self.spec, "containers")
        if containers is None or not _is_seq(containers[1]):
            raise ManifestError(f"{self.where(self.spec)}: spec.containers: missing or not a list")
        names = []
        self.container = None
        for i, c in enumerate(containers[1].value):
            if not _is_map(c):
                continue
            name = _str((_get(c, "name") or (None, None))[1])
            names.append(name or f"[{i}]")
            if name == CONTAINER:
                self.container = c
                self.container_index = i
                break
        if self.container is None:
            raise ManifestError(
                f"{self.where(containers[1])}: spec.containers has no container named {CONTAINER}"
                f" (found: {', '.join(str(n) for n in names) or 'none'})",
                "pass the kube-apiserver manifest, not another static pod",
            )
        self.cpath = f"spec.containers[{self.container_index}]"
        if self.container.flow_style:
            raise ManifestError(
                f"{self.where(self.container)}: {self.cpath} is a flow mapping ({{...}}); "
                "kaudit edits block-style manifests as kubeadm writes them"
            )

    def _arg_lists(self) -> list[tuple[str, object]]:
        lists = []
        for key in ("command", "args"):
            kv = _get(self.container, key)
            if kv is None or (_is_scalar(kv[1]) and kv[1].value in ("", "~", "null")):
                continue
            if not _is_seq(kv[1]):
                raise ManifestError(f"{self.where(kv[1])}: {self.cpath}.{key}: not a list")
            lists.append((key, kv[1]))
        if not lists:
            raise ManifestError(
                f"{self.where(self.container)}: {self.cpath}: has neither command: nor args:",
                "kubeadm writes the flags under command:, after kube-apiserver",
            )
        return lists

    def _flags(self) -> list[tuple[str, object, int, str, str]]:
        """(list key, seq node, item index, name, value) of every --flag item."""
        found = []
        for key, seq in self._arg_lists():
            for i, item in enumerate(seq.value):
                s = _str(item)
                if s is None or not s.startswith("--"):
                    continue
                name, eq, value = s[2:].partition("=")
                if not eq:
                    following = _str(seq.value[i + 1]) if i + 1 < len(seq.value) else None
                    if name.startswith("audit-") and following is not None and not following.startswith("-"):
                        raise ManifestError(
                            f"{self.where(item)}: {self.cpath}.{key}[{i}]: --{name} has its value in the next "
                            "list item; kaudit edits flags written as --name=value",
                            f"write it as --{name}={following}",
                        )
                    value = "true"
                found.append((key, seq, i, name, value))
        return found

    def flag_values(self) -> dict[str, str]:
        return {name: value for _, _, _, name, value in self._flags()}

    # -- text positions --------------------------------------------------------
    def line_start(self, index: int) -> int:
        return self.text.rfind("\n", 0, index) + 1

    def line_end(self, end: int) -> int:
        """Start of the line after the one holding character end-1."""
        nl = self.text.find("\n", max(end - 1, 0))
        return len(self.text) if nl < 0 else nl + 1

    def item_line(self, item) -> int:
        """Start of the line holding the '-' of a block sequence item."""
        start = item.start_mark.index
        ls = self.line_start(start)
        prefix = self.text[ls:start]
        if re.fullmatch(r"[ \t]*-[ \t]+", prefix):
            return ls
        if prefix.strip() == "" and ls > 0:
            prev = self.line_start(ls - 1)
            if re.fullmatch(r"[ \t]*-[ \t]*(#.*)?\r?\n", self.text[prev:ls]):
                return prev
        raise ManifestError(f"{self.where(item)}: list item laid out in a way kaudit does not edit")

    def item_prefix(self, seq, key_column: int) -> str:
        """'    - ' as used by the items of seq, or for a new list under a key at key_column,
        indented the way the document's containers: list is."""
        for item in seq.value if seq is not None else ():
            start = item.start_mark.index
            prefix = self.text[self.line_start(start) : start]
            if re.fullmatch(r"[ \t]*-[ \t]+", prefix):
                return prefix
        containers_key, containers = _get(self.spec, "containers")
        offset = 0
        if not containers.flow_style and containers.value:
            offset = max(containers.value[0].start_mark.column - 2 - containers_key.start_mark.column, 0)
        return " " * (key_column + offset) + "- "

    def before_comments(self, line_start: int, floor: int) -> int:
        """Move an insertion point up over the comment lines directly above it, so a new
        item never separates an existing item from the comment written above it."""
        pos = line_start
        while pos > floor:
            prev = self.line_start(pos - 1)
            if self.text[prev:pos].strip().startswith("#"):
                pos = prev
            else:
                break
        return pos

    # -- edits -----------------------------------------------------------------
    def _add(self, start: int, end: int, text: str) -> None:
        self.edits.append(_Edit(start, end, text, len(self.edits)))

    def replace(self, node, text: str) -> None:
        self._add(node.start_mark.index, node.end_mark.index, text)

    def render(self) -> str:
        out = self.text
        # Apply from the end so earlier positions stay valid; equal positions keep call order.
        for e in sorted(self.edits, key=lambda e: (e.start, e.order), reverse=True):
            out = out[: e.start] + e.text + out[e.end :]
        if not self.had_newline and out.endswith("\n"):
            out = out[:-1]
        return out

    # -- sorted insertion into a list ---------------------------------------------
    def insert_sorted(
        self,
        seq,
        key_of: Callable[[object], Optional[str]],
        new: list[tuple[str, list[str], str]],
        parent_key_node,
        floor: int,
    ) -> None:
        """Insert items into seq where kubeadm's sort by name puts them.

        new holds (sort key, block lines without the dash prefix, flow text). Only the
        leading run of items that is already sorted counts: kubeadm appends its
        v1beta4 extraArgs after the sorted defaults, and kaudit's flags belong
        among the defaults, so nothing existing moves.
        """
        new = sorted(new, key=lambda n: n[0])
        keyed = [(i, key_of(item)) for i, item in enumerate(seq.value)]
        keyed = [(i, k) for i, k in keyed if k is not None]
        run: list[tuple[int, str]] = []
        for i, k in keyed:
            if run and k < run[-1][1]:
                break
            run.append((i, k))
        groups: dict[Optional[int], list] = {}
        for n in new:
            before = next((i for i, k in run if k > n[0]), None)
            groups.setdefault(before, []).append(n)
        after_index = run[-1][0] if run else len(seq.value) - 1
        if seq.flow_style:
            for before, items in groups.items():
                if not seq.value:
                    self._add(seq.start_mark.index + 1, seq.start_mark.index + 1, ", ".join(n[2] for n in items))
                elif before is not None:
                    pos = seq.value[before].start_mark.index
                    self._add(pos, pos, "".join(n[2] + ", " for n in items))
                else:
                    pos = _end(seq.value[after_index])
                    self._add(pos, pos, "".join(", " + n[2] for n in items))
            return
        prefix = self.item_prefix(seq, parent_key_node.start_mark.column)
        pad = " " * len(prefix)
        for before, items in groups.items():
            text = "".join(
                "".join((prefix if j == 0 else pad) + line + self.nl for j, line in enumerate(n[1])) for n in items
            )
            if before is not None:
                item_ls = self.item_line(seq.value[before])
                prev_end = _end(seq.value[before - 1]) if before > 0 else floor
                pos = self.before_comments(item_ls, self.line_end(prev_end) if before > 0 else floor)
            else:
                pos = self.line_end(_end(seq.value[after_index]))
            self._add(pos, pos, text)

    def insert_key(self, mapping, key: str, value_lines: list[str], *, inline: Optional[str] = None) -> None:
        """Add key to a block mapping: in sorted position if its keys are sorted, else last.
        value_lines are the lines below 'key:' (already indented relative to the key), or
        inline is the value on the key's own line."""
        if mapping.flow_style:
            if inline is None:
                raise ManifestError(f"{self.where(mapping)}: flow mapping ({{...}}) where kaudit must add {key}:")
            pos = mapping.end_mark.index - 1
            self._add(pos, pos, f", {key}: {inline}")
            return
        keys = [(k.value if _is_scalar(k) else "", k, v) for k, v in mapping.value]
        is_sorted = all(a[0] <= b[0] for a, b in zip(keys, keys[1:]))
        col = mapping.start_mark.column
        text = " " * col + key + ":" + (f" {inline}" if inline is not None else "") + self.nl
        text += "".join(line + self.nl for line in value_lines)
        after = next((k for k in keys if k[0] > key), None) if is_sorted else None
        if after is not None:
            kstart = after[1].start_mark.index
            ls = self.line_start(kstart)
            if self.text[ls:kstart].strip() == "":
                pos = ls
            else:  # first key of a '- key:' item: put the new key right after the dash
                self._add(kstart, kstart, text[col:] + " " * col)
                return
        else:
            pos = self.line_end(_end(keys[-1][2]))
        self._add(pos, pos, text)

    def set_key(self, mapping, key: str, value: str, path: str) -> None:
        """Make mapping[key] the scalar value (text rendered by _scalar_text)."""
        kv = _get(mapping, key)
        if kv is None:
            self.insert_key(mapping, key, [], inline=value if value in ("true", "false") else _scalar_text(value))
            return
        node = kv[1]
        if not _is_scalar(node):
            raise ManifestError(f"{self.where(node)}: {path}.{key}: expected a plain value")
        if value in ("true", "false"):
            if node.value.lower() != value:
                self.replace(node, value)
        elif node.value != value:
            self.replace(node, _scalar_text(value, node.style))

    # -- flags -------------------------------------------------------------------
    def set_flags(self, flags: dict[str, str]) -> None:
        existing = {}
        for key, seq, i, name, value in self._flags():
            item = seq.value[i]
            if name in flags and name not in existing:
                existing[name] = item
                want = f"--{name}={flags[name]}"
                if item.value != want:
                    self.replace(item, _scalar_text(want, item.style))
            elif name in flags and item.value != f"--{name}={flags[name]}":
                raise ManifestError(
                    f"{self.where(item)}: {self.cpath}: --{name} appears twice with different values",
                    "delete one of them; kube-apiserver uses the last",
                )
        # New flags go into args: when the container has it, else after kube-apiserver in command:.
        lists = self._arg_lists()
        key, seq = lists[-1]
        key_node = _get(self.container, key)[0]
        new = [
            (name, [_scalar_text(f"--{name}={value}")], _scalar_text(f"--{name}={value}"))
            for name, value in flags.items()
            if name not in existing
        ]
        if new:
            self.insert_sorted(seq, _flag_key, new, key_node, self.line_end(key_node.end_mark.index))

    def remove_flags(self, flags: dict[str, str]) -> None:
        doomed: dict[int, tuple] = {}
        for key, seq, i, name, value in self._flags():
            if name in flags:
                doomed.setdefault(id(seq), (key, seq, set()))[2].add(i)
        for key, seq, idx in doomed.values():
            self.remove_items(self.container, key, seq, idx)

    def remove_items(self, mapping, key: str, seq, indexes: set[int]) -> None:
        kept = [item for i, item in enumerate(seq.value) if i not in indexes]
        if seq.flow_style:
            texts = [self.text[item.start_mark.index : _end(item)] for item in kept]
            self.replace(seq, "[" + ", ".join(texts) + "]")
            return
        if not kept:
            # The whole key goes, as it did not exist before kaudit added it.
            key_node = _get(mapping, key)[0]
            self._add(self.line_start(key_node.start_mark.index), self.line_end(_end(seq)), "")
            return
        for i in sorted(indexes):
            item = seq.value[i]
            self._add(self.item_line(item), self.line_end(_end(item)), "")

    # -- mounts and volumes ------------------------------------------------------------
    def _named_items(self, mapping, key: str):
        kv = _get(mapping, key)
        if kv is None:
            return None, None, []
        k, seq = kv
        if not _is_seq(seq):
            path = f"{self.cpath}.{key}" if mapping is self.container else f"spec.{key}"
            raise ManifestError(f"{self.where(seq)}: {path}: not a list", f"write it as a list, or {key}: []")
        return k, seq, [(i, item, _str((_get(item, "name") or (None, None))[1]) if _is_map(item) else None)
                        for i, item in enumerate(seq.value)]

    def mount_table(self) -> dict[str, dict]:
        table: dict[str, dict] = {}
        _, _, mounts = self._named_items(self.container, "volumeMounts")
        for _, item, name in mounts:
            if name is not None:
                table.setdefault(name, {"mountPath": None, "readOnly": None, "hostPath": None, "type": None})
                table[name]["mountPath"] = _str((_get(item, "mountPath") or (None, None))[1])
                table[name]["readOnly"] = _str((_get(item, "readOnly") or (None, None))[1])
        _, _, volumes = self._named_items(self.spec, "volumes")
        for _, item, name in volumes:
            if name is None:
                continue
            entry = table.setdefault(name, {"mountPath": None, "readOnly": None, "hostPath": None, "type": None})
            hp = _get(item, "hostPath")
            if hp and _is_map(hp[1]):
                entry["hostPath"] = _str((_get(hp[1], "path") or (None, None))[1])
                entry["type"] = _str((_get(hp[1], "type") or (None, None))[1])
        return table

    def set_mounts(self, wanted: list[_Mount]) -> None:
        mkey, mseq, mounts = self._named_items(self.container, "volumeMounts")
        vkey, vseq, volumes = self._named_items(self.spec, "volumes")
        new_mounts, new_volumes = [], []
        for m in wanted:
            # The mount is found by name, else adopted by mountPath: two mounts of one path are invalid.
            hit = next((it for it in mounts if it[2] == m.name), None)
            if hit is None:
                hit = next(
                    (it for it in mounts if _is_map(it[1]) and _str((_get(it[1], "mountPath") or (None, None))[1]) == m.path),
                    None,
                )
            name = m.name
            if hit is None:
                lines = [f"mountPath: {_scalar_text(m.path)}", f"name: {_scalar_text(m.name)}"]
                flow = f"mountPath: {_scalar_text(m.path)}, name: {_scalar_text(m.name)}"
                if m.read_only:
                    lines.append("readOnly: true")
                    flow += ", readOnly: true"
                new_mounts.append((m.name, lines, "{" + flow + "}"))
            else:
                i, item, name = hit
                path = f"{self.cpath}.volumeMounts[{i}]"
                self.set_key(item, "mountPath", m.path, path)
                ro = _get(item, "readOnly")
                if m.read_only:
                    self.set_key(item, "readOnly", "true", path)
                elif ro is not None:
                    self.set_key(item, "readOnly", "false", path)
            vhit = next((it for it in volumes if it[2] == name), None)
            if vhit is None:
                step = self._nested_indent(volumes)
                lines = [
                    "hostPath:",
                    " " * step + f"path: {_scalar_text(m.path)}",
                    " " * step + f"type: {m.host_type}",
                    f"name: {_scalar_text(name)}",
                ]
                flow = f"{{hostPath: {{path: {_scalar_text(m.path)}, type: {m.host_type}}}, name: {_scalar_text(name)}}}"
                new_volumes.append((name, lines, flow))
            else:
                i, item, _ = vhit
                path = f"spec.volumes[{i}]"
                hp = _get(item, "hostPath")
                if hp is None or not _is_map(hp[1]):
                    raise ManifestError(
                        f"{self.where(item)}: {path} ({name}) is not a hostPath volume",
                        "rename that volume or choose another name for kaudit's volume",
                    )
                self.set_key(hp[1], "path", m.path, f"{path}.hostPath")
                self.set_key(hp[1], "type", m.host_type, f"{path}.hostPath")
        if new_mounts:
            self._add_named(self.container, "volumeMounts", mkey, mseq, new_mounts)
        if new_volumes:
            self._add_named(self.spec, "volumes", vkey, vseq, new_volumes)

    def _nested_indent(self, volumes) -> int:
        for _, item, _ in volumes:
            hp = _get(item, "hostPath") if _is_map(item) else None
            if hp and _is_map(hp[1]) and not hp[1].flow_style:
                return max(hp[1].start_mark.column - hp[0].start_mark.column, 1)
        return 2

    def _add_named(self, mapping, key: str, key_node, seq, new: list) -> None:
        if seq is not None:
            self.insert_sorted(seq, _name_key, new, key_node, self.line_end(key_node.end_mark.index))
            return
        # No such list yet: add the key with the items under it, kubeadm style.
        prefix = self.item_prefix(None, mapping.start_mark.column)
        pad = " " * len(prefix)
        lines = []
        for _, item_lines, _ in sorted(new, key=lambda n: n[0]):
            lines += [(prefix if j == 0 else pad) + line for j, line in enumerate(item_lines)]
        self.insert_key(mapping, key, lines)

    def remove_mounts(self, names: list[str]) -> None:
        for mapping, key in ((self.container, "volumeMounts"), (self.spec, "volumes")):
            _, seq, items = self._named_items(mapping, key)
            idx = {i for i, _, name in items if name in names}
            if idx:
                self.remove_items(mapping, key, seq, idx)


def _flag_key(item) -> Optional[str]:
    s = _str(item)
    if s is None or not s.startswith("--"):
        return None
    return s[2:].partition("=")[0]


def _name_key(item) -> Optional[str]:
    if not _is_map(item):
        return None
    return _str((_get(item, "name") or (None, None))[1])


def _check_patched(out: str, spec: AuditSpec, source: str) -> None:
    """Read the result back: a patch that does not say what kaudit meant is a bug, not output."""
    doc = _Manifest(out, source)
    flags = doc.flag_values()
    table = doc.mount_table()
    problems = [f"--{k}" for k, v in spec.flags().items() if flags.get(k) != v]
    for m in spec.mounts():
        entry = next((e for e in table.values() if e["mountPath"] == m.path), None)
        if entry is None or entry["hostPath"] != m.path or entry["type"] != m.host_type:
            problems.append(f"volume for {m.path}")
    paths = [e["mountPath"] for e in table.values() if e["mountPath"]]
    if len(paths) != len(set(paths)):
        problems.append("a mountPath mounted twice")
    if problems:
        raise ManifestError(
            f"{source}: kaudit could not patch this manifest cleanly ({', '.join(problems)})",
            "report this with the manifest attached; meanwhile patch it by hand",
        )

"""`kaudit patch-manifest` and `kaudit diff-manifest`: the audit patch of the
kube-apiserver static pod manifest, offline or read from a node."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from kaudit.cli.audit_options import (
    AuditFlagOpt,
    AuditLogPathOpt,
    MaxAgeOpt,
    MaxBackupOpt,
    MaxSizeOpt,
    ModeOpt,
    PolicyPathOpt,
)
from kaudit.core.audit_settings import (
    DEFAULT_LOG_PATH,
    DEFAULT_MAXAGE,
    DEFAULT_MAXBACKUP,
    DEFAULT_MAXSIZE,
    DEFAULT_POLICY_PATH,
    audit_spec_from_options,
    policy_path_warning,
)
from kaudit.cli.options import AcceptNewHostKeyOpt, HostOpt, KnownHostsOpt, RootfsOpt, SshKeyOpt
from kaudit.engine.targets import HostOptions
from kaudit.core.errors import ExitCode, KauditError, UsageError
from kaudit.core.node_paths import APISERVER_MANIFEST


def _read_text(path: str) -> str:
    """A local file's text, or stdin for '-'."""
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as e:
        raise KauditError(f"cannot read {path}: {e.strerror}", "check the path (and sudo for /etc/kubernetes)") from None
    return _decode(data, path)


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise KauditError(f"{where}: not UTF-8 text (byte {e.start})", "is this a kube-apiserver manifest?") from None


def _write_local(path: str, text: str) -> None:
    """Atomic write through the host seam: dot-prefixed temp beside it, fsync, rename; keeps the mode."""
    from kaudit.adapters.hosts.local import LocalHost

    target = Path(path)
    try:
        mode = target.stat().st_mode & 0o7777
    except OSError:
        mode = 0o600  # kubeadm writes manifests 0600
    try:
        LocalHost().write_file(str(target), text.encode("utf-8"), mode=mode)
    except KauditError as e:
        raise KauditError(e.message, "choose a writable path; the original file is unchanged") from None


def patch_manifest(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(metavar="FILE", help="kube-apiserver manifest, or - for stdin.")],
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Write the result to OUT instead of stdout.", metavar="OUT")] = None,
    in_place: Annotated[bool, typer.Option("--in-place", help="Rewrite FILE atomically (same mode); nothing is written if nothing changes.")] = False,
    remove: Annotated[bool, typer.Option("--remove", help="Take kaudit's flags, mounts and volumes out again.")] = False,
    audit_log_path: AuditLogPathOpt = DEFAULT_LOG_PATH,
    policy_path: PolicyPathOpt = DEFAULT_POLICY_PATH,
    maxsize: MaxSizeOpt = DEFAULT_MAXSIZE,
    maxbackup: MaxBackupOpt = DEFAULT_MAXBACKUP,
    maxage: MaxAgeOpt = DEFAULT_MAXAGE,
    audit_flag: AuditFlagOpt = None,
    mode: ModeOpt = "log",
) -> int:
    """Apply the audit patch to a kube-apiserver static pod manifest, offline.

    Sets the audit flags, a read-only mount of the policy file and a writable
    mount of the log directory, in kubeadm's order; everything else is kept
    byte for byte. Running it twice changes nothing the second time.

    \b
    Examples:
      kaudit patch-manifest kube-apiserver.yaml -o patched.yaml
      kaudit patch-manifest kube-apiserver.yaml --in-place
      kaudit patch-manifest kube-apiserver.yaml --remove
    """
    from kaudit.cli import state
    from kaudit.core.manifest import manifest_diff, patch_manifest as patch, unpatch_manifest

    ui = state(ctx).ui
    if output and in_place:
        raise UsageError("-o/--output and --in-place exclude each other", "choose one")
    if in_place and file == "-":
        raise UsageError("--in-place needs a FILE, not stdin", "use -o OUT")
    spec = audit_spec_from_options(audit_log_path, policy_path, maxsize, maxbackup, maxage, audit_flag, mode)
    if not remove and (warning := policy_path_warning(spec.policy_path)):
        ui.warn(warning)
    source = "<stdin>" if file == "-" else file
    text = _read_text(file)
    result = unpatch_manifest(text, spec, source=source) if remove else patch(text, spec, source=source)
    changed = result != text
    changes = sum(1 for line in manifest_diff(text, result, "a", "b").splitlines()
                  if line[:1] in "+-" and not line.startswith(("+++", "---")))
    what = "removed kaudit's audit patch from" if remove else "patched"
    if in_place or output:
        target = file if in_place else output
        if in_place and not changed:
            ui.skip(f"{file}: nothing to change" + (" (no kaudit patch in it)" if remove else " (already patched)"))
            return ExitCode.OK
        _write_local(target, result)
        ui.ok(f"{what} {source} → {target} ({changes} lines changed)" if changed else f"{source}: nothing to change; wrote {target}")
    else:
        sys.stdout.write(result)
        sys.stdout.flush()
        ui.detail(f"{what} {source}: {changes} lines changed")
    return ExitCode.OK


def diff_manifest(
    ctx: typer.Context,
    manifest: Annotated[
        Optional[str],
        typer.Option("--manifest", "-m", metavar="FILE|-", help=f"Local manifest to diff (- for stdin) instead of the node's {APISERVER_MANIFEST}."),
    ] = None,
    exit_code: Annotated[bool, typer.Option("--exit-code", help="Exit 3 when changes are pending, 0 when none are.")] = False,
    remove: Annotated[bool, typer.Option("--remove", help="Show what --remove would take out instead.")] = False,
    host: HostOpt = None,
    rootfs: RootfsOpt = None,
    ssh_key: SshKeyOpt = None,
    accept_new_host_key: AcceptNewHostKeyOpt = False,
    known_hosts: KnownHostsOpt = None,
    audit_log_path: AuditLogPathOpt = DEFAULT_LOG_PATH,
    policy_path: PolicyPathOpt = DEFAULT_POLICY_PATH,
    maxsize: MaxSizeOpt = DEFAULT_MAXSIZE,
    maxbackup: MaxBackupOpt = DEFAULT_MAXBACKUP,
    maxage: MaxAgeOpt = DEFAULT_MAXAGE,
    audit_flag: AuditFlagOpt = None,
    inventory: Annotated[
        Optional[Path], typer.Option("--file", "-f", metavar="FILE", help="Diff every node of every cluster of an inventory (docs/inventory.md).", show_default=False)
    ] = None,
    parallel: Annotated[Optional[int], typer.Option("--parallel", min=1, help="With -f: how many clusters at once.", show_default=False)] = None,
    mode: ModeOpt = "log",
) -> int:
    """Show, as a unified diff, what the audit patch changes in the apiserver manifest.

    Reads /etc/kubernetes/manifests/kube-apiserver.yaml from the node (--host),
    or a local file with --manifest. The diff goes to stdout (coloured on a
    terminal only); nothing is written anywhere.

    \b
    Examples:
      kaudit diff-manifest --host lima:k8s
      kaudit diff-manifest --manifest kube-apiserver.yaml --exit-code
      kaudit diff-manifest -f clusters.yaml
    """
    from kaudit.cli import state
    from kaudit.core.manifest import manifest_diff, patch_manifest as patch, unpatch_manifest
    from kaudit.engine.ui import colour_diff

    ui = state(ctx).ui
    spec = audit_spec_from_options(audit_log_path, policy_path, maxsize, maxbackup, maxage, audit_flag, mode)
    if manifest is not None and (host or rootfs):
        raise UsageError("--manifest reads a local file; it excludes --host and --rootfs")
    if not remove and (warning := policy_path_warning(spec.policy_path)):
        ui.warn(warning)

    def one_node(node, prefix: str = "") -> list[tuple[str, str]]:
        """(label, diff) of one node's manifest ('' when nothing is pending)."""
        label = f"{prefix}{node.name}:{APISERVER_MANIFEST}"
        text = _decode(node.read_file(APISERVER_MANIFEST), label)
        after = unpatch_manifest(text, spec, source=label) if remove else patch(text, spec, source=label)
        return [(label, manifest_diff(text, after, label, f"{label} (kaudit)"))]

    if inventory is not None:
        from kaudit.engine.fleet import diff_inventory

        if manifest is not None or host or rootfs:
            raise UsageError("-f takes the nodes from the inventory", "leave out --manifest, --host and --rootfs")
        return diff_inventory(ui, inventory, one_node, parallel=parallel, exit_code=exit_code)

    sources: list[tuple[str, str]] = []  # (label, text)
    if manifest is not None:
        sources.append(("<stdin>" if manifest == "-" else manifest, _read_text(manifest)))
    else:
        options = HostOptions.build(host, rootfs, ssh_key, accept_new_host_key, known_hosts)
        for spec_name in options.hosts:
            with options.open(spec_name) as node:
                label = APISERVER_MANIFEST if len(options.hosts) == 1 else f"{node.name}:{APISERVER_MANIFEST}"
                try:
                    data = node.read_file(APISERVER_MANIFEST)
                except KauditError as e:
                    raise KauditError(
                        e.message,
                        e.hint or "is this a kubeadm control-plane node, and may this user read the file (sudo)? "
                        "Or diff a copy with --manifest FILE",
                    ) from None
                sources.append((label, _decode(data, f"{node.name}:{APISERVER_MANIFEST}")))

    pending = False
    for label, text in sources:
        after = unpatch_manifest(text, spec, source=label) if remove else patch(text, spec, source=label)
        diff = manifest_diff(text, after, label, f"{label} (kaudit)")
        if diff:
            pending = True
            sys.stdout.write(colour_diff(diff, sys.stdout))
            sys.stdout.flush()
        else:
            ui.ok(f"{label}: no changes pending" + ("" if remove else " (audit patch already applied)"))
    return ExitCode.CHANGES_PENDING if (pending and exit_code) else ExitCode.OK


def register(app: typer.Typer) -> None:
    app.command("patch-manifest")(patch_manifest)
    app.command("diff-manifest")(diff_manifest)

"""The `apiserver` phase: patch kube-apiserver's static pod the way kubeadm upgrades it.

FACTS.md §2.2–2.4, in order:

1. Read the manifest; if the patch changes nothing, stop ("already configured").
2. Record the mirror pod's ``kubernetes.io/config.hash`` (kubeadm's
   WaitForStaticPodSingleHash).
3. Back up the manifest to ``/etc/kubernetes/tmp/kaudit-backup-<timestamp>/``:
   never into the manifests directory, where kubelet would run the copy as a
   second apiserver.
4. Write the new manifest through a dot-prefixed temp file and a rename, so
   kubelet never reads half a file.
5. Poll about twice a second, tolerating API errors while the apiserver
   restarts, until the hash changed, the pod is Ready, ``/readyz`` answers ok
   and the audit log exists.
6. On timeout or a crash loop: show the container log and the kubelet journal,
   restore the backup, wait for the old apiserver, and fail with a hint.

``kaudit down`` runs the same sequence with the patch taken out (:func:`run_down`).
"""

from __future__ import annotations

import posixpath
import sys
import time
from typing import Callable, Optional

from kaudit.errors import KauditError
from kaudit.hosts.base import Host
from kaudit.up_options import APISERVER_MANIFEST, BACKUP_PREFIX, BACKUP_ROOT
from kaudit.workflow import Outcome, UpContext

#: a new apiserver container that has exited this many times is crash-looping
CRASH_RESTARTS = 2
#: while the API is down, ask crictl about a crash loop at most this often (seconds)
CRICTL_EVERY = 1.0
#: how many lines of the container log and the kubelet journal to show on failure
TAIL = 20


class WaitFailed(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def run(ctx: UpContext) -> Outcome:
    from kaudit.core.manifest import patch_manifest

    original, text = read_manifest(ctx.node)
    patched = patch_manifest(text, ctx.options.spec, source=f"{ctx.node.name}:{APISERVER_MANIFEST}")
    if patched == text:
        previous = ctx.facts.get("policy_replaced", {}).get(ctx.node.name)
        if previous is not None:
            from kaudit.phases.reload import reload_policy

            return reload_policy(ctx, *previous)
        return Outcome.unchanged("already configured: kube-apiserver has kaudit's audit flags and mounts")
    policy = ctx.options.spec.policy_path
    planned_policy = ctx.dry_run and "policy" in (getattr(ctx.options, "phases", None) or ())
    if not planned_policy and not ctx.node.exists(policy):
        # the hostPath volume is type File: kubelet would not even start the new pod
        raise KauditError(
            f"{ctx.node.name}: the audit policy {policy} is not on the node; kube-apiserver would not start without it",
            "write it first: kaudit up --only policy,apiserver (or give --policy-path of the file you installed)",
        )
    spec = ctx.options.spec
    if getattr(spec, "mode", "log") != "log":
        planned = ctx.dry_run and "webhook" in (getattr(ctx.options, "phases", None) or ())
        if not planned and not ctx.node.exists(spec.webhook_config_path):
            raise KauditError(
                f"{ctx.node.name}: the audit webhook kubeconfig {spec.webhook_config_path} is not on the node; "
                "kube-apiserver would not start without it",
                "write it first: kaudit up --mode webhook --only webhook,apiserver",
            )
    return apply_manifest(ctx, original, patched, expect_log=getattr(spec, "writes_log", True), what="audit flags")


def run_down(ctx: UpContext) -> Outcome:
    from kaudit.core.manifest import unpatch_manifest

    original, text = read_manifest(ctx.node)
    plain = unpatch_manifest(text, ctx.options.spec, source=f"{ctx.node.name}:{APISERVER_MANIFEST}")
    if plain == text:
        return Outcome.unchanged("kube-apiserver has none of kaudit's audit flags or mounts")
    if ctx.dry_run:  # the policy phase of down may then plan the file's removal
        ctx.facts.setdefault("unpatch_planned", set()).add(ctx.node.name)
    return apply_manifest(ctx, original, plain, expect_log=False, what="audit flags removed")


def read_manifest(node: Host) -> tuple[bytes, str]:
    if not node.exists(APISERVER_MANIFEST):
        raise KauditError(
            f"{node.name}: no {APISERVER_MANIFEST}: not a kubeadm control-plane node",
            "point --host at a control-plane node (kubeadm writes the apiserver's static pod manifest there)",
        )
    data = node.read_file(APISERVER_MANIFEST)
    try:
        return data, data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise KauditError(
            f"{node.name}:{APISERVER_MANIFEST}: not UTF-8 text (byte {e.start})",
            "the manifest is damaged: restore it from /etc/kubernetes/tmp/ (kaudit's and kubeadm's backups)",
        ) from None


# --------------------------------------------------------------------------- the sequence


def apply_manifest(ctx: UpContext, original: bytes, new_text: str, *, expect_log: bool, what: str) -> Outcome:
    from kaudit.core.manifest import manifest_diff
    from kaudit.units import format_duration

    node, ui, opts = ctx.node, ctx.ui, ctx.options
    before = original.decode("utf-8")
    diff = manifest_diff(before, new_text, APISERVER_MANIFEST, f"{APISERVER_MANIFEST} (kaudit)")
    added = sum(1 for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++"))
    removed = sum(1 for line in diff.splitlines() if line.startswith("-") and not line.startswith("---"))
    timeout = opts.wait_timeout
    if ctx.dry_run:
        from kaudit.ui import colour_diff

        sys.stdout.write(colour_diff(diff, sys.stdout))
        sys.stdout.flush()
        wait = "return without waiting (--no-wait)" if opts.no_wait else f"wait up to {format_duration(timeout)} for kubelet to restart kube-apiserver"
        return Outcome.planned(
            f"would back up {APISERVER_MANIFEST} to {BACKUP_ROOT}/{BACKUP_PREFIX}<timestamp>/, "
            f"write it with +{added}/-{removed} lines ({what}) and {wait}"
        )

    st = node.stat(APISERVER_MANIFEST)
    mode = st.mode if st else 0o600
    kube = pod_name = old_hash = None
    if not opts.no_wait:
        from kaudit.kube import NodeKubectl

        kube = NodeKubectl(node)
        pod_name, old_hash = record_hash(ctx, kube, before)
        ctx.ui.detail(f"[apiserver] {pod_name}: config hash {old_hash}")

    # what the audit log looked like before: after the restart it must exist and have grown
    log_before = node.stat(opts.spec.log_path) if expect_log and not opts.no_wait else None
    backup = make_backup(node, original, mode)
    ctx.facts.setdefault("apiserver_backups", {})[node.name] = backup
    ui.info(f"[apiserver] backed up the manifest to {backup}")
    node.write_file(APISERVER_MANIFEST, new_text.encode("utf-8"), mode=mode)
    ui.info(f"[apiserver] wrote {APISERVER_MANIFEST} (+{added}/-{removed} lines: {what})")
    if opts.no_wait:
        return Outcome.changed(
            f"wrote {APISERVER_MANIFEST} ({what}); not waiting (--no-wait): kubelet restarts kube-apiserver when it next runs"
        )

    assert kube is not None and pod_name is not None
    log_path = opts.spec.log_path if expect_log else None
    target = "new config hash, pod Ready, /readyz ok" + (f", {log_path} written" if log_path else "")
    try:
        with ui.step(f"Waiting for kubelet to restart {pod_name} ({target}; timeout {format_duration(timeout)})"):
            wait_for_new(ctx, kube, pod_name, old_hash, log_path, timeout, log_before)
    except KeyboardInterrupt:
        saved = node.command_path(posixpath.join(backup, posixpath.basename(APISERVER_MANIFEST)))
        ui.warn(f"interrupted while waiting: {APISERVER_MANIFEST} keeps the new content; to go back: "
                f"sudo cp {saved} {node.command_path(APISERVER_MANIFEST)}")
        raise
    except WaitFailed as failure:
        fail(ctx, kube, pod_name, old_hash, original, mode, backup, failure.reason, timeout)
    return Outcome.changed(f"kube-apiserver restarted with {what} ({pod_name} Ready); backup in {backup}")


def record_hash(ctx: UpContext, kube, manifest_text: str) -> tuple[str, str]:
    """(mirror pod name, its config hash), polling until the API answers."""
    from kaudit.kube import ApiDown, ENDPOINT_ANNOTATION, find_apiserver_pod
    from kaudit.units import format_duration

    endpoint = _annotation(manifest_text, ENDPOINT_ANNOTATION)
    deadline = time.monotonic() + ctx.options.wait_timeout
    hostname: Optional[str] = None
    last = "no answer yet"
    while True:
        name = find_apiserver_pod(kube, endpoint, hostname)
        if isinstance(name, str):
            pod = kube.pod(name)
            if pod is not None and not isinstance(pod, ApiDown) and pod.hash:
                return name, pod.hash
            if isinstance(pod, ApiDown):
                last = pod.reason
            elif pod is None:
                last = f"mirror pod {name} not found"
            else:
                last = f"{name} has no kubernetes.io/config.hash annotation"
        elif isinstance(name, ApiDown):
            last = name.reason
        else:
            if hostname is None:
                r = ctx.node.run(["hostname"], check=False, sudo=False)
                hostname = r.out.strip() if r.ok else ""
                continue
            last = "no kube-apiserver mirror pod for this node in kube-system"
        if time.monotonic() >= deadline:
            raise KauditError(
                f"{ctx.node.name}: cannot read the kube-apiserver mirror pod within "
                f"{format_duration(ctx.options.wait_timeout)} ({last}); nothing was changed",
                "check: kubectl --kubeconfig /etc/kubernetes/admin.conf -n kube-system get pods -l component=kube-apiserver "
                "(on the node); for an image without a running cluster use --no-wait",
            )
        time.sleep(ctx.options.poll_interval)


def _annotation(manifest_text: str, key: str) -> Optional[str]:
    from ruamel.yaml import YAML

    try:
        doc = YAML(typ="safe").load(manifest_text)
        return str(((doc.get("metadata") or {}).get("annotations") or {}).get(key) or "") or None
    except Exception:  # the patcher has already parsed it; this is only a hint for matching
        return None


def make_backup(node: Host, original: bytes, mode: int, *, name: str = APISERVER_MANIFEST) -> str:
    """Copy a file (the manifest) into a fresh timestamped dir under /etc/kubernetes/tmp;
    return the dir. The copy is read back and compared before anything else is touched."""
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime())
    backup = posixpath.join(BACKUP_ROOT, f"{BACKUP_PREFIX}{stamp}")
    n = 1
    while node.exists(backup):
        n += 1
        backup = posixpath.join(BACKUP_ROOT, f"{BACKUP_PREFIX}{stamp}-{n}")
    node.makedirs(backup, 0o700)
    path = posixpath.join(backup, posixpath.basename(name))
    node.write_file(path, original, mode=mode)
    if node.read_file(path) != original:
        raise KauditError(f"{node.name}: the backup {path} does not read back as written; nothing was changed", "check the node's disk")
    return backup


# --------------------------------------------------------------------------- waiting


def poll(ctx: UpContext, check: Callable[[], Optional[str]], timeout: float, failed: str) -> None:
    """Call check about every --poll-interval until it returns None (done). Otherwise it
    returns what is still awaited, shown with -v whenever that changes. Raises
    WaitFailed("<failed> within <timeout> (last: ...)") once the timeout has passed."""
    from kaudit.units import format_duration

    deadline = time.monotonic() + timeout
    shown = None
    while True:
        last = check()
        if last is None:
            return
        if last != shown:
            ctx.ui.detail(f"[apiserver] {last}")
            shown = last
        if time.monotonic() >= deadline:
            raise WaitFailed(f"{failed} within {format_duration(timeout)} (last: {last})")
        ctx.ui.tick()
        time.sleep(ctx.options.poll_interval)


def serving(ctx: UpContext, kube, log_path: Optional[str], log_before) -> Optional[str]:
    """Once the pod is Ready: None if /readyz is ok and the audit log has been written
    (the new apiserver logs its own requests, ours included), else what is missing."""
    from kaudit.kube import ApiDown

    ready = kube.readyz()
    if isinstance(ready, ApiDown):
        return f"pod Ready but /readyz not ok ({ready.reason})"
    if log_path and not _log_written(ctx.node, log_path, log_before):
        return f"apiserver Ready but nothing written to {log_path} yet"
    return None


def wait_for_new(ctx: UpContext, kube, pod_name: str, old_hash: str, log_path: Optional[str], timeout: float, log_before=None) -> None:
    """Until the mirror pod has a new hash and is Ready, /readyz is ok and the audit log
    exists (and, if it existed before, has been written since)."""
    from kaudit.kube import ApiDown

    next_crictl = 0.0

    def check() -> Optional[str]:
        nonlocal next_crictl
        pod = kube.pod(pod_name)
        if isinstance(pod, ApiDown):
            if time.monotonic() >= next_crictl:  # ask the runtime, but not on every poll
                next_crictl = time.monotonic() + CRICTL_EVERY
                crash = crash_loop_on_node(ctx.node, old_hash)
                if crash:
                    raise WaitFailed(crash)
            return f"API not answering ({pod.reason})"
        if pod is None:
            return f"mirror pod {pod_name} not found (kubelet recreates it)"
        if pod.hash == old_hash:
            return "config hash unchanged: kubelet has not picked up the new manifest yet"
        if pod.waiting_reason == "CrashLoopBackOff" and pod.restarts >= CRASH_RESTARTS:
            raise WaitFailed(f"is crash-looping with the new manifest (CrashLoopBackOff, {pod.restarts} restarts)")
        if not pod.ready:
            return f"new pod (hash {pod.hash}) is {pod.phase or 'Pending'}, not Ready" + (f" ({pod.waiting_reason})" if pod.waiting_reason else "")
        return serving(ctx, kube, log_path, log_before)

    poll(ctx, check, timeout, "did not come up")
    ctx.ui.detail(f"[apiserver] {pod_name} Ready with the new manifest")


def _log_written(node: Host, path: str, before) -> bool:
    now = node.stat(path)
    if now is None:
        return False
    return before is None or (now.size, now.mtime, now.inode) != (before.size, before.mtime, before.inode)


def wait_for_old(ctx: UpContext, kube, pod_name: str, old_hash: str, timeout: float) -> Optional[str]:
    """After a rollback: until the mirror pod is back on the old hash and Ready. None if it is, else why not."""
    from kaudit.kube import ApiDown

    def check() -> Optional[str]:
        pod = kube.pod(pod_name)
        if isinstance(pod, ApiDown):
            return f"API not answering ({pod.reason})"
        if pod is None:
            return f"mirror pod {pod_name} not found"
        if pod.hash != old_hash:
            return f"pod still has hash {pod.hash}"
        if not pod.ready:
            return "pod not Ready"
        return serving(ctx, kube, None, None)

    try:
        poll(ctx, check, timeout, "not Ready")
    except WaitFailed as e:
        return e.reason
    return None


# --------------------------------------------------------------------------- the node's runtime


def _apiserver_containers(node: Host) -> list[dict]:
    """kube-apiserver containers known to the container runtime (crictl ps -a), oldest first."""
    import json

    r = node.run(["crictl", "ps", "-a", "--name", "kube-apiserver", "-o", "json"], check=False, timeout=30)
    if not r.ok:
        return []
    try:
        containers = json.loads(r.out).get("containers") or []
    except (ValueError, AttributeError):
        return []
    return sorted(containers, key=lambda c: int(c.get("createdAt") or 0))


def crash_loop_on_node(node: Host, old_hash: str) -> Optional[str]:
    """While the API is down only the runtime can tell: the new pod's apiserver
    containers (pod UID = config hash for static pods) keep exiting."""
    new = [c for c in _apiserver_containers(node) if (c.get("labels") or {}).get("io.kubernetes.pod.uid") != old_hash]
    exited = [c for c in new if c.get("state") == "CONTAINER_EXITED"]
    attempts = max((int((c.get("metadata") or {}).get("attempt") or 0) for c in exited), default=-1)
    if exited and attempts >= CRASH_RESTARTS and exited[-1] is new[-1]:
        return f"is crash-looping with the new manifest (its container exited {attempts + 1} times)"
    return None


def diagnostics(node: Host, old_hash: Optional[str]) -> list[tuple[str, list[str]]]:
    """(title, last lines) of the newest apiserver container's log and of the kubelet journal."""
    out: list[tuple[str, list[str]]] = []
    containers = _apiserver_containers(node)
    newest = [c for c in containers if (c.get("labels") or {}).get("io.kubernetes.pod.uid") != old_hash] or containers
    if newest:
        cid = newest[-1].get("id", "")
        r = node.run(["crictl", "logs", "--tail", str(TAIL), cid], check=False, timeout=30)
        lines = (r.out + r.err).rstrip("\n").splitlines()[-TAIL:]
        out.append((f"crictl logs --tail {TAIL} {cid[:13]}", lines or ["(no output)"]))
    else:
        out.append(("crictl ps -a --name kube-apiserver", ["(no kube-apiserver container found, or crictl is not installed)"]))
    r = node.run(["journalctl", "-u", "kubelet", "-n", str(TAIL), "--no-pager"], check=False, timeout=30)
    lines = (r.out if r.ok else r.err).rstrip("\n").splitlines()[-TAIL:]
    out.append((f"journalctl -u kubelet -n {TAIL}", lines or ["(no output)"]))
    return out


def fail(ctx: UpContext, kube, pod_name: str, old_hash: str, original: bytes, mode: int, backup: str, reason: str, timeout: float) -> None:
    """Show why, roll back unless --no-rollback, and raise."""
    node, ui = ctx.node, ctx.ui
    for title, lines in diagnostics(node, old_hash):
        ui.warn(f"[apiserver] {title}:")
        for line in lines:
            ui.info(f"  | {line}")
    saved = posixpath.join(backup, posixpath.basename(APISERVER_MANIFEST))
    if not ctx.options.rollback:
        raise KauditError(
            f"kube-apiserver on {node.name} {reason}; left as it is (--no-rollback)",
            f"debug on the node (crictl ps -a --name kube-apiserver; journalctl -u kubelet), then restore with: "
            f"sudo cp {saved} {APISERVER_MANIFEST}",
        )
    ui.warn(f"kube-apiserver on {node.name} {reason}; rolling back to {saved}")
    node.write_file(APISERVER_MANIFEST, original, mode=mode)
    with ui.step(f"Waiting for the previous kube-apiserver ({pod_name}, hash {old_hash}) to be Ready again (timeout {_fmt(timeout)})"):
        problem = wait_for_old(ctx, kube, pod_name, old_hash, timeout)
    if problem:
        raise KauditError(
            f"kube-apiserver on {node.name} {reason}; the original manifest is restored but the previous apiserver is {problem}",
            "check kubelet on the node: journalctl -u kubelet; crictl ps -a --name kube-apiserver",
        )
    raise KauditError(
        f"kube-apiserver on {node.name} {reason}; rolled back: the original manifest is restored and the previous apiserver is Ready",
        "the log lines above usually name the cause (a policy or log path the apiserver cannot read, a bad flag); "
        "fix it and run the command again, or add --no-rollback to keep the failing manifest for debugging",
    )


def _fmt(seconds: float) -> str:
    from kaudit.units import format_duration

    return format_duration(seconds)

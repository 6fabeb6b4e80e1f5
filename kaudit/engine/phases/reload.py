"""Restart kube-apiserver so it loads a replaced audit policy.

kube-apiserver reads ``--audit-policy-file`` only when it starts, and a new
policy does not change the manifest, so kubelet has no reason to restart it. The
apiserver phase calls this when the policy phase replaced the file on a node
whose manifest is already configured. The restart is done the way an operator
would: ``crictl stop`` the running container; kubelet starts a new one in the
same pod (same config hash), so the wait is for a *new container* instead of a
new hash, then the same Ready, /readyz and audit-log checks as after a patch.
If it does not come back, the previous policy bytes are written back, the
failing container is stopped again, and the old state must be Ready.
"""

from __future__ import annotations

from typing import Optional

from kaudit.core.errors import KauditError
from kaudit.adapters.hosts.base import Host
from kaudit.engine.phases.static_pod import (
    CRASH_RESTARTS,
    WaitFailed,
    _apiserver_containers,
    _fmt,
    diagnostics,
    poll,
    read_manifest,
    record_hash,
    serving,
    wait_for_old,
)
from kaudit.engine.workflow import Outcome, UpContext


def _running(node: Host, pod_hash: str) -> list[dict]:
    return [c for c in _apiserver_containers(node)
            if c.get("state") == "CONTAINER_RUNNING" and (c.get("labels") or {}).get("io.kubernetes.pod.uid") == pod_hash]


def _stop(node: Host, container_id: str) -> None:
    node.run(["crictl", "stop", container_id], timeout=180,
             hint="check the container runtime on the node: crictl ps -a --name kube-apiserver")


def reload_policy(ctx: UpContext, old_policy: bytes, old_mode: int) -> Outcome:
    node, opts, ui = ctx.node, ctx.options, ctx.ui
    path = opts.spec.policy_path
    timeout = opts.wait_timeout
    if ctx.dry_run:
        return Outcome.planned(
            f"manifest already configured; would restart kube-apiserver (crictl stop, kubelet starts it again) "
            f"so it loads the new {path}, and wait up to {_fmt(timeout)}"
        )
    if opts.no_wait:
        ui.warn(f"{node.name}: kube-apiserver reads {path} only when it starts; it loads the new policy at its next start")
        return Outcome.unchanged("already configured (the new policy is loaded at the apiserver's next start: --no-wait)")

    from kaudit.adapters.kube import NodeKubectl

    kube = NodeKubectl(node)
    _, text = read_manifest(node)
    pod_name, pod_hash = record_hash(ctx, kube, text)
    running = _running(node, pod_hash)
    if not running:
        raise KauditError(
            f"{node.name}: the new policy is in {path}, but crictl shows no running container of {pod_name} to restart, "
            "so kube-apiserver still uses the previous policy",
            "restart kube-apiserver on the node (crictl ps --name kube-apiserver; crictl stop ID), then run kaudit verify",
        )
    old_id = running[-1]["id"]
    log_before = node.stat(opts.spec.log_path)
    ui.info(f"[apiserver] restarting {pod_name} so it loads the new policy (crictl stop {old_id[:13]})")
    _stop(node, old_id)
    try:
        with ui.step(f"Waiting for kubelet to start {pod_name} again (new container, pod Ready, /readyz ok, "
                     f"{opts.spec.log_path} written; timeout {_fmt(timeout)})"):
            _wait_restarted(ctx, kube, pod_name, pod_hash, old_id, log_before, timeout)
    except WaitFailed as failure:
        _fail(ctx, kube, pod_name, pod_hash, old_policy, old_mode, failure.reason, timeout)
    return Outcome.changed(f"restarted kube-apiserver to load the new policy ({pod_name} Ready)")


def _wait_restarted(ctx: UpContext, kube, pod_name: str, pod_hash: str, old_id: str, log_before, timeout: float) -> None:
    from kaudit.adapters.kube import ApiDown

    def check() -> Optional[str]:
        mine = [c for c in _apiserver_containers(ctx.node)
                if (c.get("labels") or {}).get("io.kubernetes.pod.uid") == pod_hash and c.get("id") != old_id]
        exited = [c for c in mine if c.get("state") == "CONTAINER_EXITED"]
        if len(exited) > CRASH_RESTARTS:
            raise WaitFailed(f"is crash-looping with the new policy (its container exited {len(exited)} times)")
        if not any(c.get("state") == "CONTAINER_RUNNING" for c in mine):
            return "no new kube-apiserver container running yet"
        pod = kube.pod(pod_name)
        if isinstance(pod, ApiDown):
            return f"API not answering ({pod.reason})"
        if pod is None or not pod.ready:
            return "new container running, pod not Ready"
        return serving(ctx, kube, ctx.options.spec.log_path, log_before)

    poll(ctx, check, timeout, "did not come back")


def _fail(ctx: UpContext, kube, pod_name: str, pod_hash: str, old_policy: bytes, old_mode: int, reason: str, timeout: float) -> None:
    node, ui, path = ctx.node, ctx.ui, ctx.options.spec.policy_path
    for title, lines in diagnostics(node, None):
        ui.warn(f"[apiserver] {title}:")
        for line in lines:
            ui.info(f"  | {line}")
    if not ctx.options.rollback:
        raise KauditError(
            f"kube-apiserver on {node.name} {reason}; the new policy is left in {path} (--no-rollback)",
            "the backup of the previous policy is under /etc/kubernetes/tmp/kaudit-backup-*; copy it back and restart kube-apiserver",
        )
    ui.warn(f"[apiserver] kube-apiserver on {node.name} {reason}; putting the previous policy back")
    node.write_file(path, old_policy, mode=old_mode)
    for c in _running(node, pod_hash):  # a container that runs but never got Ready
        _stop(node, c["id"])
    with ui.step(f"Waiting for kube-apiserver ({pod_name}) to be Ready again with the previous policy (timeout {_fmt(timeout)})"):
        problem: Optional[str] = wait_for_old(ctx, kube, pod_name, pod_hash, timeout)
    if problem:
        raise KauditError(
            f"kube-apiserver on {node.name} {reason}; the previous policy is back in {path} but the apiserver is {problem}",
            "check kubelet on the node: journalctl -u kubelet; crictl ps -a --name kube-apiserver",
        )
    raise KauditError(
        f"kube-apiserver on {node.name} {reason}; rolled back: the previous policy is back in {path} and the apiserver is Ready",
        "the log lines above name the cause; check the policy with kaudit policy validate FILE, fix it and run kaudit up again",
    )

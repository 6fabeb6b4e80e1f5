"""The `persist` phase: record the audit settings in kube-system/kubeadm-config.

`kaudit up` patches the manifest; `kubeadm upgrade` regenerates it from the
ClusterConfiguration in this ConfigMap. Putting the same flags and volumes in
``apiServer.extraArgs``/``extraVolumes`` keeps auditing on across upgrades
(FACTS.md §2.5). The edit itself is pure (kaudit.core.kubeadm_config); here it
is read, compared, and replaced with the resourceVersion it was read at, so a
concurrent change makes kubectl fail rather than be overwritten.
"""

from __future__ import annotations

import sys

from kaudit.engine.workflow import Outcome, UpContext

NAMESPACE = "kube-system"
NAME = "kubeadm-config"
KEY = "ClusterConfiguration"


def run(ctx: UpContext) -> Outcome:
    from kaudit.core.kubeadm_config import persist_audit

    return _edit(ctx, persist_audit, "recorded the audit flags and volumes in", "already records the audit flags and volumes")


def run_down(ctx: UpContext) -> Outcome:
    from kaudit.core.kubeadm_config import unpersist_audit

    return _edit(ctx, unpersist_audit, "removed the audit flags and volumes from", "holds none of kaudit's audit settings")


def _edit(ctx: UpContext, transform, did: str, already: str) -> Outcome:
    from kaudit.core.manifest import manifest_diff
    from kaudit.adapters.kube import NodeKubectl

    opts = ctx.options
    where = f"{NAMESPACE}/{NAME}"
    if not opts.persist:
        return Outcome.skipped(f"--no-persist: {where} left as it is (kubeadm upgrade will drop hand-made manifest changes)")
    if opts.no_wait:
        return Outcome.skipped(f"--no-wait makes no API calls: {where} not touched (run again without --no-wait once the cluster is up)")
    kube = NodeKubectl(ctx.node)
    cm = kube.get_configmap(NAMESPACE, NAME)
    if cm is None:
        return Outcome.skipped(f"no ConfigMap {where}: not a kubeadm cluster, nothing to persist")
    text = (cm.get("data") or {}).get(KEY)
    if not text:
        return Outcome.skipped(f"{where} has no {KEY}")
    new = transform(text, opts.spec, source=f"{where} {KEY}")
    if new == text:
        return Outcome.unchanged(f"{where} {already}")
    if ctx.dry_run:
        from kaudit.engine.ui import colour_diff

        sys.stdout.write(colour_diff(manifest_diff(text, new, f"{where} {KEY}", f"{where} {KEY} (kaudit)"), sys.stdout))
        sys.stdout.flush()
        return Outcome.planned(f"would update {KEY} in {where}")
    cm["data"][KEY] = new
    kube.replace(cm)
    return Outcome.changed(f"{did} {where} ({KEY}, {_api_version(new)})")


def _api_version(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("apiVersion:"):
            return line.split(":", 1)[1].strip()
    return "?"

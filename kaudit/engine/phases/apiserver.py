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

from kaudit.core.errors import KauditError
from kaudit.core.node_paths import APISERVER_MANIFEST
from kaudit.engine.workflow import Outcome, UpContext
from kaudit.engine.phases.static_pod import apply_manifest, read_manifest


def run(ctx: UpContext) -> Outcome:
    from kaudit.core.manifest import patch_manifest

    original, text = read_manifest(ctx.node)
    patched = patch_manifest(text, ctx.options.spec, source=f"{ctx.node.name}:{APISERVER_MANIFEST}")
    if patched == text:
        previous = ctx.facts.get("policy_replaced", {}).get(ctx.node.name)
        if previous is not None:
            from kaudit.engine.phases.reload import reload_policy

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

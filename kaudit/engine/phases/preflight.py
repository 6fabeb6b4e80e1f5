"""The `preflight` phase: find what would stop `kaudit up` before anything is changed.

It changes nothing. It reads the manifest and runs the patch in memory (a
manifest kaudit cannot patch fails here, with its line and column), validates
the policy, and, unless --no-wait, checks that kubectl and kubeadm's
admin.conf are on the node and that the apiserver answers: the apiserver phase
needs all three to see kubelet restart it.
"""

from __future__ import annotations

from kaudit.core.errors import KauditError
from kaudit.core.node_paths import ADMIN_CONF, APISERVER_MANIFEST
from kaudit.engine.workflow import Outcome, UpContext


def run(ctx: UpContext) -> Outcome:
    from kaudit.core.audit_settings import policy_path_warning
    from kaudit.engine.phases.policy import policy_bytes

    node, opts, ui = ctx.node, ctx.options, ctx.ui
    notes: list[str] = []
    policy_bytes(opts)  # raises on a bad --policy-file
    notes.append(f"policy {opts.policy_source()} valid")
    if (warning := policy_path_warning(opts.spec.policy_path)):
        ui.warn(warning)

    from kaudit.adapters.hosts.lima import LimaHost

    if isinstance(node, LimaHost) and "vm" in (opts.phases or ()):
        # the VM may not exist yet; the node is checked by the phases after vm
        return Outcome.unchanged("; ".join(notes + ["node checks follow the vm phase"]))

    from kaudit.core.manifest import patch_manifest
    from kaudit.engine.phases.static_pod import read_manifest

    _, text = read_manifest(node)
    patched = patch_manifest(text, opts.spec, source=f"{node.name}:{APISERVER_MANIFEST}")
    notes.append("manifest already patched" if patched == text else "manifest patchable")

    if not opts.no_wait:
        if not node.which("kubectl"):
            raise KauditError(
                f"{node.name}: kubectl is not installed on the node; kaudit uses it to watch kubelet restart the apiserver",
                "install kubectl on the node, or write the files only with --no-wait (offline images)",
            )
        if not node.exists(ADMIN_CONF):
            raise KauditError(
                f"{node.name}: no {ADMIN_CONF} (kubeadm's admin kubeconfig)",
                "run kaudit on a kubeadm control-plane node, or use --no-wait",
            )
        from kaudit.adapters.kube import ApiDown, NodeKubectl

        ready = NodeKubectl(node).readyz()
        if isinstance(ready, ApiDown):
            raise KauditError(
                f"{node.name}: the apiserver does not answer /readyz ({ready.reason}); kaudit will not restart an apiserver it cannot watch",
                "fix the cluster first (crictl ps -a --name kube-apiserver on the node), or use --no-wait",
            )
        notes.append("apiserver ready")
        if not node.which("crictl"):
            ui.warn(f"{node.name}: crictl is not installed: kaudit cannot spot a crash loop early or show the apiserver's log on failure")
    return Outcome.unchanged("; ".join(notes))

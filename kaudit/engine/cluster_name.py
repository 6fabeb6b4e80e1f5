"""Which value the `cluster` label gets, decided once per `kaudit up` run.

In order: --cluster-name (or the inventory's name); the Lima instance name for
--host lima:NAME; the clusterName kubeadm recorded in kube-system/kubeadm-config
(kubeadm's default is "kubernetes", so clusters set up with defaults should be
given a name). The answer is kept in ctx.facts so the collector and verify
phases agree.
"""

from __future__ import annotations

from kaudit.core.errors import KauditError, UsageError
from kaudit.shipper import fields as F
from kaudit.engine.workflow import UpContext

FACT = "cluster_name"


def checked(name: str, flag: str = "--cluster-name") -> str:
    try:
        F.check_cluster_name(name)
    except ValueError as e:
        raise UsageError(f"{flag}: {e}", "use the cluster's short name, e.g. prod-eu") from None
    return name


def resolve(ctx: UpContext) -> str:
    """The cluster label value for this run (see the module doc); remembered in ctx.facts."""
    if ctx.facts.get(FACT):
        return ctx.facts[FACT]
    chosen = getattr(ctx.options, "cluster_name", None)
    if chosen:
        name, source = checked(chosen), "--cluster-name"
    else:
        name, source = _from_node(ctx)
    ctx.facts[FACT] = name
    ctx.facts["cluster_name_source"] = source
    return name


def _from_node(ctx: UpContext) -> tuple[str, str]:
    from kaudit.adapters.hosts.lima import LimaHost

    node = ctx.node  # the dry-run recorder keeps the node's class
    if isinstance(node, LimaHost):
        return checked(node.instance, f"the Lima instance name {node.instance!r}"), f"Lima instance {node.instance}"
    from kaudit.core.kubeadm_config import DEFAULT_CLUSTER_NAME, cluster_name
    from kaudit.adapters.kube import NodeKubectl
    from kaudit.engine.phases.persist import KEY, NAME, NAMESPACE

    try:
        cm = NodeKubectl(ctx.node).get_configmap(NAMESPACE, NAME)
    except KauditError as e:
        ctx.ui.detail(f"cannot read {NAMESPACE}/{NAME} for the cluster name: {e.message}")
        cm = None
    text = ((cm or {}).get("data") or {}).get(KEY)
    if not text:
        # not kubeadm (or no API yet): kubeadm's own default, and the warning the collector phase gives
        return DEFAULT_CLUSTER_NAME, f"kubeadm's default: no {NAMESPACE}/{NAME} to read clusterName from"
    name = cluster_name(text, source=f"{NAMESPACE}/{NAME} {KEY}")
    checked(name, f"clusterName {name!r} in {NAMESPACE}/{NAME}")
    where = f"clusterName in {NAMESPACE}/{NAME}" + (" (kubeadm's default)" if name == DEFAULT_CLUSTER_NAME else "")
    return name, where

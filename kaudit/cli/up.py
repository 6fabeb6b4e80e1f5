"""`kaudit up` and `kaudit down`: run the phases of the registry on each node.

Node phases run on each --host in turn; the run stops at the first node that
fails (its apiserver phase has already rolled it back). Cluster-wide phases run
once afterwards. A summary at the end lists what each phase changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from kaudit.cli.audit_options import (
    AuditFlagOpt,
    ModeOpt,
    AuditLogPathOpt,
    MaxAgeOpt,
    MaxBackupOpt,
    MaxSizeOpt,
    PolicyPathOpt,
)
from kaudit.core.audit_settings import (
    DEFAULT_LOG_PATH,
    DEFAULT_MAXAGE,
    DEFAULT_MAXBACKUP,
    DEFAULT_MAXSIZE,
    DEFAULT_POLICY_PATH,
)
from kaudit.cli.loki_options import LokiCaFileOpt, LokiPasswordFileOpt, LokiTokenFileOpt, LokiUsernameOpt
from kaudit.cli.loki_scaling_options import (
    BucketChunksOpt,
    BucketOpt,
    BucketRulerOpt,
    EventBytesOpt,
    EventsPerSecondOpt,
    LokiModeOpt,
    LokiReplicasOpt,
    ObjectStorageOpt,
    RetentionOpt,
    S3EndpointOpt,
    S3RegionOpt,
    StorageCredentialsOpt,
    StorageSecretOpt,
    scalable_from_flags,
)
from kaudit.cli.options import AcceptNewHostKeyOpt, HostOpt, KnownHostsOpt, RootfsOpt, SshKeyOpt
from kaudit.core.errors import UsageError
from kaudit.engine.workflow import PHASE_NAMES, phases_help

PROFILES = ("gce", "gce-modern")
STACKS = ("loki-stack", "loki")
COLLECTORS = ("promtail", "shipper", "alloy", "none")
_WAIT = "Waiting"
_LATER = "Later phases"
_VM = "Lima VM"

# -- options shared by up and down -----------------------------------------------
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Change nothing: print the plan, and the manifest diff on stdout.")]
WaitTimeoutOpt = Annotated[
    str, typer.Option("--wait-timeout", help="How long to wait for kubelet to restart kube-apiserver (kubeadm's default: 5m).", rich_help_panel=_WAIT)
]
PollIntervalOpt = Annotated[
    str, typer.Option("--poll-interval", envvar="KAUDIT_POLL_INTERVAL", hidden=True, help="How often to poll the API while waiting.")
]
NoWaitOpt = Annotated[
    bool,
    typer.Option("--no-wait", help="Write the files and return: no API calls, no waiting (offline images with --rootfs).", rich_help_panel=_WAIT),
]
NoRollbackOpt = Annotated[
    bool, typer.Option("--no-rollback", help="If the new apiserver does not come up, leave it broken for debugging.", rich_help_panel=_WAIT)
]
NoPersistOpt = Annotated[
    bool, typer.Option("--no-persist", help="Leave kube-system/kubeadm-config alone (kubeadm upgrade will then drop the audit flags).")
]
NamespaceOpt = Annotated[str, typer.Option("--namespace", "-n", help="Namespace of kaudit's releases.", rich_help_panel=_LATER)]
KubeconfigOpt = Annotated[
    Optional[Path], typer.Option("--kubeconfig", help="kubeconfig for helm/kubectl run on this machine (the vm phase finds Lima's).", rich_help_panel=_LATER)
]
# -- many clusters, one Loki (docs/inventory.md, docs/collectors.md) ----------------
_FLEET = "Many clusters"
InventoryOpt = Annotated[
    Optional[Path], typer.Option("--file", "-f", metavar="FILE", help="Run on every cluster of an inventory (docs/inventory.md) instead of --host.", rich_help_panel=_FLEET, show_default=False)
]
ParallelOpt = Annotated[Optional[int], typer.Option("--parallel", min=1, help="With -f: how many clusters at once (default: the file's parallel, else 4).", rich_help_panel=_FLEET, show_default=False)]
ClusterNameOpt = Annotated[
    Optional[str],
    typer.Option("--cluster-name", metavar="NAME", help="Value of the cluster label on every event (default: the Lima instance name, else kubeadm's clusterName).", rich_help_panel=_FLEET, show_default=False),
]


def _choice(name: str, choices: tuple[str, ...]):
    def check(value):
        if value is not None and value not in choices:
            raise typer.BadParameter(f"{value!r} is not one of: {', '.join(choices)}", param_hint=name)
        return value

    return check


def _duration(value: str, flag: str) -> float:
    from kaudit.core.units import parse_duration

    seconds = parse_duration(value, field=flag)
    if seconds <= 0:
        raise UsageError(f"{flag} {value}: must be more than zero", "for example 5m")
    return seconds


def _alertmanager(url: Optional[str], no_detect: bool) -> Optional[str]:
    if url is None:
        return None
    if no_detect:
        raise UsageError("--alertmanager-url goes with detection; drop --no-detect or the URL")
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--alertmanager-url {url!r} is not an http(s) URL", "write it like http://alertmanager.monitoring.svc:9093")
    return url


def _wait_settings(wait_timeout: str, poll_interval: str, no_wait: bool, no_rollback: bool, no_persist: bool) -> dict:
    """The UpOptions fields up and down share: how the apiserver change is waited on and undone."""
    return dict(
        wait_timeout=_duration(wait_timeout, "--wait-timeout"),
        poll_interval=_duration(poll_interval, "--poll-interval"),
        no_wait=no_wait,
        rollback=not no_rollback,
        persist=not no_persist,
    )


def _spec(audit_log_path, policy_path, maxsize, maxbackup, maxage, audit_flag, mode="log"):
    from kaudit.core.audit_settings import audit_spec_from_options

    return audit_spec_from_options(audit_log_path, policy_path, maxsize, maxbackup, maxage, audit_flag, mode)


def up(
    ctx: typer.Context,
    host: HostOpt = None,
    rootfs: RootfsOpt = None,
    ssh_key: SshKeyOpt = None,
    accept_new_host_key: AcceptNewHostKeyOpt = False,
    known_hosts: KnownHostsOpt = None,
    only: Annotated[Optional[str], typer.Option("--only", metavar="PHASES", help=f"Run only these phases, comma-separated: {', '.join(PHASE_NAMES)}.")] = None,
    skip_phases: Annotated[Optional[str], typer.Option("--skip-phases", metavar="PHASES", help="Skip these phases, comma-separated (names as for --only).")] = None,
    dry_run: DryRunOpt = False,
    policy_profile: Annotated[
        str, typer.Option("--policy-profile", callback=_choice("--policy-profile", PROFILES), help="Packaged policy: gce (Google's GCE/COS policy) or gce-modern.")
    ] = "gce",
    policy_file: Annotated[
        Optional[Path], typer.Option("--policy-file", help="Your own audit policy instead of a profile (validated before it is written).")
    ] = None,
    audit_log_path: AuditLogPathOpt = DEFAULT_LOG_PATH,
    policy_path: PolicyPathOpt = DEFAULT_POLICY_PATH,
    maxsize: MaxSizeOpt = DEFAULT_MAXSIZE,
    maxbackup: MaxBackupOpt = DEFAULT_MAXBACKUP,
    maxage: MaxAgeOpt = DEFAULT_MAXAGE,
    audit_flag: AuditFlagOpt = None,
    mode: ModeOpt = "log",
    wait_timeout: WaitTimeoutOpt = "5m",
    poll_interval: PollIntervalOpt = "500ms",
    no_wait: NoWaitOpt = False,
    no_rollback: NoRollbackOpt = False,
    no_persist: NoPersistOpt = False,
    stack: Annotated[str, typer.Option("--stack", callback=_choice("--stack", STACKS), help="loki-stack (deprecated chart, Loki 2.6) or loki (Loki 3 + Grafana).", rich_help_panel=_LATER)] = "loki-stack",
    collector: Annotated[str, typer.Option("--collector", callback=_choice("--collector", COLLECTORS), help="promtail, shipper (kaudit's own), alloy or none.", rich_help_panel=_LATER)] = "promtail",
    loki_url: Annotated[Optional[str], typer.Option("--loki-url", help="Use this Loki instead of installing one.", rich_help_panel=_LATER)] = None,
    loki_tenant: Annotated[Optional[str], typer.Option("--loki-tenant", help="Loki tenant (X-Scope-OrgID) to push and query as.", rich_help_panel=_LATER)] = None,
    kubeconfig: KubeconfigOpt = None,
    namespace: NamespaceOpt = "kaudit",
    helm_timeout: Annotated[str, typer.Option("--helm-timeout", help="helm --timeout for each release.", rich_help_panel=_LATER)] = "10m",
    loki_storage_class: Annotated[
        Optional[str],
        typer.Option("--loki-storage-class", metavar="NAME", help="Keep Loki's data on a PersistentVolumeClaim of this StorageClass (default: emptyDir, data lives as long as the pod).", rich_help_panel=_LATER),
    ] = None,
    loki_size: Annotated[
        Optional[str],
        typer.Option("--loki-size", metavar="SIZE", help="Size of Loki's PersistentVolumeClaim, e.g. 10Gi (turns persistence on, with the default StorageClass unless --loki-storage-class).", rich_help_panel=_LATER),
    ] = None,
    loki_mode: LokiModeOpt = "monolithic",
    object_storage: ObjectStorageOpt = None,
    bucket: BucketOpt = None,
    bucket_chunks: BucketChunksOpt = None,
    bucket_ruler: BucketRulerOpt = None,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
    storage_credentials: StorageCredentialsOpt = None,
    storage_secret: StorageSecretOpt = None,
    events_per_second: EventsPerSecondOpt = None,
    event_bytes: EventBytesOpt = None,
    retention: RetentionOpt = None,
    loki_replicas: LokiReplicasOpt = None,
    shipper_image: Annotated[Optional[str], typer.Option("--shipper-image", help="Python image the shipper DaemonSet runs.", rich_help_panel=_LATER)] = None,
    structured_metadata: Annotated[
        Optional[bool],
        typer.Option("--structured-metadata/--no-structured-metadata", help="Send structured metadata (default: only to Loki 3).", rich_help_panel=_LATER, show_default=False),
    ] = None,
    verify_timeout: Annotated[str, typer.Option("--verify-timeout", help="How long verify waits for the probe to reach Loki.", rich_help_panel=_LATER)] = "60s",
    no_detect: Annotated[bool, typer.Option("--no-detect", help="Leave kaudit's detection rules out of the Loki ruler (and the detections dashboard).", rich_help_panel=_LATER)] = False,
    alertmanager_url: Annotated[Optional[str], typer.Option("--alertmanager-url", help="Alertmanager the Loki ruler sends detection alerts to.", rich_help_panel=_LATER)] = None,
    lima_template: Annotated[Optional[str], typer.Option("--lima-template", help="Lima template for a new VM (default k8s).", rich_help_panel=_VM)] = None,
    cpus: Annotated[Optional[int], typer.Option("--cpus", "--lima-cpus", min=1, help="CPUs of a new VM.", rich_help_panel=_VM)] = None,
    memory: Annotated[Optional[str], typer.Option("--memory", "--lima-memory", help="Memory of a new VM, e.g. 8GiB.", rich_help_panel=_VM)] = None,
    disk: Annotated[Optional[str], typer.Option("--disk", "--lima-disk", help="Disk of a new VM, e.g. 50GiB.", rich_help_panel=_VM)] = None,
    cluster_name: ClusterNameOpt = None,
    loki_username: LokiUsernameOpt = None,
    loki_password_file: LokiPasswordFileOpt = None,
    loki_token_file: LokiTokenFileOpt = None,
    loki_ca_file: LokiCaFileOpt = None,
    inventory: InventoryOpt = None,
    parallel: ParallelOpt = None,
) -> int:
    """Turn on audit logging and ship it to Loki: every phase, on every --host.

    Phases, in order (--only / --skip-phases take these names):

    \b
    {phases}

    Running it again changes nothing and says so. --dry-run prints the plan and
    the manifest diff and writes nothing.

    \b
    Examples:
      kaudit up
      kaudit up --host ssh://root@cp1 --stack loki --collector shipper
      kaudit up -f clusters.yaml --parallel 4 --dry-run
    """
    from kaudit.cli import state
    from kaudit.engine.targets import HostOptions
    from kaudit.core.stack_values import LokiStorage
    from kaudit.engine.settings import UpOptions
    from kaudit.engine.workflow import select_phases

    phases = select_phases(only, skip_phases)
    if mode in ("webhook", "both") and collector not in ("shipper", "none"):
        raise UsageError(f"--mode {mode} needs --collector shipper: kaudit's shipper is the webhook receiver",
                         f"kaudit up --mode {mode} --collector shipper")
    fleet = _fleet_settings(loki_url, cluster_name, loki_username, loki_password_file, loki_token_file, loki_ca_file, inventory, host, rootfs)
    if policy_file is not None and not policy_file.is_file():
        raise UsageError(f"--policy-file {policy_file}: " + ("is a directory" if policy_file.is_dir() else "no such file"), "give the path of an audit Policy YAML file")
    loki_storage = LokiStorage.from_flags(loki_storage_class, loki_size)
    scalable, credentials = scalable_from_flags(
        stack=stack, mode=loki_mode, object_storage=object_storage, bucket=bucket, bucket_chunks=bucket_chunks,
        bucket_ruler=bucket_ruler, s3_endpoint=s3_endpoint, s3_region=s3_region, storage_credentials=storage_credentials,
        storage_secret=storage_secret, events_per_second=events_per_second, event_bytes=event_bytes, retention=retention,
        loki_replicas=loki_replicas, persistence=loki_storage, loki_url=loki_url,
    )
    opts = UpOptions(
        spec=_spec(audit_log_path, policy_path, maxsize, maxbackup, maxage, audit_flag, mode),
        policy_profile=policy_profile,
        policy_file=policy_file,
        **_wait_settings(wait_timeout, poll_interval, no_wait, no_rollback, no_persist),
        stack=stack,
        collector=collector,
        loki_url=loki_url,
        loki_tenant=loki_tenant,
        kubeconfig=kubeconfig,
        namespace=namespace,
        helm_timeout=helm_timeout,
        loki_storage=None if scalable else loki_storage,
        loki_scalable=scalable,
        storage_credentials=credentials,
        shipper_image=shipper_image,
        structured_metadata=structured_metadata,
        verify_timeout=_duration(verify_timeout, "--verify-timeout"),
        detect=not no_detect,
        alertmanager_url=_alertmanager(alertmanager_url, no_detect),
        lima_template=lima_template,
        lima_cpus=cpus,
        lima_memory=memory,
        lima_disk=disk,
        phases=tuple(p.name for p in phases),
        **fleet,
    )
    if inventory is not None:
        from kaudit.engine.fleet import up_inventory

        return up_inventory(state(ctx).ui, inventory, phases, opts, parallel=parallel, dry_run=dry_run, verb="up")
    hosts = HostOptions.build(host, rootfs, ssh_key, accept_new_host_key, known_hosts)
    from kaudit.engine.run import run_phases

    return run_phases(state(ctx).ui, hosts, phases, opts, dry_run=dry_run, verb="up")


def _fleet_settings(loki_url, cluster_name, username, password_file, token_file, ca_file, inventory, host, rootfs) -> dict:
    """--cluster-name, --loki-url and its credentials, checked; the UpOptions fields they set."""
    from kaudit.cli.loki_options import credentials

    if inventory is not None and (host or rootfs or cluster_name):
        raise UsageError("-f takes the hosts and cluster names from the inventory", "leave out --host, --rootfs and --cluster-name")
    if cluster_name is not None:
        from kaudit.engine.cluster_name import checked

        checked(cluster_name)
    if loki_url is not None:
        from kaudit.core.render import push_url

        push_url(loki_url)  # an http(s) URL, or a usage error now
    creds = credentials(username, password_file, token_file, ca_file)
    if creds is not None and not loki_url and inventory is None:
        raise UsageError("Loki credentials were given without --loki-url", "they are for an existing Loki: add --loki-url URL")
    return {"cluster_name": cluster_name, "loki_auth": creds}


up.__doc__ = (up.__doc__ or "").replace("{phases}", "\n    ".join(line.strip() for line in phases_help().splitlines()))

def down(
    ctx: typer.Context,
    host: HostOpt = None,
    rootfs: RootfsOpt = None,
    ssh_key: SshKeyOpt = None,
    accept_new_host_key: AcceptNewHostKeyOpt = False,
    known_hosts: KnownHostsOpt = None,
    dry_run: DryRunOpt = False,
    remove_policy: Annotated[bool, typer.Option("--remove-policy", help="Also delete the policy file from the node.")] = False,
    purge_charts: Annotated[bool, typer.Option("--purge-charts", help="Also uninstall kaudit's Helm releases (needs helm here).")] = False,
    audit_log_path: AuditLogPathOpt = DEFAULT_LOG_PATH,
    policy_path: PolicyPathOpt = DEFAULT_POLICY_PATH,
    audit_flag: AuditFlagOpt = None,
    wait_timeout: WaitTimeoutOpt = "5m",
    poll_interval: PollIntervalOpt = "500ms",
    no_wait: NoWaitOpt = False,
    no_rollback: NoRollbackOpt = False,
    no_persist: NoPersistOpt = False,
    kubeconfig: KubeconfigOpt = None,
    namespace: NamespaceOpt = "kaudit",
    inventory: InventoryOpt = None,
    parallel: ParallelOpt = None,
) -> int:
    """Turn audit logging off again, as safely as `up` turned it on.

    Takes kaudit's flags, mounts and volumes out of kube-apiserver (backup,
    wait for kubelet, roll back on failure) and out of kubeadm-config. The audit
    logs already written stay on the node. With --remove-policy the policy file
    goes too; with --purge-charts the Helm releases.

    \b
    Examples:
      kaudit down --host lima:k8s
      kaudit down --host lima:k8s --remove-policy --purge-charts
      kaudit down -f clusters.yaml
    """
    from kaudit.cli import state
    from kaudit.engine.targets import HostOptions
    from kaudit.engine.settings import UpOptions
    from kaudit.engine.workflow import DOWN_PHASES

    phases = list(DOWN_PHASES)
    opts = UpOptions(
        spec=_spec(audit_log_path, policy_path, DEFAULT_MAXSIZE, DEFAULT_MAXBACKUP, DEFAULT_MAXAGE, audit_flag),
        **_wait_settings(wait_timeout, poll_interval, no_wait, no_rollback, no_persist),
        kubeconfig=kubeconfig,
        namespace=namespace,
        remove_policy=remove_policy,
        purge_charts=purge_charts,
        phases=tuple(p.name for p in phases),
    )
    if inventory is not None:
        from kaudit.engine.fleet import up_inventory

        if host or rootfs:
            raise UsageError("-f takes the hosts from the inventory", "leave out --host and --rootfs")
        return up_inventory(state(ctx).ui, inventory, phases, opts, parallel=parallel, dry_run=dry_run, verb="down")
    hosts = HostOptions.build(host, rootfs, ssh_key, accept_new_host_key, known_hosts)
    from kaudit.engine.run import run_phases

    return run_phases(state(ctx).ui, hosts, phases, opts, dry_run=dry_run, verb="down")


def register(app: typer.Typer) -> None:
    app.command("up")(up)
    app.command("down")(down)

"""The settings of one `kaudit up` / `kaudit down` run, built once at the CLI edge.

Phases read them from ``ctx.options``. The object is frozen: a phase that
learns something for later phases puts it in ``ctx.facts`` instead. Phases
written by other work read fields with ``getattr(opts, name, default)``, so new
fields can be added here without touching them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

DEFAULT_WAIT_TIMEOUT = 300.0  # kubeadm's UpgradeManifestTimeout (5m)
DEFAULT_POLL_INTERVAL = 0.5  # kubeadm's KubernetesAPICallRetryInterval


@dataclass(frozen=True)
class UpOptions:
    #: the audit flags and mounts (kaudit.core.manifest.AuditSpec)
    spec: Any = None
    #: packaged policy profile (gce, gce-modern), used unless policy_file is set
    policy_profile: str = "gce"
    #: the user's own policy file on this machine (validated before it is written)
    policy_file: Optional[Path] = None
    #: how long to wait for kubelet to restart kube-apiserver, in seconds
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT
    #: how often to poll the API while waiting, in seconds
    poll_interval: float = DEFAULT_POLL_INTERVAL
    #: write the files and return: no API calls, no waiting (offline images)
    no_wait: bool = False
    #: restore the backup when the new apiserver does not come up
    rollback: bool = True
    #: also record the audit settings in kube-system/kubeadm-config
    persist: bool = True

    # -- later phases (stack, collector, verify) --------------------------------
    stack: str = "loki-stack"
    collector: str = "promtail"
    loki_url: Optional[str] = None
    #: Loki tenant (X-Scope-OrgID) for the collector and verify
    loki_tenant: Optional[str] = None
    #: credentials for the Loki at loki_url (kaudit.core.loki_auth.LokiCredentials)
    loki_auth: Any = None
    #: value of the cluster label; None: the Lima instance or kubeadm's clusterName
    cluster_name: Optional[str] = None
    kubeconfig: Optional[Path] = None
    namespace: str = "kaudit"
    helm_timeout: str = "10m"
    #: a PersistentVolumeClaim for Loki (kaudit.core.stack_values.LokiStorage); None: emptyDir
    loki_storage: Any = None
    #: a simple-scalable/distributed Loki (kaudit.core.loki_scalable.ScalableLoki); None: monolithic
    loki_scalable: Any = None
    #: its object storage credentials (kaudit.adapters.storage_credentials.Credentials), for the Secret only
    storage_credentials: Any = None
    #: how often to look at the namespace while helm waits, in seconds
    watch_interval: float = 3.0
    shipper_image: Optional[str] = None
    #: send structured metadata to Loki (None: decide from the Loki version)
    structured_metadata: Optional[bool] = None
    verify_timeout: float = 60.0
    #: kaudit detect in the Loki ruler and the detections dashboard (kaudit.engine.phases.detect)
    detect: bool = True
    #: where the Loki ruler sends alerts (None: alerts only show in Grafana)
    alertmanager_url: Optional[str] = None

    # -- the vm phase (Lima) -----------------------------------------------------
    lima_template: Optional[str] = None
    lima_cpus: Optional[int] = None
    lima_memory: Optional[str] = None
    lima_disk: Optional[str] = None

    # -- kaudit down -------------------------------------------------------------
    remove_policy: bool = False
    purge_charts: bool = False

    #: phase names chosen for this run (after --only/--skip-phases)
    phases: tuple[str, ...] = field(default_factory=tuple)

    @property
    def audit_spec(self) -> Any:
        """The AuditSpec (an alias read by the verify phase)."""
        return self.spec

    @property
    def tenant(self) -> Optional[str]:
        """The Loki tenant (the name the collector phase reads)."""
        return self.loki_tenant

    def policy_source(self) -> str:
        """How the policy is named in messages."""
        return str(self.policy_file) if self.policy_file else f"the {self.policy_profile} profile"

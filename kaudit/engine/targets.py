"""Which nodes a run works on: the --host values (or an inventory's hosts) and how to reach them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

DEFAULT_HOST = "lima:k8s"


@dataclass(frozen=True)
class HostOptions:
    hosts: tuple[str, ...]
    rootfs: Optional[Path] = None
    ssh_key: Optional[Path] = None
    accept_new_host_key: bool = False
    known_hosts: Optional[Path] = None

    @classmethod
    def build(
        cls,
        host: Optional[List[str]],
        rootfs: Optional[Path] = None,
        ssh_key: Optional[Path] = None,
        accept_new_host_key: bool = False,
        known_hosts: Optional[Path] = None,
    ) -> "HostOptions":
        hosts = tuple(host) if host else (("local",) if rootfs else (DEFAULT_HOST,))
        return cls(hosts, rootfs, ssh_key, accept_new_host_key, known_hosts)

    def open(self, spec: str):
        """Open one host (a kaudit.adapters.hosts.base.Host)."""
        from kaudit.adapters.hosts import open_host

        return open_host(
            spec,
            rootfs=self.rootfs,
            ssh_key=self.ssh_key,
            accept_new_host_key=self.accept_new_host_key,
            known_hosts=self.known_hosts,
        )

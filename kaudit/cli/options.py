"""Options shared by every command that touches a node (--host, --rootfs, SSH)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typing import Annotated

HostOpt = Annotated[
    Optional[List[str]],
    typer.Option(
        "--host",
        help="Node to work on: lima:NAME (default lima:k8s), ssh://user@host[:port], or local. Repeat for several control-plane nodes.",
        show_default=False,
    ),
]
RootfsOpt = Annotated[
    Optional[Path],
    typer.Option("--rootfs", help="With --host local: treat DIR as the node's / (offline images, tests)."),
]
SshKeyOpt = Annotated[
    Optional[Path], typer.Option("--ssh-key", help="Private key for ssh:// hosts (default: the SSH agent and ~/.ssh).")
]
AcceptNewHostKeyOpt = Annotated[
    bool,
    typer.Option("--ssh-accept-new-host-key", help="Record an unknown SSH host key in known_hosts instead of refusing."),
]
KnownHostsOpt = Annotated[
    Optional[Path], typer.Option("--ssh-known-hosts", help="known_hosts file (default ~/.ssh/known_hosts).")
]

"""`kaudit destroy` and `kaudit vm status`: the Lima VM behind --host lima:NAME."""

from __future__ import annotations

import sys
from typing import Annotated, List, Optional

import typer

from kaudit.cli.options import HostOpt
from kaudit.engine.targets import DEFAULT_HOST

vm_app = typer.Typer(help="The Lima VM behind --host lima:NAME.\n\n\b\nExamples:\n  kaudit vm status\n  kaudit vm status --host lima:k8s -o json", no_args_is_help=True)

YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking (needed when stdin is not a terminal).")]


def _lima_names(hosts: Optional[List[str]]) -> list[str]:
    from kaudit.core.errors import UsageError
    from kaudit.adapters.hosts import open_host
    from kaudit.adapters.hosts.lima import LimaHost

    names = []
    for spec in hosts or [DEFAULT_HOST]:
        host = open_host(spec)
        if not isinstance(host, LimaHost):
            raise UsageError(f"--host {spec}: only Lima VMs (lima:NAME) can be managed here", "vm status and destroy work on Lima VMs; kaudit never deletes ssh:// or local nodes (kaudit verify checks them)")
        names.append(host.instance)
    return names


def destroy(
    ctx: typer.Context,
    host: HostOpt = None,
    yes: YesOpt = False,
) -> None:
    """Delete the Lima VM (limactl delete --force) and everything in it.

    Asks first on a terminal; elsewhere pass --yes.

    \b
    Examples:
      kaudit destroy --host lima:k8s
      kaudit destroy --host lima:k8s --yes
    """
    from kaudit.cli import state
    from kaudit.core.errors import UsageError
    from kaudit.adapters.hosts.local import LocalHost
    from kaudit.adapters.lima import Lima

    ui = state(ctx).ui
    names = _lima_names(host)  # bad --host values are usage errors, even without limactl
    lima = Lima(LocalHost())
    lima.version()
    for name in names:
        inst = lima.get(name)
        if inst is None:
            ui.skip(f"Lima VM {name} does not exist; nothing to delete")
            continue
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError(
                    f"refusing to delete Lima VM {name} without confirmation (stdin is not a terminal)",
                    f"pass --yes: kaudit destroy --host lima:{name} --yes",
                )
            if not typer.confirm(f"Delete Lima VM {name} ({inst.summary()}, {inst.dir}) and all its data?", default=False, err=True):
                ui.skip(f"kept Lima VM {name}")
                continue
        with ui.step(f"Deleting Lima VM {name} (limactl delete --force)"):
            lima.delete(name)


@vm_app.command("status")
def status(
    ctx: typer.Context,
    host: HostOpt = None,
    output: Annotated[str, typer.Option("--output", "-o", help="text or json")] = "text",
) -> None:
    """Show whether the Lima VM exists and runs, and where its kubeconfig is.

    Exit code 1 when a VM does not exist or is not running.

    \b
    Examples:
      kaudit vm status
      kaudit vm status --host lima:k8s -o json
    """
    import json

    from kaudit.core.errors import UsageError
    from kaudit.adapters.hosts.local import LocalHost
    from kaudit.adapters.lima import Lima

    if output not in ("text", "json"):
        raise UsageError(f"--output {output!r}: choose text or json")
    names = _lima_names(host)  # bad --host values are usage errors, even without limactl
    lima = Lima(LocalHost())
    version = lima.version()
    all_running = True
    for name in names:
        inst = lima.get(name)
        running = inst is not None and inst.status == "Running"
        all_running = all_running and running
        kubeconfig = str(inst.kubeconfig) if inst is not None and inst.kubeconfig.is_file() else None
        if output == "json":
            print(json.dumps({
                "name": name, "limaVersion": str(version),
                "status": inst.status if inst else "Absent",
                "dir": str(inst.dir) if inst else None,
                "cpus": inst.cpus if inst else None, "memory": inst.memory if inst else None,
                "disk": inst.disk if inst else None, "kubeconfig": kubeconfig,
            }))
        elif inst is None:
            print(f"lima:{name}: absent (create it: kaudit up --host lima:{name})")
        else:
            print(f"lima:{name}: {inst.summary()}, {inst.dir}")
            if kubeconfig:
                print(f'  export KUBECONFIG="{kubeconfig}"')
    if not all_running:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("destroy")(destroy)
    app.add_typer(vm_app, name="vm")

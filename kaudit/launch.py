"""The `kaudit` console script: dispatch `kaudit ship` straight to the stdlib shipper.

`kaudit ship` is a long-running collector; loading the full CLI (Typer, click, rich)
just to hand its arguments to the shipper's own argparse costs ~0.15 CPU-s and
~12 MB of RSS for its whole life. So `kaudit [-q|-v|--debug]... ship ARGS` runs
kaudit.shipper.main directly; everything else goes to the Typer app unchanged.
"""

from __future__ import annotations

import sys

#: root options that may come before `ship` without needing the full CLI
_ROOT_FLAGS = {"-q", "--quiet", "-v", "--verbose", "--debug"}


def _ship_args(argv: list[str]) -> list[str] | None:
    """The shipper's arguments if argv is `[root flags...] ship ...`, else None."""
    quiet = False
    for i, arg in enumerate(argv):
        if arg == "ship":
            rest = argv[i + 1:]
            if quiet and "-q" not in rest and "--quiet" not in rest:
                rest.append("--quiet")  # `kaudit -q ship ...`: only errors on stderr
            return rest
        if arg in _ROOT_FLAGS or (arg.startswith("-v") and set(arg[1:]) == {"v"}):
            quiet = quiet or arg in ("-q", "--quiet")
            continue
        return None
    return None


def main() -> None:
    args = _ship_args(sys.argv[1:])
    if args is not None:
        from kaudit.shipper.main import main as ship_main

        sys.exit(ship_main(args, prog="kaudit ship"))
    from kaudit.cli import main as cli_main

    cli_main()

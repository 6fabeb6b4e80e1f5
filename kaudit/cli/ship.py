"""`kaudit ship`: run the bundled shipper (kaudit.shipper) in the foreground.

The shipper has its own argparse interface because it also runs alone from a ConfigMap
(`python -m kaudit.shipper`); this command passes every argument through to it, so
both spell the options the same way and `kaudit ship --help` shows them all.
"""

from __future__ import annotations

import typer

HELP = (
    "Tail the kube-apiserver audit log and push it to Loki (the bundled shipper). "
    "Run `kaudit ship --help` for all options.\n\n"
    "\b\nExamples:\n  kaudit ship --path /var/log/kubernetes-audit/audit.log --loki-url http://loki:3100\n"
    "  kaudit ship --path audit.log --loki-url http://localhost:3100 --once --cluster lab"
)


def ship(ctx: typer.Context) -> None:
    from kaudit.cli import state
    from kaudit.shipper.main import main

    args = list(ctx.args)
    if state(ctx).ui.quiet and "-q" not in args and "--quiet" not in args:
        args.append("--quiet")  # `kaudit -q ship ...`: only errors on stderr
    code = main(args, prog="kaudit ship")
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command(
        "ship",
        help=HELP,
        add_help_option=False,  # --help goes to the shipper's own parser, which lists every option
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    )(ship)

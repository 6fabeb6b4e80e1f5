"""The kaudit command line: one Typer app, one error boundary.

Each command lives in its own module under kaudit/cli/ and registers itself via
``register(app)``. Command modules import only typer and light modules at top
level; heavy imports (ruamel, paramiko, requests, rich, jinja2) happen inside
the command, so ``kaudit --help`` stays fast.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Optional, Sequence

import typer

from kaudit import __version__
from kaudit.core.errors import ExitCode, KauditError
from kaudit.engine.ui import UI, report_error, report_internal_error

app = typer.Typer(
    name="kaudit",
    help="Kubernetes audit logging from kube-apiserver flags to Grafana/Loki, verified.\n\n"
    "\b\nExamples:\n  kaudit up\n  kaudit verify --host lima:k8s\n  kaudit detect --log /var/log/kubernetes-audit/",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass
class AppState:
    ui: UI = field(default_factory=UI)
    debug: bool = False


def state(ctx: typer.Context) -> AppState:
    """The AppState built by the root callback (a default one outside the CLI)."""
    root = ctx.find_root()
    if not isinstance(root.obj, AppState):
        root.obj = AppState()
    return root.obj


def _version(value: bool) -> None:
    if value:
        print(f"kaudit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More detail on stderr."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors on stderr."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    ctx.obj = AppState(ui=UI(verbose=verbose, quiet=quiet), debug=debug)


def _register_commands() -> None:
    from kaudit.cli import detect, manifest, policy, render, ship, up, verify, vm

    for module in (policy, manifest, up, vm, render, ship, verify, detect):
        module.register(app)


_register_commands()


def click_command():
    """The click command Typer builds from ``app``, with kubectl-style value names in --help."""
    import typer.main

    from kaudit.cli.help import kubectl_style

    return kubectl_style(typer.main.get_command(app))


def run(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI and return its exit code. This is the only error boundary."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        rv = click_command().main(args=args, prog_name="kaudit", standalone_mode=False)
        return int(rv) if isinstance(rv, int) else ExitCode.OK
    except KauditError as e:
        if debug:
            import traceback

            traceback.print_exc()
        report_error(e)
        return int(e.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Exception as e:  # click's own exceptions, matched by shape (typer may vendor click)
        name = type(e).__name__
        if name == "Abort":
            print("interrupted", file=sys.stderr)
            return ExitCode.INTERRUPTED
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):
            # click's usage errors, in kaudit's own shape: one error line and a hint
            ctx = getattr(e, "ctx", None)
            command = ctx.command_path if ctx is not None else "kaudit"
            print(f"error: {e.format_message()}", file=sys.stderr)
            print(f"hint: {command} --help lists the options", file=sys.stderr)
            return int(e.exit_code)
        if debug:
            raise
        report_internal_error(e)
        return ExitCode.ERROR
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else ExitCode.ERROR


def main() -> None:
    sys.exit(run())

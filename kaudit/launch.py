"""The `kaudit` console script: two commands skip the Typer app, everything else goes to it.

- `kaudit ship` is a long-running collector; loading the full CLI (Typer, click, rich)
  just to hand its arguments to the shipper's own argparse costs ~0.15 CPU-s and ~12 MB
  of RSS for its whole life. So `kaudit [-q|-v|--debug]... ship ARGS` runs
  kaudit.shipper.main directly.
- `kaudit detect --log ...` with only --log, --output/-o, --rules and --disable runs
  kaudit.engine.offline_detect.run_offline, the function the Typer command calls for the
  same options: Typer and pydantic take ~0.3 s to import, more than matching a 6 MB log.
  Any other option (--help included) goes to the Typer app, which parses and reports it.
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


#: `kaudit detect` options the fast path takes; each takes one value
_DETECT_OPTS = {"--log": "logs", "--rules": "rule_files", "--disable": "disable", "--output": "output", "-o": "output"}


def _detect_args(argv: list[str]) -> dict | None:
    """run_offline's arguments if argv is `detect` with --log and only the fast path's options."""
    if not argv or argv[0] != "detect":
        return None
    got: dict = {"logs": [], "rule_files": [], "disable": [], "output": "text"}
    rest = iter(argv[1:])
    for arg in rest:
        opt, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        key = _DETECT_OPTS.get(opt)
        if key is None:
            return None
        if not eq:
            value = next(rest, None)
            if value is None:
                return None
        if key == "output":
            from kaudit.engine.offline_detect import OUTPUTS

            if value not in OUTPUTS:
                return None  # Typer says which values it takes
            got["output"] = value
        else:
            got[key].append(value)
    return got if got["logs"] else None


def _detect(args: dict) -> int:
    """run_offline, with the Typer app's error boundary (the same messages and exit codes)."""
    from kaudit.core.errors import ExitCode, KauditError
    from kaudit.engine.offline_detect import run_offline
    from kaudit.engine.ui import report_error, report_internal_error

    try:
        return run_offline(**args)
    except KauditError as e:
        report_error(e)
        return int(e.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Exception as e:
        report_internal_error(e)
        return ExitCode.ERROR


def main() -> None:
    args = _ship_args(sys.argv[1:])
    if args is not None:
        from kaudit.shipper.main import main as ship_main

        sys.exit(ship_main(args, prog="kaudit ship"))
    detect_args = _detect_args(sys.argv[1:])
    if detect_args is not None:
        sys.exit(_detect(detect_args))
    from kaudit.cli import main as cli_main

    cli_main()

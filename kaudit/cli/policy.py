"""`kaudit policy`: print a packaged audit policy, or validate a policy file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from kaudit.core.errors import ExitCode, KauditError

PROFILE_NAMES = ("gce", "gce-modern")  # kaudit.core.policy.PROFILES, without importing ruamel at start-up

policy_app = typer.Typer(
    name="policy",
    help="Print kaudit's audit policy, validate a policy file, or simulate what a policy would write.\n\n"
    "\b\nExamples:\n  kaudit policy --profile gce-modern -o audit-policy.yaml\n  kaudit policy validate audit-policy.yaml\n"
    "  kaudit policy simulate --log audit.log --profile gce --profile gce-modern",
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
)


def _profile(value: str) -> str:
    if value not in PROFILE_NAMES:
        raise typer.BadParameter(f"{value!r} is not a profile; choose one of: {', '.join(PROFILE_NAMES)}")
    return value


@policy_app.callback()
def policy(
    ctx: typer.Context,
    profile: Annotated[
        str,
        typer.Option("--profile", "-p", callback=_profile, help=f"Which policy: {' or '.join(PROFILE_NAMES)}. gce is Google's GCE/COS policy rule for rule; gce-modern adds today's API groups and drops lease noise."),
    ] = "gce",
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="FILE", help="Write the policy to FILE (atomically) instead of stdout.")] = None,
) -> None:
    """Print the audit policy kaudit installs (Google's GCE/COS policy by default).

    \b
    Examples:
      kaudit policy
      kaudit policy --profile gce-modern -o audit-policy.yaml
    """
    if ctx.invoked_subcommand is not None:
        return
    from kaudit.cli import state
    from kaudit.core.policy import policy_text

    ui = state(ctx).ui
    text = policy_text(profile)
    if output:
        from kaudit.cli.manifest import _write_local

        _write_local(output, text)
        ui.ok(f"wrote the {profile} audit policy to {output}")
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


@policy_app.command("validate")
def validate(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(metavar="FILE", help="Policy file to check, or - for stdin.")],
) -> int:
    """Check an audit policy: what kube-apiserver would refuse, and typos it would silently accept.

    Every problem is listed on stderr with its rule index, field, line and column.

    \b
    Examples:
      kaudit policy validate /etc/kubernetes/audit-policy.yaml
      kaudit policy --profile gce | kaudit policy validate -
    """
    from kaudit.cli import state
    from kaudit.core.policy import PolicyError, check_policy

    ui = state(ctx).ui
    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as e:
        raise KauditError(f"cannot read {file}: {e.strerror}", "check the path") from None
    source = "<stdin>" if file == "-" else file
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise KauditError(f"{source}: not UTF-8 text (byte {e.start})", "give an audit Policy YAML file (kaudit policy prints one)") from None
    problems, warnings = check_policy(text, source)
    for w in warnings:
        ui.warn(w)
    if problems:
        hint = "fix what each line names (file:line:col, rule and field), then run this command again"
        if len(problems) == 1:
            raise PolicyError(problems, hint)
        for p in problems:
            ui.error(p)
        raise PolicyError([f"{source}: not a valid audit policy ({len(problems)} problems above)"], hint)
    ui.ok(f"{source}: valid audit policy" + (f" ({len(warnings)} warning(s))" if warnings else ""))
    return ExitCode.OK


def register(app: typer.Typer) -> None:
    from kaudit.cli import simulate

    simulate.register(policy_app)
    app.add_typer(policy_app, name="policy")

"""Help that reads like kubectl's: value names a kubectl or helm user knows (DURATION, SIZE, URL,
PATH, NAME, N), nothing after a flag that takes no value, and the choices of an option that has
a fixed set of them.

Typer shows a value's Python type (`<str>`, `<bool>`, `<int range>`); the click command it
builds is walked once here, and each option without an explicit metavar gets one from its
name and type. An option that sets its own metavar keeps it.
"""

from __future__ import annotations

import re
from typing import Any

#: (pattern on the option's long name, metavar), first match wins; names match whole words
BY_NAME: tuple[tuple[str, str], ...] = (
    (r"url", "URL"),
    (r"(timeout|interval|since|until|maxage|retention|wait|delay|backoff)", "DURATION"),
    (r"(size|bytes|memory|disk)", "SIZE"),
    (r"(addr|listen)", "HOST:PORT"),
    (r"host", "HOST"),
    (r"(file|path|dir|kubeconfig|rootfs|key|known-hosts|positions|html|manifest|log|audit-log|rules)", "PATH"),
    (r"(namespace|cluster|cluster-name|tenant|name|class|image|template|user|username|profile|bucket|region|job|node|release|stack|collector|mode|format|style|verb|resource|decision|disable)", "NAME"),
    (r"(output|structured-metadata)", "FORMAT"),
    (r"(labels?|dynamic-labels)", "KEY=VALUE"),
    (r"(cpus|parallel|replicas|max-retries|maxbackup)", "N"),
)


def _bare_type(param: Any) -> str:
    desc = getattr(param, "type_descriptor", None)  # typer's own options
    if desc is not None:
        return "path" if desc.is_path else getattr(desc.annotation, "__name__", "")
    return getattr(getattr(param, "type", None), "name", "")


def metavar_for(param: Any) -> str | None:
    """The metavar kaudit shows for one click parameter, or None to leave it as it is."""
    if getattr(param, "metavar", None) is not None:
        return None  # chosen by the option itself
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""  # a flag takes no value: show none
    choices = getattr(getattr(param, "type", None), "choices", None)
    if choices:
        return "|".join(str(c) for c in choices)
    longs = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    name = longs[0][2:] if longs else (param.name or "").replace("_", "-")
    for pattern, metavar in BY_NAME:
        if re.search(rf"(^|-){pattern}$", name):
            return metavar
    kind = _bare_type(param)
    if kind in ("int", "float", "integer", "integer range", "float range"):
        return "N"
    if kind in ("path", "Path", "file"):
        return "PATH"
    return "VALUE"


def kubectl_style(command: Any) -> Any:
    """Set the metavars of every option of ``command`` and of all its subcommands."""
    for param in getattr(command, "params", []):
        if getattr(param, "param_type_name", "") == "argument":
            if param.metavar:  # FILE says it; no Python type column after it
                param.display_type_rich = lambda ctx: None
            continue
        mv = metavar_for(param)
        if mv is not None:
            param.metavar = mv
    get_help_option = command.get_help_option

    def help_option(ctx):  # click adds --help itself, after the walk: it takes no value either
        opt = get_help_option(ctx)
        if opt is not None:
            opt.metavar = ""
        return opt

    command.get_help_option = help_option
    for sub in getattr(command, "commands", {}).values():
        kubectl_style(sub)
    return command

"""kaudit's own collector: tail the audit log, push to Loki. Standard library only,
so it runs from a ConfigMap on a stock python image.

Run it with ``python -m kaudit.shipper --path ... --loki-url ...`` (or ``kaudit ship``).
To run it where kaudit is not installed, write the files from ``shipper_sources()`` into a
directory D (keeping their relative paths) and run ``PYTHONPATH=D python -m kaudit.shipper``.
"""

from __future__ import annotations

import os

#: the modules the shipper needs, relative to this directory (nothing else is imported)
MODULES = ("__init__.py", "__main__.py", "fields.py", "payload.py", "positions.py", "tail.py", "client.py",
           "metrics.py", "proto.py", "pipeline.py", "spool.py", "webhook.py", "main.py")

_PACKAGE_INIT = '"""kaudit (shipper bundle: only kaudit.shipper is included)."""\n'


def shipper_sources() -> dict[str, str]:
    """{relative file name: source text} of exactly the files needed to run the shipper:
    kaudit/__init__.py (a one-line stand-in) and kaudit/shipper/*.py."""
    here = os.path.dirname(os.path.abspath(__file__))
    out = {"kaudit/__init__.py": _PACKAGE_INIT}
    for name in MODULES:
        with open(os.path.join(here, name), encoding="utf-8") as f:
            out[f"kaudit/shipper/{name}"] = f.read()
    return out


def configmap_key(relative_name: str) -> str:
    """A ConfigMap key for a source file (keys cannot hold '/'): kaudit/shipper/tail.py -> kaudit__shipper__tail.py.
    Mount with `items: [{key: <key>, path: <relative name>}]` to restore the layout."""
    return relative_name.replace("/", "__")

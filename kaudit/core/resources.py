"""Find the packaged templates/ and policies/ folders.

In a wheel they are the packages ``kaudit.templates`` and ``kaudit.policies``
(pyproject maps the top-level folders there). In a plain checkout that was not
installed, they are the folders beside ``kaudit/``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

Kind = Literal["templates", "policies"]


def resource_dir(kind: Kind) -> Path:
    try:
        root = resources.files(f"kaudit.{kind}")
        path = Path(str(root))
        if path.is_dir():
            return path
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / kind


def read_resource(kind: Kind, name: str) -> str:
    path = resource_dir(kind) / name
    return path.read_text(encoding="utf-8")

"""The wheel carries templates/ and policies/ as kaudit/templates and kaudit/policies,
and an installed kaudit finds them there rather than in a checkout.

Builds offline from a copy of the sources (no build isolation, so no download),
unpacks the wheel (which is what installing a pure-Python wheel does) and runs
kaudit from it in a fresh interpreter, away from the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("kaudit", "templates", "policies"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    dist = root / "dist"
    cp = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(src)],
        capture_output=True, text=True, timeout=120,
    )
    assert cp.returncode == 0, cp.stdout[-2000:] + cp.stderr[-2000:]
    (path,) = dist.glob("kaudit-*.whl")
    return path


def packaged(folder: str) -> set[str]:
    base = REPO / folder
    return {
        f"kaudit/{folder}/{p.relative_to(base).as_posix()}"
        for p in base.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def test_wheel_contains_templates_and_policies(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"kaudit/policies/gce.yaml", "kaudit/policies/gce-modern.yaml"} <= names
    assert packaged("policies") <= names
    assert packaged("templates") <= names
    assert not any(n.startswith(("templates/", "policies/")) for n in names)


def test_installed_wheel_finds_its_resources(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = (
        "import kaudit, kaudit.core.resources as r\n"
        "print(kaudit.__file__)\n"
        "print(r.resource_dir('policies'))\n"
        "print(r.resource_dir('templates'))\n"
    )
    cp = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=elsewhere, env=env, timeout=60)
    assert cp.returncode == 0, cp.stderr
    module, policies, templates = cp.stdout.split()
    assert module.startswith(str(site))
    assert policies == str(site / "kaudit" / "policies")
    assert templates == str(site / "kaudit" / "templates")

    cp = subprocess.run(
        [sys.executable, "-m", "kaudit", "policy", "--profile", "gce-modern"],
        capture_output=True, text=True, cwd=elsewhere, env=env, timeout=60,
    )
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == (site / "kaudit" / "policies" / "gce-modern.yaml").read_text()
    assert cp.stdout == (REPO / "policies" / "gce-modern.yaml").read_text()


def test_installed_wheel_carries_the_detection_rules(wheel, tmp_path):
    names = set(zipfile.ZipFile(wheel).namelist())
    rules = {f"kaudit/core/detect/rules/{p.name}" for p in (REPO / "kaudit" / "core" / "detect" / "rules").glob("*.yaml")}
    assert rules and rules <= names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site), "KAUDIT_CACHE_DIR": "off"}
    cp = subprocess.run([sys.executable, "-m", "kaudit", "detect", "--list", "-o", "json"],
                        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert cp.returncode == 0, cp.stderr
    import json

    doc = json.loads(cp.stdout)
    assert len(doc["rules"]) >= 30
    assert all(r["source"].startswith("kaudit/core/detect/rules/") for r in doc["rules"])

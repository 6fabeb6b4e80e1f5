"""Fixture `fake_lima`: the limactl double (tests/doubles/limactl) alone on PATH, with its state file.

A pytest plugin registered in conftest.py. The double keeps its state in
$FAKE_LIMA_STATE and its instance directories in $LIMA_HOME; tests arrange
instances with .add() and read what limactl was asked to do from .calls.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

DOUBLE = Path(__file__).resolve().parent / "doubles" / "limactl"


@dataclass
class FakeLima:
    state_path: Path
    home: Path

    def state(self) -> dict:
        if not self.state_path.exists():
            return {"version": "2.2.0", "instances": {}, "calls": []}
        return json.loads(self.state_path.read_text())

    def update(self, **fields) -> None:
        s = self.state()
        s.update(fields)
        self.state_path.write_text(json.dumps(s))

    def add(self, name: str, status: str = "Running", *, template: str = "k8s", kubeconfig: bool = True, **fields) -> Path:
        """An existing instance; a running k8s one has its kubeconfig copied out, as Lima does."""
        s = self.state()
        s["instances"][name] = {"status": status, "template": template, **fields}
        self.state_path.write_text(json.dumps(s))
        d = self.home / name
        d.mkdir(parents=True, exist_ok=True)
        if status == "Running" and kubeconfig:
            k = d / "copied-from-guest" / "kubeconfig.yaml"
            k.parent.mkdir(exist_ok=True)
            k.write_text("apiVersion: v1\nkind: Config\n")
        return d

    @property
    def calls(self) -> list[list[str]]:
        return self.state()["calls"]

    def status(self, name: str):
        inst = self.state()["instances"].get(name)
        return inst and inst["status"]


@pytest.fixture
def fake_lima(tmp_path, monkeypatch) -> FakeLima:
    bin_dir = tmp_path / "fake-lima-bin"
    bin_dir.mkdir()
    (bin_dir / "limactl").symlink_to(DOUBLE)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    state = tmp_path / "lima-state.json"
    home = tmp_path / "lima-home"
    monkeypatch.setenv("FAKE_LIMA_STATE", str(state))
    monkeypatch.setenv("LIMA_HOME", str(home))
    fake = FakeLima(state, home)
    fake.update()
    return fake

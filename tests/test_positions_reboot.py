"""A node reboot keeps each collector's positions, so a restart ships nothing twice.

kaudit puts every collector's positions on a hostPath under /var/lib (tests/test_chart_pins.py
and tests/test_helm_template.py check the rendered volumes). Here the collectors themselves
are restarted with the positions they wrote and must push no entry a second time: counted as
entries Loki received, duplicates included (Loki's own dedupe is no safety net: a sharded
stream stores a replay twice). The shipper always runs; Promtail runs where a promtail binary
is on PATH or in $KAUDIT_PROMTAIL.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from kaudit.core import render
from shipper_helpers import ShipperProc, append, base_args, make_events, pairs_in_lines, pairs_in_loki, wait_for
from loki_fixture import loki  # noqa: F401  (fixture)


def test_shipper_restart_with_positions_ships_nothing_twice(tmp_path, loki):
    log, positions = tmp_path / "audit.log", tmp_path / "pos.json"
    events = make_events(3000)
    append(log, events)
    code, err = ShipperProc(base_args(log, loki, positions, "--once")).wait()
    assert code == 0, err
    assert loki.received == len(events) and positions.exists()

    # the "reboot": a new process, the same positions file, two more events written meanwhile
    more = make_events(2, start=len(events))
    append(log, more)
    code, err = ShipperProc(base_args(log, loki, positions, "--once")).wait()
    assert code == 0, err
    assert loki.received == len(events) + len(more), "only the two new events were pushed"
    assert pairs_in_loki(loki) == pairs_in_lines(events + more)


def test_without_positions_everything_would_be_shipped_again(tmp_path, loki):
    # the failure the hostPath prevents: positions lost (tmpfs) -> every line pushed again
    log = tmp_path / "audit.log"
    events = make_events(500)
    append(log, events)
    assert ShipperProc(base_args(log, loki, tmp_path / "run" / "pos.json", "--once")).wait()[0] == 0
    shutil.rmtree(tmp_path / "run")
    assert ShipperProc(base_args(log, loki, tmp_path / "run" / "pos.json", "--once")).wait()[0] == 0
    assert loki.received == 2 * len(events)


def promtail_bin() -> str:
    path = os.environ.get("KAUDIT_PROMTAIL") or shutil.which("promtail")
    if not path:
        pytest.skip("no promtail binary: set KAUDIT_PROMTAIL or put promtail on PATH")
    return path


def promtail_config(tmp_path: Path, log: Path, loki) -> Path:
    """kaudit's own promtail-config render, with the node paths moved into tmp_path."""
    s = render.CollectorSettings(log_path=str(log), loki_url=loki.url).checked()
    text = render.render_collector_config("promtail-config", s)
    text = text.replace("/var/lib/promtail/positions.yaml", str(tmp_path / "positions.yaml"))
    text = text.replace("http_listen_port: 9080", "http_listen_port: 0")
    path = tmp_path / "promtail.yaml"
    path.write_text(text)
    return path


def run_promtail(binary: str, config: Path, until, env: dict) -> None:
    proc = subprocess.Popen([binary, f"-config.file={config}", "-config.expand-env=true"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(until, what="promtail shipped", timeout=60)
        time.sleep(1.5)  # promtail saves positions every 10s by default and on shutdown
    finally:
        proc.terminate()
        proc.wait(20)


def test_promtail_restart_with_kaudit_positions_ships_nothing_twice(tmp_path, loki):
    binary = promtail_bin()
    log = tmp_path / "audit.log"
    events = make_events(300)
    append(log, events)
    config = promtail_config(tmp_path, log, loki)
    env = {**os.environ, "HOSTNAME": "cp1"}
    run_promtail(binary, config, lambda: loki.received >= len(events), env)
    assert (tmp_path / "positions.yaml").exists()
    more = make_events(2, start=len(events))
    append(log, more)
    run_promtail(binary, config, lambda: loki.received >= len(events) + len(more), env)
    time.sleep(1)
    assert loki.received == len(events) + len(more)
    assert pairs_in_loki(loki) == pairs_in_lines(events + more)

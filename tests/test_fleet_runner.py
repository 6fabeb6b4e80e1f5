"""The inventory runner itself: at most --parallel clusters at once, failures stay with their
cluster, and the progress display is rich on a terminal and plain lines elsewhere."""

from __future__ import annotations

import io
import threading
import time

from kaudit.engine.fleet import ClusterResult, run_all
from kaudit.core.inventory import ClusterEntry, Inventory
from kaudit.core.errors import KauditError
from kaudit.engine.ui import UI


def inventory(n: int) -> Inventory:
    return Inventory("clusters.yaml", tuple(ClusterEntry(f"c{i}", (f"lima:c{i}",)) for i in range(n)))


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_at_most_parallel_clusters_run_at_once_and_all_run():
    lock = threading.Lock()
    running, peak, seen = [0], [0], []

    def work(c, ui):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            seen.append(c.name)
        ui.info(f"working on {c.name}")
        time.sleep(0.15)
        with lock:
            running[0] -= 1
        return ClusterResult(c.name, True, "done", 0.0)

    stream = io.StringIO()
    results = run_all(UI(stream=stream), inventory(6), work, parallel=2, verb="up")
    assert peak[0] == 2 and sorted(seen) == [f"c{i}" for i in range(6)]
    assert [r.name for r in results] == [f"c{i}" for i in range(6)]  # the file's order, whatever finished first
    text = stream.getvalue()
    assert "[c3] working on c3" in text and "6 cluster(s) from clusters.yaml, 2 at a time" in text
    assert "all 6 cluster(s) ok" in text


def test_one_failure_and_one_bug_do_not_stop_the_others():
    def work(c, ui):
        if c.name == "c1":
            raise KauditError("ssh://root@10.0.0.9:22: connection refused", "check sshd")
        if c.name == "c2":
            raise ZeroDivisionError("boom")
        return ClusterResult(c.name, True, "changed 3", 0.0)

    stream = io.StringIO()
    results = run_all(UI(stream=stream), inventory(4), work, parallel=4, verb="up")
    assert [r.ok for r in results] == [True, False, False, True]
    assert results[1].detail == "ssh://root@10.0.0.9:22: connection refused (check sshd)"
    assert "internal error: ZeroDivisionError" in results[2].detail
    text = stream.getvalue()
    assert "2 of 4 cluster(s) failed: c1, c2" in text
    summary = text[text.index("kaudit up summary (clusters)"):].splitlines()
    assert summary[1].split() == ["cluster", "result", "time", "detail"]
    assert summary[3].split()[:2] == ["c1", "FAILED"]


def test_a_terminal_gets_a_live_table_and_a_rich_summary():
    stream = Tty()

    def work(c, ui):
        assert not ui.is_tty  # no nested status lines under the live table
        ui.info("step one")
        return ClusterResult(c.name, c.name != "c1", "fine" if c.name != "c1" else "broken", 0.0)

    run_all(UI(stream=stream), inventory(2), work, parallel=2, verb="verify")
    text = stream.getvalue()
    assert "[c0] step one" not in text  # lines go to the live table, not the scrollback
    assert "kaudit verify: clusters" in text and "FAILED" in text and "broken" in text
    assert "\x1b[" in text  # rich drew it

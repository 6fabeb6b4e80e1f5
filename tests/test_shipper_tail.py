"""Following a file across rename and copy-truncate rotation; positions written atomically."""

from __future__ import annotations

import json
import os

import pytest

from kaudit.shipper.positions import Position, Positions, PositionsError
from kaudit.shipper.tail import Follower, rotated_backups


def drain(f: Follower) -> list[tuple[bytes, int]]:
    """(line, end offset) of everything readable now."""
    out = []
    for _ in range(1000):
        c = f.read()
        if c is None:
            return out
        out.extend(zip(c.lines, c.ends()))
    raise AssertionError("follower never ran dry")


def lines(pairs):
    return [l for l, _ in pairs]


def append(path, *ls, end=b"\n"):
    with open(path, "ab") as fh:
        fh.write(b"\n".join(ls) + end)


def test_reads_complete_lines_and_waits_for_a_partial_one(tmp_path):
    p = tmp_path / "audit.log"
    append(p, b"a1", b"a2")
    append(p, b"par", end=b"")
    f = Follower(str(p))
    f.resume(None)
    got = drain(f)
    assert got == [(b"a1", 3), (b"a2", 6)]
    assert f.pending_bytes == 3 and f.at_end
    append(p, b"tial", b"b")
    assert drain(f) == [(b"partial", 14), (b"b", 16)]


def test_rename_rotation_finishes_the_old_file_then_follows_the_new_one(tmp_path):
    p = tmp_path / "audit.log"
    append(p, b"1", b"2")
    f = Follower(str(p))
    f.resume(None)
    assert lines(drain(f)) == [b"1", b"2"]
    append(p, b"3")  # written before the rotation, not read yet
    os.rename(p, tmp_path / "audit-2026-11-28T23-13-43.957.log")
    append(p, b"4")
    assert lines(drain(f)) == [b"3", b"4"]
    assert f.rotations == 1 and f.at_end


def test_copy_truncate_restarts_at_zero(tmp_path):
    p = tmp_path / "audit.log"
    append(p, b"first-line-long", b"second-line-long")
    f = Follower(str(p))
    f.resume(None)
    drain(f)
    with open(p, "r+b") as fh:
        fh.truncate(0)
    append(p, b"x")
    assert drain(f) == [(b"x", 2)]
    assert f.truncations == 1


def test_start_at_end_skips_existing_lines(tmp_path):
    p = tmp_path / "audit.log"
    append(p, b"old")
    f = Follower(str(p), start_at="end")
    pos = f.resume(None)
    assert pos.offset == 4
    append(p, b"new")
    assert lines(drain(f)) == [b"new"]


def test_resume_finds_a_file_rotated_while_stopped_by_inode_and_newer_backups(tmp_path):
    p = tmp_path / "audit.log"
    append(p, b"a", b"b")
    st = os.stat(p)
    saved = Position(st.st_dev, st.st_ino, 2, str(p))  # "a" was acknowledged
    os.rename(p, tmp_path / "audit-2026-01-01T00-00-00.000.log")
    append(p, b"c")
    os.rename(p, tmp_path / "audit-2026-01-02T00-00-00.000.log")
    append(p, b"d")
    (tmp_path / "audit-2025-12-31T00-00-00.000.log.gz").write_bytes(b"\x1f\x8bnot read")
    (tmp_path / "audit-2025-12-30T00-00-00.000.log").write_bytes(b"older, already shipped\n")
    f = Follower(str(p))
    f.resume(saved)
    assert lines(drain(f)) == [b"b", b"c", b"d"]
    assert any("rotated while stopped" in n for n in f.notes)


def test_resume_at_saved_offset_and_truncated_while_stopped(tmp_path):
    p = tmp_path / "audit.log"
    append(p, b"aaaa", b"bbbb")
    st = os.stat(p)
    f = Follower(str(p))
    f.resume(Position(st.st_dev, st.st_ino, 5, str(p)))
    assert lines(drain(f)) == [b"bbbb"]
    g = Follower(str(p))
    g.resume(Position(st.st_dev, st.st_ino, 999, str(p)))
    assert lines(drain(g)) == [b"aaaa", b"bbbb"] and g.truncations == 1


def test_last_line_of_a_rotated_file_without_newline_is_complete(tmp_path):
    p = tmp_path / "audit.log"
    append(p, b"x", b"cut", end=b"")
    f = Follower(str(p))
    f.resume(None)
    assert lines(drain(f)) == [b"x"]
    os.rename(p, tmp_path / "audit-2026-01-01T00-00-00.000.log")
    append(p, b"y")
    got = drain(f)
    assert got == [(b"cut", 5), (b"y", 2)]  # the offset of "cut" is the old file's end


def test_rotated_backups_are_lumberjack_names_without_gz(tmp_path):
    for n in ("audit.log", "audit-2026-01-02T00-00-00.000.log", "audit-2026-01-01T00-00-00.000.log",
              "audit-2026-01-01T00-00-00.000.log.gz", "other.log", "audit.log.1"):
        (tmp_path / n).write_bytes(b"")
    assert [os.path.basename(x) for x in rotated_backups(str(tmp_path / "audit.log"))] == [
        "audit-2026-01-01T00-00-00.000.log", "audit-2026-01-02T00-00-00.000.log"]


def test_positions_are_saved_atomically_and_reloaded(tmp_path):
    path = tmp_path / "state" / "positions.json"
    pos = Positions(str(path))
    pos.set("/var/log/audit.log", Position(1, 2, 3, "/var/log/audit.log"))
    pos.save()
    assert json.loads(path.read_text())["files"]["/var/log/audit.log"] == {"dev": 1, "ino": 2, "offset": 3, "file": "/var/log/audit.log"}
    assert os.listdir(path.parent) == ["positions.json"]  # no temp file left behind
    assert Positions(str(path)).load().get("/var/log/audit.log") == Position(1, 2, 3, "/var/log/audit.log")


def test_a_corrupt_positions_file_is_a_clear_error(tmp_path):
    path = tmp_path / "positions.json"
    path.write_text("{half")
    with pytest.raises(PositionsError, match=r"positions.json is not valid .* move it away"):
        Positions(str(path)).load()


def test_unwritable_positions_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    pos = Positions(str(blocker / "positions.json"))
    pos.set("a", Position(1, 2, 3))
    with pytest.raises(PositionsError, match="cannot write positions file"):
        pos.save()


def test_two_rotations_between_reads_skip_no_file(tmp_path):
    p = tmp_path / "audit.log"
    append(p, b"1")
    f = Follower(str(p))
    f.resume(None)
    assert lines(drain(f)) == [b"1"]
    append(p, b"2")
    os.rename(p, tmp_path / "audit-2026-01-01T00-00-00.000.log")
    append(p, b"3")
    os.rename(p, tmp_path / "audit-2026-01-02T00-00-00.000.log")
    append(p, b"4")
    assert lines(drain(f)) == [b"2", b"3", b"4"]

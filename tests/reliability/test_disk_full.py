"""Issue 16, case 4: the disk under a SQLite study (and its artifacts) fills up.

The study lives on a small tmpfs of the test's own (``mount -t tmpfs -o size=4m``; as
root; the tests skip with the reason where mounting is not permitted). While the search
runs, the test fills the tmpfs with a file:

- completely (``--min-free 0``, the guard off): the next write fails; the driver stops
  with one line naming the folder and its free space, exit 75; the study file opens
  and passes ``PRAGMA integrity_check``; after the file is removed the same command
  resumes and finishes with every earlier trial kept;
- to below ``--min-free``: the driver starts no new trial, records the running one,
  stops with one line (exit 75) and leaves nothing RUNNING; a rerun refuses to start
  while the space is still short; after freeing it, the rerun finishes.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from reliability_helpers import (
    assert_kept,
    assert_study_sound,
    check_records,
    fault_while_running,
    load,
    run_nas,
    snapshot,
    status_counts,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def tmpfs(tmp_path: Path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({p.stderr.strip() or p.returncode}); "
                    "the disk-full tests need root and mount permission")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(path: Path, leave: int = 0) -> int:
    """Write ``path`` until the disk is full, then give back ``leave`` bytes; its size."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for size in (65536, 4096, 512, 1):  # to the last byte
            chunk = b"\0" * size
            try:
                while os.write(fd, chunk):
                    pass
            except OSError:
                continue
    finally:
        os.close(fd)
    size = path.stat().st_size
    if leave:
        os.truncate(path, max(0, size - leave))
    return size


def _intact(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _cmd(url: str, trials: int, *extra: str) -> list[str]:
    return ["search", "--space", "quick", "--study", "d", "--storage", url, "--trials",
            str(trials), "--evaluator", "fake", "--executor", "local", "--quiet", *extra]


def _trained(url: str) -> int:
    c = status_counts(url, "d")
    return c["complete"] + c["stopped"] + c["failed"]


def test_disk_fills_up_completely(tmpfs: Path, tmp_path: Path) -> None:
    db = tmpfs / "studies.db"
    url = f"sqlite:///{db}"
    cmd = _cmd(url, 12, "--min-free", "0")
    d, rc, took, _ = fault_while_running(cmd, tmp_path, lambda: _trained(url) >= 3,
                                         "3 trained trials", lambda _: _fill(tmpfs / "filler"),
                                         timeout=60, NAS_FAKE_SLEEP="0.2")
    err = d.stderr
    assert rc == 75, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"nas search: error: --storage {url}: no space left on the disk "
                           f"({tmpfs} has "), last
    assert "free some space and run the same command again" in last, last
    _intact(db)
    study = load(url, "d")
    check_records(study)
    before = snapshot(url, "d")
    left = sum(t.state.name == "RUNNING" for t in study.trials)
    (tmpfs / "filler").unlink()
    r = run_nas(cmd, tmp_path, NAS_FAKE_SLEEP="0")
    assert r.returncode == 0, r.stderr[-3000:]
    _intact(db)
    assert_kept(before, url, "d")
    states = assert_study_sound(load(url, "d"), 12)
    print(f"disk full: exit 75 {took:.1f} s after the disk filled, {len(before)} finished "
          f"trials kept, {left} left RUNNING and recovered by the rerun; {dict(states)}\n"
          f"  {last}")


def test_free_space_below_min_free_stops_cleanly(tmpfs: Path, tmp_path: Path) -> None:
    db = tmpfs / "studies.db"
    url = f"sqlite:///{db}"
    cmd = _cmd(url, 12, "--min-free", "2MiB")
    d, rc, took, _ = fault_while_running(
        cmd, tmp_path, lambda: _trained(url) >= 3, "3 trained trials",
        lambda _: _fill(tmpfs / "filler", leave=256 * 1024), timeout=60, NAS_FAKE_SLEEP="0.2")
    err = d.stderr
    assert rc == 75, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("nas search: error: stopped starting new trials: "
                           f"{tmpfs} has "), last
    assert "below --min-free 2.0 MiB" in last and "run the same command again" in last, last
    _intact(db)
    study = load(url, "d")
    check_records(study)
    assert not [t.number for t in study.trials if t.state.name == "RUNNING"]
    before = snapshot(url, "d")
    # Still short of space: refuses to start (or, when closing the study gave back the
    # space of its write-ahead log, starts no trial); trains nothing.
    r = run_nas(cmd, tmp_path)
    assert r.returncode == 75 and "below --min-free 2.0 MiB" in r.stderr, r.stderr[-2000:]
    assert snapshot(url, "d") == before
    (tmpfs / "filler").unlink()
    r = run_nas(cmd, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    _intact(db)
    assert_kept(before, url, "d")
    states = assert_study_sound(load(url, "d"), 12)
    print(f"below --min-free: exit 75 {took:.1f} s after, {len(before)} trials kept, none "
          f"RUNNING; {dict(states)}\n  {last}")

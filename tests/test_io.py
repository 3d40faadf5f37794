"""Atomic writes give files the mode a plain open() would: not mkstemp's private 0600."""

from __future__ import annotations

import os
import stat

import pytest

from nas._io import atomic_open, atomic_write_text


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_new_file_mode_follows_the_umask(tmp_path, umask, expected):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        with atomic_open(tmp_path / "b.bin", "wb") as f:
            f.write(b"x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.txt") == _mode(tmp_path / "b.bin") == expected


def test_replacing_a_file_keeps_its_mode(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("old")
    os.chmod(p, 0o640)
    atomic_write_text(p, "new")
    assert p.read_text() == "new" and _mode(p) == 0o640
    assert [q.name for q in tmp_path.iterdir()] == ["a.txt"]  # no temp file left

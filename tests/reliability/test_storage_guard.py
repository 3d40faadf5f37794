"""The storage guard's decisions, without a server: which errors are retried, for how
long, and what the user reads (the PostgreSQL and tmpfs tests show them for real)."""

from __future__ import annotations

import io
import sqlite3
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc as sa

from nas.cli.search import duration, size
from nas.search.storage import Abort, StorageGuard

PG = "postgresql://nas:secret@db.example:5432/nas"


def _lost() -> Exception:
    """What Optuna raises when the server went away during a commit."""
    try:
        try:
            raise sa.OperationalError("COMMIT", {}, Exception(
                "server closed the connection unexpectedly"))
        except sa.OperationalError as e:
            raise optuna.exceptions.StorageInternalError(
                "An exception is raised during the commit. This typically happens due to "
                "invalid data in the commit, e.g. exceeding max length. ") from e
    except optuna.exceptions.StorageInternalError as e:
        return e


def test_a_lost_connection_is_retried_until_it_comes_back() -> None:
    out = io.StringIO()
    g = StorageGuard(PG, retry_s=30, out=out)
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise _lost()
        return "ok"

    assert g.call(flaky) == "ok" and len(calls) == 3
    assert len(g.outages) == 1 and g.down_since is None
    text = out.getvalue()
    assert "database is unreachable (server closed the connection unexpectedly)" in text
    assert "database is back after" in text and "max length" not in text


def test_past_the_bound_one_line_without_the_password_or_optunas_text() -> None:
    g = StorageGuard(PG, retry_s=0.5, out=io.StringIO())
    t0 = time.monotonic()
    with pytest.raises(Abort) as e:
        g.call(lambda: (_ for _ in ()).throw(_lost()))
    assert time.monotonic() - t0 < 3
    msg = e.value.message
    assert "\n" not in msg and "secret" not in msg and "max length" not in msg, msg
    assert msg.startswith("--storage postgresql://nas:***@db.example:5432/nas: the database "
                          "has been unreachable for"), msg
    assert "gave up after --db-retry 0.5s" in msg and "run the same command again" in msg
    # once given up, later calls (the wind-up) fail at once instead of waiting again
    t0 = time.monotonic()
    with pytest.raises(Abort):
        g.call(lambda: (_ for _ in ()).throw(_lost()))
    assert time.monotonic() - t0 < 0.5


def test_other_errors_are_not_retried() -> None:
    g = StorageGuard(PG, retry_s=30, out=io.StringIO())
    with pytest.raises(KeyError):
        g.call(lambda: {}["x"])
    with pytest.raises(sa.IntegrityError):
        g.call(lambda: (_ for _ in ()).throw(sa.IntegrityError("INSERT", {}, Exception("dup"))))


def test_sqlite_disk_full_names_the_folder_and_its_free_space(tmp_path: Path) -> None:
    g = StorageGuard(f"sqlite:///{tmp_path}/s.db", retry_s=30, out=io.StringIO())
    full = sa.OperationalError("COMMIT", {}, sqlite3.OperationalError(
        "database or disk is full"))
    with pytest.raises(Abort) as e:
        g.call(lambda: (_ for _ in ()).throw(full))
    assert f"no space left on the disk ({tmp_path} has " in e.value.message
    assert "free some space and run the same command again" in e.value.message
    locked = sa.OperationalError("COMMIT", {}, sqlite3.OperationalError("database is locked"))
    assert g.classify(locked) == "transient"
    gone = sa.OperationalError("x", {}, sqlite3.OperationalError("unable to open database file"))
    assert g.classify(gone) is None


def test_low_disk_threshold(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    assert StorageGuard(url, min_free=0).low_disk() is None
    assert StorageGuard(url, min_free=1).low_disk() is None
    low = StorageGuard(url, min_free=2**60).low_disk()
    assert low and str(tmp_path) in low and "below --min-free" in low


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("2m", 120), ("1.5h", 5400),
                                          ("45", 45)])
def test_durations(text: str, seconds: float) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize("text,n", [("100MiB", 100 * 2**20), ("1GB", 10**9), ("0", 0),
                                    ("512k", 512 * 1024)])
def test_sizes(text: str, n: float) -> None:
    assert size(text) == n

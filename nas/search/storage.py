"""The study storage as the driver uses it: retried through a database restart, guarded
against a full disk (docs/reliability.md, "Faults on a cluster").

- ``StorageGuard.wrap(storage)``: a proxy of Optuna's storage whose every call is retried
  while the database is unreachable (a refused or lost connection: SQLAlchemy's
  ``OperationalError``/``InterfaceError``/``DisconnectionError``, or Optuna's
  ``StorageInternalError`` raised from one, whose own text blames "invalid data ...
  exceeding max length"), with exponential backoff, for at most ``retry_s`` seconds
  (``--db-retry``) counted from the start of the outage. Every call waits on the same
  outage clock, so a result that arrives while the database is away is written once it
  is back; the caller waits, nothing is dropped or written twice. Past the bound it
  raises ``Abort`` with one line saying how to continue. ``call(fn)`` retries any
  function the same way (``records`` runs its one-transaction writes through it).
- A full disk under a SQLite study (``database or disk is full``, ``ENOSPC``) is not
  retried: ``Abort`` naming the folder and its free space. SQLite rolls the failed
  transaction back, so the study file stays intact.
- ``low_disk()``: a message when the study's folder (SQLite) or the artifact folder has
  less than ``min_free`` bytes free (``--min-free``): the driver then starts no new trial,
  records the running ones and stops, before the disk is full.

``Abort`` is a ``BaseException``, like ``KeyboardInterrupt``: Ray Tune and Optuna catch
``Exception`` in their callbacks (a searcher callback that raises becomes a failed trial
there), and an unreachable database must stop the search instead.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, TextIO, TypeVar

__all__ = ["Abort", "StorageGuard", "RetryingStorage", "retrying", "fmt_bytes", "shown_url"]

T = TypeVar("T")
EX_TEMPFAIL = 75  # sysexits.h: a temporary failure; running the command again may work


class Abort(BaseException):
    """Stop the search now (an infrastructure fault), with one line for the user."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason  # the fail_reason of the trials it leaves unfinished


def fmt_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def shown_url(url: str) -> str:
    """The storage URL without its password (for messages)."""
    try:
        from sqlalchemy.engine import make_url
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a message must never fail
        return url


def _chain(e: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    x: BaseException | None = e
    while x is not None and x not in out and len(out) < 8:
        out.append(x)
        x = x.__cause__ or x.__context__
    return out


def _first_line(e: BaseException) -> str:
    """The first line of the root cause (the driver's own words, not Optuna's
    ``StorageInternalError`` text, which blames "invalid data ... exceeding max length")."""
    import optuna

    chain = [x for x in _chain(e) if not isinstance(x, optuna.exceptions.StorageInternalError)]
    x = chain[0] if chain else e
    text = str(getattr(x, "orig", None) or x).strip()
    return (text.splitlines() or [type(x).__name__])[0][:200]


class StorageGuard:
    """Retry policy and disk checks for one storage URL (see the module docstring)."""

    def __init__(self, url: str, retry_s: float = 120.0, min_free: float = 0.0,
                 artifact_dir: str | os.PathLike[str] | None = None,
                 out: TextIO | None = None) -> None:
        self.url = url
        self.shown = shown_url(url)
        self.retry_s = float(retry_s)
        self.min_free = float(min_free)
        self.sqlite = url.startswith("sqlite:")
        self.folders: list[Path] = []
        if self.sqlite:
            db = url.split(":///", 1)[-1]
            self.folders.append(Path(db).resolve().parent)
        if artifact_dir is not None and Path(artifact_dir).resolve().parent not in self.folders:
            self.folders.append(Path(artifact_dir).resolve().parent)
        self.out = out if out is not None else sys.stderr
        self.down_since: float | None = None
        self.gave_up = False
        self.outages: list[float] = []  # seconds each survived outage lasted
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ classification
    def classify(self, e: BaseException) -> str | None:
        """'full' (disk full under SQLite), 'transient' (retry) or None (a real error)."""
        import sqlalchemy.exc as sa

        for x in _chain(e):
            if isinstance(x, OSError) and x.errno == errno.ENOSPC:
                return "full"
            msg = str(x).lower()
            if isinstance(x, (sqlite3.Error, sa.DBAPIError)) and "disk is full" in msg:
                return "full"
            if self.sqlite:
                if isinstance(x, (sqlite3.OperationalError, sa.OperationalError)) and \
                        "database is locked" in msg:
                    return "transient"
                continue
            if isinstance(x, (sa.OperationalError, sa.InterfaceError, sa.DisconnectionError)):
                return "transient"
            if isinstance(x, sa.DBAPIError) and x.connection_invalidated:
                return "transient"
        return None

    # ------------------------------------------------------------------ retry
    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, retried through an outage of at most ``retry_s``."""
        delay = 0.2
        while True:
            try:
                out = fn(*args, **kwargs)
            except Exception as e:
                kind = self.classify(e)
                if kind == "full":
                    raise Abort(self.full_message(), "driver stopped: disk full") from None
                if kind != "transient":
                    raise
                waited = self._down(e)
                if self.gave_up or waited >= self.retry_s:
                    self.gave_up = True
                    raise Abort(self.unreachable_message(e, waited),
                                "driver stopped: database unreachable") from None
                time.sleep(min(delay, max(0.05, self.retry_s - waited)))
                delay = min(delay * 2, 2.0)  # back within 2 s of the database
                continue
            if self.down_since is not None:
                self._up()
            return out

    def _down(self, e: BaseException) -> float:
        now = time.monotonic()
        with self._lock:
            if self.down_since is None:
                self.down_since = now
                self._say(f"nas search: the database is unreachable ({_first_line(e)}); "
                          f"retrying for up to {self.retry_s:g} s (--db-retry)")
            return now - self.down_since

    def _up(self) -> None:
        with self._lock:
            if self.down_since is None:
                return
            took = time.monotonic() - self.down_since
            self.down_since = None
            self.outages.append(took)
            self._say(f"nas search: the database is back after {took:.1f} s; continuing")

    def _say(self, line: str) -> None:
        try:
            self.out.write(line + "\n")
            self.out.flush()
        except (OSError, ValueError):
            pass

    def unreachable_message(self, e: BaseException, waited: float) -> str:
        return (f"--storage {self.shown}: the database has been unreachable for "
                f"{waited:.0f} s ({_first_line(e)}); gave up after --db-retry "
                f"{self.retry_s:g}s. Finished trials are kept: run the same command again "
                "once the database is back to resume (trials that were running are "
                "re-queued), or allow a longer outage with --db-retry")

    # ------------------------------------------------------------------ disk
    def free(self) -> list[tuple[Path, int]]:
        """(folder, free bytes) of each folder the study writes into (existing ones)."""
        out = []
        for f in self.folders:
            p = f
            while not p.exists() and p != p.parent:
                p = p.parent
            try:
                usage = shutil.disk_usage(p)
            except OSError:
                continue
            if usage.total > 0:  # pseudo file systems (/proc) report no sizes at all
                out.append((f, usage.free))
        return out

    def full_message(self) -> str:
        where = ", ".join(f"{f} has {fmt_bytes(n)} free" for f, n in self.free()) or \
            "free space unknown"
        return (f"--storage {self.shown}: no space left on the disk ({where}); stopped. "
                "The study is intact (the failed write was rolled back): free some space "
                "and run the same command again to resume")

    def low_disk(self) -> str | None:
        """Why no new trial should start (free space below --min-free), else None."""
        if self.min_free <= 0:
            return None
        low = [(f, n) for f, n in self.free() if n < self.min_free]
        if not low:
            return None
        where = ", ".join(f"{f} has {fmt_bytes(n)} free" for f, n in low)
        return (f"{where}, below --min-free {fmt_bytes(self.min_free)}; free some space "
                "(or lower --min-free) and run the same command again to resume")

    # ------------------------------------------------------------------ the proxy
    def wrap(self, storage: Any) -> "RetryingStorage":
        """Optuna's storage behind this guard (pass it to create_study/load_study)."""
        from optuna.storages import RDBStorage

        from nas.search._optuna import cached_storage

        if isinstance(storage, RDBStorage):
            storage = cached_storage(storage)
        return RetryingStorage(storage, self)


class RetryingStorage:
    """Optuna storage proxy: every method call goes through ``StorageGuard.call``.

    Attributes that are not methods (the cache's RDB backend, which ``records`` uses for
    its one-transaction writes and retries itself) pass through unchanged; ``inner`` is
    the storage it wraps.
    """

    def __init__(self, inner: Any, guard: StorageGuard) -> None:
        self._inner = inner
        self.guard = guard

    @property
    def inner(self) -> Any:
        """The wrapped Optuna storage."""
        return self._inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr) or name.startswith("__"):
            return attr
        guard = self.guard

        def retried(*args: Any, **kwargs: Any) -> Any:
            return guard.call(attr, *args, **kwargs)

        return retried


def retrying(study: Any, fn: Callable[[], T]) -> T:
    """``fn()`` retried by the study's storage guard when it has one, else called once."""
    from nas.search._optuna import storage_of

    guard = getattr(storage_of(study), "guard", None)
    if isinstance(guard, StorageGuard):
        return guard.call(fn)
    return fn()

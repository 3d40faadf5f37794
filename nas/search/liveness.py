"""Which drivers are alive: so a driver recovers only trials whose driver is gone.

Several drivers may search one study at once (a shared PostgreSQL or SQLite storage). A
trial left RUNNING is *orphaned* (its driver crashed; recover it) only when its driver is
dead; a live driver's running trials must not be touched. Each driver therefore

- registers itself in the study's system attrs as ``nas:driver:<id>`` with its host, pid,
  process start time and a heartbeat time, refreshed every ``HEARTBEAT_S`` by a daemon
  thread, and marks the entry ``ended`` when it exits normally;
- stamps every trial it asks with the system attr ``nas:driver`` = its id.

A driver is dead when its entry is ``ended``; or, on this host, when its pid is gone or
belongs to a newer process (start time differs): known at once, so a resume right after a
crash recovers immediately; or, on another host, when its heartbeat is older than
``GRACE_S``. A RUNNING trial without a stamp (its driver died between creating it and
stamping it, a few milliseconds) is orphaned when no other live driver exists, or when it
is older than ``GRACE_S``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from datetime import datetime
from typing import Any, Mapping

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.search import _optuna
from nas.search.storage import Abort

__all__ = ["DriverRegistry", "DRIVER_KEY", "HEARTBEAT_S", "GRACE_S"]

DRIVER_KEY = "nas:driver"
_PREFIX = "nas:driver:"
HEARTBEAT_S = 10.0
GRACE_S = 60.0


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    # Field 22; the command name (field 2) may contain spaces, so split after its ')'.
    return stat.rsplit(")", 1)[1].split()[19]


def _machine() -> str:
    """This machine: host name plus boot id, so two machines (or containers) that share a
    host name are not mistaken for one (a pid is only meaningful on its own machine)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()[:8]
    except OSError:
        boot = "?"
    return f"{socket.gethostname()}/{boot}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DriverRegistry:
    """This driver's entry in a study, its heartbeat, and liveness of the others."""

    def __init__(self, study: optuna.Study, heartbeat_s: float = HEARTBEAT_S,
                 grace_s: float = GRACE_S) -> None:
        self.study = study
        self.heartbeat_s = heartbeat_s
        self.grace_s = grace_s
        self.host = _machine()
        self.pid = os.getpid()
        self.id = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ own entry
    def _entry(self, ended: bool = False) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "start": _proc_start(self.pid),
                "beat": time.time(), "ended": ended}

    def _write(self, ended: bool = False) -> None:
        _optuna.storage_of(self.study).set_study_system_attr(
            _optuna.study_id(self.study), _PREFIX + self.id, self._entry(ended))

    def start(self) -> None:
        """Register and start the heartbeat thread."""
        self._write()
        self._thread = threading.Thread(target=self._beat, name="nas-driver-heartbeat",
                                        daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self._write()
            except (Exception, Abort):  # noqa: BLE001 - a missed beat is retried next time;
                pass  # the main thread meets the same fault and stops the search itself

    def stop(self) -> None:
        """Stop the heartbeat and mark this driver ended (a normal exit)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._write(ended=True)

    def stamp(self, trial_id: int) -> None:
        """Mark a trial as this driver's."""
        _optuna.storage_of(self.study).set_trial_system_attr(trial_id, DRIVER_KEY, self.id)

    # ------------------------------------------------------------------ the others
    def entries(self) -> dict[str, Mapping[str, Any]]:
        """Every registered driver id -> its entry."""
        attrs = _optuna.storage_of(self.study).get_study_system_attrs(
            _optuna.study_id(self.study))
        return {k[len(_PREFIX):]: v for k, v in attrs.items()
                if k.startswith(_PREFIX) and isinstance(v, Mapping)}

    def alive(self, driver_id: str, entries: Mapping[str, Mapping[str, Any]]) -> bool:
        """Whether the driver ``driver_id`` is still running (see the module docstring)."""
        if driver_id == self.id:
            return True
        e = entries.get(driver_id)
        if e is None or e.get("ended"):
            return False
        if e.get("host") == self.host:
            pid = int(e.get("pid", -1))
            return pid > 0 and _pid_alive(pid) and _proc_start(pid) == e.get("start")
        return time.time() - float(e.get("beat", 0)) < self.grace_s

    def orphaned(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        """RUNNING trials whose driver is dead (to be recovered)."""
        running = [t for t in trials if t.state == TrialState.RUNNING]
        if not running:
            return []
        entries = self.entries()
        others_alive = any(self.alive(d, entries) for d in entries if d != self.id)
        out = []
        for t in running:
            owner = t.system_attrs.get(DRIVER_KEY)
            if owner is not None:
                if not self.alive(owner, entries):
                    out.append(t)
            elif not others_alive or _age_s(t) > self.grace_s:
                out.append(t)
        return out


def _age_s(t: FrozenTrial) -> float:
    start = t.datetime_start
    return (datetime.now() - start).total_seconds() if start else float("inf")

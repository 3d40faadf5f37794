"""How a run ends: the time-budget deadline, Ctrl-C held back during a record, the
checks that stop new trials, and recording the trials still running."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from nas.search.progress import Progress
from nas.search.searcher import AskTellSearcher
from nas.search.storage import Abort

__all__ = ["Deadline", "Halt", "SigintGuard", "wind_up"]


class Deadline:
    """Ends the run at a wall-clock deadline: the searcher proposes nothing more and the
    main thread gets a KeyboardInterrupt (through the SIGINT guard, so never in the middle
    of a record), which records the running trials as FAIL and re-queues them."""

    def __init__(self, core: AskTellSearcher, seconds_left: float | None) -> None:
        self.core = core
        self.fired = False
        # interrupting only helps when the search runs in the main thread (the CLI); in
        # another thread the run ends when the running trials finish
        self._interrupt = threading.current_thread() is threading.main_thread()
        self._lock = threading.Lock()
        self._done = False
        self._timer: threading.Timer | None = None
        if seconds_left is not None:
            self._timer = threading.Timer(max(0.0, seconds_left), self._fire)
            self._timer.daemon = True

    def start(self) -> None:
        if self._timer is not None:
            self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            self.core.closed = True
            if self._interrupt:
                import _thread
                _thread.interrupt_main()

    def stop(self) -> None:
        with self._lock:
            self._done = True
        if self._timer is not None:
            self._timer.cancel()


class SigintGuard:
    """Holds Ctrl-C back while a record is written; raises KeyboardInterrupt after it."""

    def __init__(self) -> None:
        self.depth = 0
        self.pending = False
        self.installed = False
        self._old: Any = None

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
            self.installed = True

    def uninstall(self) -> None:
        if self.installed:
            signal.signal(signal.SIGINT, self._old)
            self.installed = False

    def _handler(self, signum: int, frame: Any) -> None:
        if self.depth > 0:
            self.pending = True
        else:
            raise KeyboardInterrupt

    @contextmanager
    def __call__(self) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if self.depth == 0 and self.pending:
                self.pending = False
                raise KeyboardInterrupt


class Halt:
    """Why no new trial should start (the first check that says so), else None."""

    def __init__(self, *checks: Callable[[], str | None]) -> None:
        self.checks = checks
        self.reason: str | None = None

    def __call__(self) -> str | None:
        if self.reason is None:
            self.reason = next((r for r in (c() for c in self.checks) if r), None)
        return self.reason


def wind_up(core: AskTellSearcher, progress: Progress, reason: str,
             aborted: Abort | None) -> None:
    """Record the trials still running as FAIL ``reason`` and re-queue them; after an
    ``Abort`` (database gone, disk full), say which could not be, then re-raise it."""
    try:
        core.abandon(reason)
        progress.close()
    except Abort as again:
        aborted = aborted or again
        left = len(core.in_flight) + 1
        aborted.message += (f"; up to {left} running trial(s) could not be recorded: the "
                            "next run marks them failed and re-queues them")
        core.in_flight.clear()
    if aborted is not None:
        raise aborted

"""The Ray head's watch: with ``--address``, notice within seconds that the head is gone
(its GCS port refuses connections) and stop the search with one line, instead of the
minute Ray's driver spends reconnecting. Plain sockets and threads: no Ray import."""

from __future__ import annotations

import _thread
import os
import socket
import sys
import threading
import time
from typing import Callable

__all__ = ["HeadWatch"]


class HeadWatch:
    """With ``--address``: a thread that checks the head's GCS port every second. Gone
    for ``lost_after_s``: interrupt the main thread (``run_tune`` turns it into an
    ``Abort`` with one line). The main thread is often stuck in a call to the head's
    GCS that only gives up after a minute (Tune creating its next trial): if it has not
    come back within ``exit_after_s``, this thread records the running trials itself
    (``on_lost``: FAIL "Ray head lost", re-queued), prints the line and exits 75."""

    def __init__(self, address: str, on_lost: Callable[[], None],
                 lost_after_s: float = 5.0, exit_after_s: float = 3.0) -> None:
        self.on_lost = on_lost
        host, _, port = address.split("://", 1)[-1].rpartition(":")
        self.address = address
        self.target = (host.strip("[]"), int(port))
        self.lost_after_s = lost_after_s
        self.exit_after_s = exit_after_s
        self.lost = False
        self.handled = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nas-head-watch", daemon=True)

    def start(self) -> "HeadWatch":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _reachable(self) -> bool:
        try:
            with socket.create_connection(self.target, timeout=1.0):
                return True
        except OSError:
            return False

    def message(self) -> str:
        return (f"--address {self.address}: the Ray head has been unreachable for "
                f"{self.lost_after_s:g} s; stopped. Finished trials are kept and the running "
                "ones re-queued: start the head again (ray start --head ...) and run the "
                "same command to resume")

    def _run(self) -> None:
        down_since: float | None = None
        while not self._stop.wait(1.0):
            if self._reachable():
                down_since = None
                continue
            now = time.monotonic()
            down_since = down_since or now
            if now - down_since >= self.lost_after_s:
                break
        else:
            return
        self.lost = True
        _thread.interrupt_main()
        if self.handled.wait(self.exit_after_s) or self._stop.is_set():
            return
        try:
            self.on_lost()
        except BaseException:  # noqa: BLE001 - the next run recovers what is left RUNNING
            pass
        sys.stderr.write(f"nas search: error: {self.message()}\n")
        sys.stderr.flush()
        os._exit(75)

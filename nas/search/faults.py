"""Fault injection for the reliability tests: kill the driver at a named point.

TEST HOOK ONLY. ``NAS_FAULTPOINT=name:n[,name:n...]`` makes the driver process kill itself
with SIGKILL (no cleanup, no ``finally``, no flush: a real crash) the n-th time it reaches
the named point. Unset (the normal case) every call is a dictionary lookup and returns.

Points (where they sit, and what a crash there leaves behind):

- ``before_ask``      the study is open, nothing asked yet
- ``after_ask``       a trial was just created RUNNING (no params, no owner yet)
- ``mid_sample``      some parameters of the trial are set, not all
- ``after_claim``     the trial is sampled and claimed (status running), not yet training
- ``after_report``    a rung's intermediate value was just written
- ``mid_record``      a finished trial's attributes are written, its state is not (RUNNING)
- ``after_tell``      a trial was just told (finished)
- ``during_requeue``  a crashed/interrupted trial's configuration is re-enqueued, the
                      trial itself is not yet marked FAIL
- ``after_create``    the study exists but is not initialised (no attrs, no warm start)

Every crash must be recoverable by running the same command again; tests/reliability
checks each point.
"""

from __future__ import annotations

import os
import signal

__all__ = ["faultpoint", "POINTS"]

POINTS = ("before_ask", "after_ask", "mid_sample", "after_claim", "after_report",
          "mid_record", "after_tell", "during_requeue", "after_create")

_counts: dict[str, int] = {}
_ENV = "NAS_FAULTPOINT"


def _targets() -> dict[str, int]:
    spec = os.environ.get(_ENV, "")
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, n = part.partition(":")
        out[name] = int(n or 1)
    return out


def faultpoint(name: str) -> None:
    """Test hook: SIGKILL this process the n-th time ``name`` is reached (see module doc).

    A no-op unless ``NAS_FAULTPOINT`` names this point.
    """
    if _ENV not in os.environ:
        return
    want = _targets().get(name)
    if want is None:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == want:
        os.kill(os.getpid(), signal.SIGKILL)

"""The test suite's evaluator: ``nas.search.testing``'s fake plus injected faults and
planted effects. Tests select it with ``--evaluator tests.faulty_evaluator`` (or
``EvaluatorSpec.of_module(FAULTY)``); the Ray workers import it like any evaluator, by
its import path (the tests run with the checkout on ``PYTHONPATH``, see ``conftest.py``).

Faults travel in the data spec, the one string that reaches every worker unchanged
(environment variables set in a test would not reach an already running Ray):
``"synthetic|KIND:FIELD=VALUE|..."`` applies KIND to every trial whose
FusionConfig/TrainConfig field FIELD prints as VALUE, at its first rung (before reporting
it, so the outcome never races the scheduler's stop decision):

- ``exit``       ``os._exit(3)``: the worker process dies
- ``kill``       SIGKILL to itself: the worker process dies
- ``raise``      raises RuntimeError
- ``nan``        every metric is NaN (from the first rung)
- ``exit_once``  ``exit`` on the first attempt of each configuration only (a marker file
                 in the folder given as ``exit_once:FIELD=VALUE@DIR``); a retry succeeds
- ``hang``       the trial never reports its first rung (sleeps an hour); with
                 ``hang:FIELD=VALUE@DIR`` it first writes ``DIR/hang-<pid>`` (tests check
                 that ``--trial-timeout`` ended that process)
- ``sleep``      ``sleep:SECONDS`` per rung, on every trial (like ``NAS_FAKE_SLEEP``, which
                 does not reach the workers of a cluster started elsewhere)
- ``forbid``     ``forbid:PATH`` raises if this worker process has PATH open or sees it in
                 its environment (checks that only the driver touches the study storage)

Planted effects (for the verdict tests, where the true effect of a variant must be known):

- ``plant``      ``plant:FIELD=VALUE@recall=+6,query_gflops=+0.5``: trials whose field
                 FIELD prints as VALUE get these additions to their recall (every rung) and
                 to their costs (any key of ``fake_estimate_costs``)
- ``noise``      ``noise:SD``: seed noise, recall + SD * N(0, 1) drawn from (config id, seed)

With either rule present the fake is in *planted mode*: the per-config offset of
``fake_quality`` is dropped, so a variant changes recall only by what is planted (and by
the size and text terms, for variants that change width, layers or text conditioning).
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import signal
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from nas.search.testing import (
    FakeData,
    FakeResult,
    fake_estimate_costs,
    fake_quality,
    fake_run,
    fake_sleep,
)

__all__ = ["FAULTY", "Fault", "FaultyData", "parse_faults", "load_data", "train_proxy",
           "estimate_costs"]

FAULTY = "tests.faulty_evaluator"  # the import path tests hand to --evaluator

FAULT_KINDS = ("exit", "kill", "raise", "nan", "exit_once", "forbid", "sleep", "hang",
               "plant", "noise")
_EVERY_TRIAL = ("forbid", "sleep", "noise")  # rules without a FIELD=VALUE selector
_PLANTED = ("plant", "noise")  # effects, not faults: never triggered


@dataclass(frozen=True)
class Fault:
    """One injected fault: ``kind`` on trials whose ``field`` prints as ``value``."""

    kind: str
    field: str = ""
    value: str = ""
    where: str = ""  # exit_once/hang: a folder; forbid: the path; sleep/noise: a number

    def applies(self, fusion: Any, train: Any) -> bool:
        if self.kind in _EVERY_TRIAL:
            return True
        for cfg in (fusion, train):
            if hasattr(cfg, self.field):
                return _fmt(getattr(cfg, self.field)) == self.value
        return False


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return f"{v:g}" if isinstance(v, float) else str(v)


def parse_faults(spec: str) -> tuple[str, tuple[Fault, ...]]:
    """``"name|kind:field=value|..."`` -> (name, faults); see the module docstring."""
    name, *rules = spec.split("|")
    out = []
    for r in rules:
        kind, _, rest = r.partition(":")
        if kind not in FAULT_KINDS:
            raise ValueError(f"faulty data spec {spec!r}: unknown fault {kind!r}; choose from "
                             f"{', '.join(FAULT_KINDS)}")
        if kind in _EVERY_TRIAL:
            out.append(Fault(kind, where=rest))
            continue
        sel, _, where = rest.partition("@")
        field, _, value = sel.partition("=")
        out.append(Fault(kind, field, value, where))
    return name, tuple(out)


@dataclass
class FaultyData(FakeData):
    """The fake data set with the faults of its spec."""

    faults: tuple[Fault, ...] = ()


def load_data(spec: str) -> FaultyData:
    """The fake data set, named by the whole spec, with the fault rules after ``|``."""
    _, faults = parse_faults(spec)
    return FaultyData(spec, faults=faults)


estimate_costs = fake_estimate_costs


def _check_storage_untouched(where: str) -> None:
    """``forbid``: this worker must neither hold ``where`` open nor see it in its env."""
    path = os.path.realpath(where)
    fds = "/proc/self/fd"
    for fd in os.listdir(fds):
        try:
            target = os.readlink(os.path.join(fds, fd))
        except OSError:
            continue
        if target.startswith(path):
            raise RuntimeError(f"worker {os.getpid()} has the study storage open: {target}")
    if any(where in v or path in v for v in os.environ.values()):
        raise RuntimeError(f"worker {os.getpid()} sees the study storage in its env")


def _exit_once(where: str, fusion: Any) -> None:
    marker = os.path.join(where, f"attempted-{fusion.fusion_id}")
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return  # the retry: succeed
    os.close(fd)
    os._exit(3)


def _hang(where: str) -> None:
    if where:
        open(os.path.join(where, f"hang-{os.getpid()}"), "w").close()
    time.sleep(3600)


def _raise(f: Fault) -> None:
    raise RuntimeError(f"injected fault: {f.field}={f.value}")


_ACTIONS: dict[str, Callable[[Fault, Any], None]] = {
    "exit": lambda f, fusion: os._exit(3),
    "kill": lambda f, fusion: os.kill(os.getpid(), signal.SIGKILL),
    "raise": lambda f, fusion: _raise(f),
    "exit_once": lambda f, fusion: _exit_once(f.where, fusion),
    "hang": lambda f, fusion: _hang(f.where),
    "forbid": lambda f, fusion: _check_storage_untouched(f.where),
}


def _trigger(faults: Sequence[Fault], fusion: Any) -> None:
    """Carry out the worker-process faults (the other kinds act through the curve)."""
    for f in faults:
        action = _ACTIONS.get(f.kind)
        if action is not None:
            action(f, fusion)


def _planted(faults: Sequence[Fault]) -> dict[str, float]:
    """Sum of the planted additions of the ``plant`` rules in ``faults`` (key -> delta)."""
    out: dict[str, float] = {}
    for f in faults:
        if f.kind == "plant":
            for part in filter(None, f.where.split(",")):
                key, _, delta = part.partition("=")
                out[key.strip()] = out.get(key.strip(), 0.0) + float(delta)
    return out


def _seed_noise(fusion: Any, train: Any, faults: Sequence[Fault]) -> float:
    """``noise`` rule: SD * N(0, 1), a pure function of (config id, seed)."""
    sd = sum(float(f.where) for f in faults if f.kind == "noise")
    if not sd:
        return 0.0
    digest = hashlib.sha256(f"{fusion.fusion_id}:{train.seed}".encode()).hexdigest()
    return sd * random.Random(int(digest[:16], 16)).gauss(0.0, 1.0)


def train_proxy(fusion: Any, train: Any, data: Any, rungs: Sequence[float] | None = None,
                report: Callable[[int, dict], bool | None] | None = None) -> FakeResult:
    """``fake_train_proxy`` with the faults and planted effects of ``data``."""
    every = tuple(getattr(data, "faults", ()))
    sleep = max([fake_sleep()] + [float(f.where) for f in every if f.kind == "sleep"])
    faults = [f for f in every if f.applies(fusion, train)]
    planted_mode = any(f.kind in _PLANTED for f in every)
    ceiling = fake_quality(fusion, train, offset=not planted_mode)
    if any(f.kind == "nan" for f in faults):
        ceiling = math.nan
    deltas = _planted(faults)
    shift = deltas.pop("recall", 0.0) + _seed_noise(fusion, train, faults)
    return fake_run(fusion, train, rungs, report, ceiling=ceiling, shift=shift, sleep=sleep,
                    before_first_report=lambda: _trigger(faults, fusion), cost_deltas=deltas)

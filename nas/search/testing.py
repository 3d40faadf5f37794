"""A deterministic fake evaluator with the real one's signatures (no torch, no Ray).

Like ``optuna.testing``: reusable fakes that live in the package so the search can be
tested (and demonstrated) without training anything. Plug them in with
``EvaluatorSpec.fake()`` or ``nas search --evaluator fake``.

- ``fake_load_data(spec)`` -> an object with ``name``, ``shapes`` and ``val.n_clips``.
- ``fake_estimate_costs(cfg, shapes, gallery, measure_latency)`` -> params and GFLOPs that
  grow with width, layers and text conditioning (as the real counts do).
- ``fake_train_proxy(fusion, train, data, rungs, report)`` -> a result whose recall rises
  with epochs towards a ceiling that grows with the model size, plus a per-config offset
  from its id; ``train.lr >= 0.5`` raises ``TrainingFailed`` (to test failures).
  ``NAS_FAKE_SLEEP`` (seconds per rung) slows it down for interruption tests.

Injected worker faults (for the reliability tests). They travel in the data spec, the one
string that reaches every worker unchanged (environment variables set in a test would
not reach an already running Ray): ``"synthetic|KIND:FIELD=VALUE|..."`` applies KIND to
every trial whose FusionConfig/TrainConfig field FIELD prints as VALUE, at its first rung
(before reporting it, so the outcome never races the scheduler's stop decision):

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
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from nas.errors import TrainingFailed

__all__ = ["Fault", "parse_faults", "FakeData", "FakeResult", "FakeShapes", "fake_estimate_costs",
           "fake_load_data", "fake_train_proxy", "fake_quality"]


@dataclass(frozen=True)
class FakeShapes:
    """Same fields as ``nas.data.DataShapes``."""

    video_dim: int = 16
    audio_dim: int = 12
    text_dim: int = 16
    frames: int = 4
    audio_tokens: int = 6
    text_tokens: int = 3


@dataclass
class _FakeSplit:
    n_clips: int
    n_texts: int


@dataclass(frozen=True)
class Fault:
    """One injected fault: ``kind`` on trials whose ``field`` prints as ``value``."""

    kind: str
    field: str = ""
    value: str = ""
    where: str = ""  # exit_once: marker folder; forbid: the path

    def applies(self, fusion: Any, train: Any) -> bool:
        if self.kind in ("forbid", "sleep", "noise"):
            return True
        for cfg in (fusion, train):
            if hasattr(cfg, self.field):
                v = getattr(cfg, self.field)
                return _fmt(v) == self.value
        return False


FAULT_KINDS = ("exit", "kill", "raise", "nan", "exit_once", "forbid", "sleep", "hang",
               "plant", "noise")
_PLANTED = ("plant", "noise")  # effects, not faults: never triggered


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
            raise ValueError(f"fake data spec {spec!r}: unknown fault {kind!r}; choose from "
                             f"{', '.join(FAULT_KINDS)}")
        if kind in ("forbid", "sleep", "noise"):
            out.append(Fault(kind, where=rest))
            continue
        sel, _, where = rest.partition("@")
        field, _, value = sel.partition("=")
        out.append(Fault(kind, field, value, where))
    return name, tuple(out)


def _trigger(f: Fault, fusion: Any) -> None:
    """Carry out a worker-process fault (exit, kill, raise, exit_once, forbid)."""
    if f.kind in _PLANTED:
        return
    if f.kind == "exit":
        os._exit(3)
    if f.kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if f.kind == "raise":
        raise RuntimeError(f"injected fault: {f.field}={f.value}")
    if f.kind == "exit_once":
        marker = os.path.join(f.where, f"attempted-{fusion.fusion_id}")
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return  # the retry: succeed
        os.close(fd)
        os._exit(3)
    if f.kind == "sleep":
        return
    if f.kind == "hang":
        if f.where:
            open(os.path.join(f.where, f"hang-{os.getpid()}"), "w").close()
        time.sleep(3600)
    if f.kind == "forbid":
        path = os.path.realpath(f.where)
        fds = "/proc/self/fd"
        for fd in os.listdir(fds):
            try:
                target = os.readlink(os.path.join(fds, fd))
            except OSError:
                continue
            if target.startswith(path):
                raise RuntimeError(f"worker {os.getpid()} has the study storage open: {target}")
        if any(f.where in v or path in v for v in os.environ.values()):
            raise RuntimeError(f"worker {os.getpid()} sees the study storage in its env")


@dataclass
class FakeData:
    """Stands in for ``RetrievalData``: name, shapes, and split sizes (+ injected faults)."""

    name: str
    shapes: FakeShapes
    train: _FakeSplit
    val: _FakeSplit
    test: _FakeSplit | None = None
    faults: tuple[Fault, ...] = ()


@dataclass
class FakeResult:
    """Same fields as ``nas.train.TrainResult``."""

    metrics: dict[str, float]
    costs: dict[str, float]
    gate_stats: dict
    epochs: float
    stopped: bool
    wall_s: float
    history: list[dict] = field(default_factory=list)


def fake_load_data(spec: str) -> FakeData:
    """A fake data set; ``spec`` is recorded as its name (no files are read). Fault rules
    after ``|`` are parsed (see the module docstring)."""
    _, faults = parse_faults(spec)
    return FakeData(spec, FakeShapes(), _FakeSplit(64, 128), _FakeSplit(32, 64),
                    faults=faults)


def fake_estimate_costs(cfg: Any, shapes: Any = None, gallery: int = 1000,
                        measure_latency: bool = False) -> dict[str, float]:
    """Deterministic costs that behave like the real ones (bigger = costlier)."""
    per_pass = 2.0 * cfg.layers * cfg.width ** 2 * 12 * cfg.max_frames / 1e9
    text_side = 2.0 * cfg.text_dim * cfg.width / 1e9
    fused = gallery if cfg.rerank_k == 0 else min(cfg.rerank_k, gallery)
    query = text_side + (fused * per_pass if cfg.text_conditioned else gallery * cfg.width / 1e9)
    costs = {
        "params": float(cfg.layers * 12 * cfg.width ** 2 + cfg.width * (cfg.video_dim
                                                                      + cfg.audio_dim)),
        "index_gflops": per_pass,
        "query_gflops": query,
    }
    if measure_latency:
        costs["latency_ms"] = 0.1 + 1000.0 * query / 50.0
    return costs


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


def fake_quality(fusion: Any, train: Any, planted: bool = False) -> float:
    """The recall ceiling of a config: grows with size, plus a fixed per-config offset
    (none in planted mode)."""
    offset = 0.0 if planted else int(fusion.fusion_id[:6], 16) % 1000 / 1000.0
    text = 15.0 if fusion.text_conditioned else 0.0
    lr_term = -5.0 * abs(math.log10(train.lr) + 3.0)  # best near lr = 1e-3
    return (60.0 + 12.0 * math.log2(fusion.width / 16) + 6.0 * fusion.layers + text
            + lr_term + 10.0 * offset)


def fake_train_proxy(fusion: Any, train: Any, data: Any, rungs: Sequence[float] | None = None,
                     report: Callable[[int, dict], bool | None] | None = None) -> FakeResult:
    """Pretend to train: recall(e) = ceiling * (1 - exp(-e)); see the module docstring."""
    t0 = time.perf_counter()
    rungs = list(rungs or [train.epochs])
    sleep = float(os.environ.get("NAS_FAKE_SLEEP", "0") or 0)
    for f in getattr(data, "faults", ()):
        if f.kind == "sleep":
            sleep = max(sleep, float(f.where))
    faults = [f for f in getattr(data, "faults", ()) if f.applies(fusion, train)]
    planted_mode = any(f.kind in _PLANTED for f in getattr(data, "faults", ()))
    ceiling = fake_quality(fusion, train, planted_mode)
    planted = _planted(faults)
    shift = planted.pop("recall", 0.0) + _seed_noise(fusion, train, faults)
    if any(f.kind == "nan" for f in faults):
        ceiling = math.nan
    history: list[dict] = []
    stopped = False
    metrics: dict[str, float] = {}
    for i, e in enumerate(rungs):
        if train.lr >= 0.5:
            raise TrainingFailed(f"fake training at epoch {e:g} step 1: loss is nan "
                                 f"(lr {train.lr:g} too high)")
        if sleep:
            time.sleep(sleep)
        recall = (min(300.0, ceiling * (1.0 - math.exp(-e))) + shift if ceiling == ceiling
                  else math.nan)
        metrics = {"recall": recall, "v2t_recall": 0.9 * recall,
                   "t2v_r1": recall / 6, "t2v_r5": recall / 3, "t2v_r10": recall / 2,
                   "t2v_mdr": max(1.0, 20.0 - recall / 10), "t2v_mnr": max(1.0, 40.0 - recall / 5),
                   "epochs": float(e), "wall_s": time.perf_counter() - t0}
        history.append(dict(metrics))
        if i == 0:  # before the first report: the outcome does not race the scheduler
            for f in faults:
                _trigger(f, fusion)
        stop = report is not None and report(i, dict(metrics))
        if stop and i < len(rungs) - 1:
            stopped = True
            break
    gates = {"layer0/attn": {"mean": 0.1, "std": 0.05, "saturation": 0.0, "kind": "tanh"},
             "warnings": []}
    costs = fake_estimate_costs(fusion, None)
    for key, delta in planted.items():
        costs[key] = costs.get(key, 0.0) + delta
    return FakeResult(metrics=metrics, costs=costs,
                      gate_stats=gates, epochs=float(metrics.get("epochs", 0.0)),
                      stopped=stopped, wall_s=time.perf_counter() - t0, history=history)

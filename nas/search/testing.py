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

``fake_run`` is the training curve itself, with the knobs a test evaluator needs to build
on it (a different ceiling, a recall shift, a sleep, a hook before the first report,
cost additions); the test suite's fault-injecting evaluator (``tests/faulty_evaluator.py``)
is one.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from nas.config import COST_GALLERY
from nas.errors import TrainingFailed

__all__ = ["FakeData", "FakeResult", "FakeShapes", "fake_estimate_costs", "fake_load_data",
           "fake_train_proxy", "fake_quality", "fake_run"]


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


@dataclass
class FakeData:
    """Stands in for ``RetrievalData``: name, shapes, and split sizes."""

    name: str
    shapes: FakeShapes = field(default_factory=FakeShapes)
    train: _FakeSplit = field(default_factory=lambda: _FakeSplit(64, 128))
    val: _FakeSplit = field(default_factory=lambda: _FakeSplit(32, 64))
    test: _FakeSplit | None = None


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
    """A fake data set; ``spec`` is recorded as its name (no files are read)."""
    return FakeData(spec)


def fake_estimate_costs(cfg: Any, shapes: Any = None, gallery: int = COST_GALLERY,
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


def fake_quality(fusion: Any, train: Any, offset: bool = True) -> float:
    """The recall ceiling of a config: grows with size, plus a fixed per-config offset
    (left out with ``offset=False``)."""
    off = int(fusion.fusion_id[:6], 16) % 1000 / 1000.0 if offset else 0.0
    text = 15.0 if fusion.text_conditioned else 0.0
    lr_term = -5.0 * abs(math.log10(train.lr) + 3.0)  # best near lr = 1e-3
    return (60.0 + 12.0 * math.log2(fusion.width / 16) + 6.0 * fusion.layers + text
            + lr_term + 10.0 * off)


def fake_sleep() -> float:
    """Seconds per rung from ``NAS_FAKE_SLEEP`` (0 when unset)."""
    return float(os.environ.get("NAS_FAKE_SLEEP", "0") or 0)


def fake_train_proxy(fusion: Any, train: Any, data: Any, rungs: Sequence[float] | None = None,
                     report: Callable[[int, dict], bool | None] | None = None) -> FakeResult:
    """Pretend to train: recall(e) = ceiling * (1 - exp(-e)); see the module docstring."""
    return fake_run(fusion, train, rungs, report, ceiling=fake_quality(fusion, train),
                    sleep=fake_sleep())


def fake_run(fusion: Any, train: Any, rungs: Sequence[float] | None,
             report: Callable[[int, dict], bool | None] | None, *, ceiling: float,
             shift: float = 0.0, sleep: float = 0.0,
             before_first_report: Callable[[], None] | None = None,
             cost_deltas: Mapping[str, float] | None = None) -> FakeResult:
    """The fake training curve: recall(e) = min(300, ceiling * (1 - exp(-e))) + shift at
    each rung (NaN when ``ceiling`` is), ``sleep`` seconds per rung, ``before_first_report``
    called once before the first rung is reported (so what it does never races the
    scheduler's stop decision), ``cost_deltas`` added to ``fake_estimate_costs``."""
    t0 = time.perf_counter()
    rungs = list(rungs or [train.epochs])
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
        if i == 0 and before_first_report is not None:
            before_first_report()
        stop = report is not None and report(i, dict(metrics))
        if stop and i < len(rungs) - 1:
            stopped = True
            break
    gates = {"layer0/attn": {"mean": 0.1, "std": 0.05, "saturation": 0.0, "kind": "tanh"},
             "warnings": []}
    costs = fake_estimate_costs(fusion, None)
    for key, delta in (cost_deltas or {}).items():
        costs[key] = costs.get(key, 0.0) + delta
    return FakeResult(metrics=metrics, costs=costs,
                      gate_stats=gates, epochs=float(metrics.get("epochs", 0.0)),
                      stopped=stopped, wall_s=time.perf_counter() - t0, history=history)

"""What a verdict trains: the planned runs (``Job``) and how one run is executed.

A run is fully determined by its FusionConfig, its TrainConfig (seed included), the data
and the rungs; its ``key`` is a hash of those, so a rerun (or another verdict at another
point) reuses a finished run wherever the very same training is asked for again.

``execute`` is the worker side: it estimates the costs as the search does, trains with the
evaluator, and returns plain data. It imports neither Optuna nor Ray, so the in-process
executor and the Ray task (``nas.search.ray_runs``) run the same code.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

from nas.variants import Variant

__all__ = ["Job", "Toggle", "execute", "execute_payload", "payload", "plan", "run_key"]


@dataclass(frozen=True)
class Job:
    """One full-budget training of the verdict."""

    key: str
    role: str  # "base" | "variant"
    variant: str | None  # registry name (role "variant")
    action: str | None  # "add" | "remove"
    seed: int
    fusion: dict[str, Any]
    train: dict[str, Any]


@dataclass(frozen=True)
class Toggle:
    """A variant at the point: added or removed, or why it cannot be tested there."""

    variant: Variant
    action: str | None  # "add" | "remove"; None when untestable
    fusion: Any | None  # the toggled FusionConfig
    reason: str | None = None


def run_key(fusion: Mapping[str, Any], train: Mapping[str, Any], data: str,
            rungs: Sequence[float]) -> str:
    """16 hex chars identifying one training (config, seed, data, rungs)."""
    canon = json.dumps({"fusion": dict(fusion), "train": dict(train), "data": data,
                        "rungs": [float(r) for r in rungs]}, sort_keys=True,
                       separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def _toggle(v: Variant, fusion: Any) -> Toggle:
    try:
        action, cfg = v.toggle(fusion)
    except Exception as e:  # noqa: BLE001 - a ConfigError: this variant cannot exist here
        return Toggle(v, None, None, f"cannot be toggled at this point: {e}")
    if cfg.fusion_id == fusion.fusion_id:
        return Toggle(v, None, None, f"toggling it ({action}) changes nothing here")
    why = v.why_inert(cfg if action == "add" else fusion)
    if why is not None:  # both runs would train the same model
        return Toggle(v, None, None, f"it cannot act at this point: {why}")
    return Toggle(v, action, cfg)


def plan(fusion: Any, train: Any, variants: Sequence[Variant], seeds: int, data: str,
         rungs: Sequence[float]) -> tuple[list[Job], list[Toggle]]:
    """The runs of a verdict, seed-major (seed 0: base then every variant, seed 1: ...), so
    an interrupted verdict has whole seeds first; duplicates (same key) appear once."""
    toggles = [_toggle(v, fusion) for v in variants]
    jobs: dict[str, Job] = {}
    for i in range(seeds):
        t = train.replace(seed=train.seed + i)
        td = t.to_dict()
        base = Job(run_key(fusion.to_dict(), td, data, rungs), "base", None, None, t.seed,
                   fusion.to_dict(), td)
        jobs.setdefault(base.key, base)
        for tg in toggles:
            if tg.fusion is None:
                continue
            fd = tg.fusion.to_dict()
            job = Job(run_key(fd, td, data, rungs), "variant", tg.variant.name, tg.action,
                      t.seed, fd, td)
            jobs.setdefault(job.key, job)
    return list(jobs.values()), toggles


_DATA: dict[tuple[str, str], Any] = {}


def _data(loader: str, spec: str) -> Any:
    from nas.search.evaluator import import_object

    if (loader, spec) not in _DATA:  # a worker process keeps one data set between runs
        _DATA.clear()
        _DATA[(loader, spec)] = import_object(loader)(spec)
    return _DATA[(loader, spec)]


def execute(job: Job, evaluator: Any, data_spec: str, objectives: Sequence[str],
            rungs: Sequence[float], cpu_only: bool = False) -> dict[str, Any]:
    """Train one run; ``{"values", "metrics", "costs", "wall_s", "error"}`` (plain data).

    A training that raises (NaN loss, a bad config) comes back with ``error`` set, to be
    recorded as failed; the costs are estimated as the search does (``COST_GALLERY``,
    latency measured only when an objective needs it), and the evaluator may refine them
    (routing's skipped layers)."""
    from nas.config import COST_GALLERY, FusionConfig, TrainConfig
    from nas.search.evaluator import call_train, import_object
    from nas.search.objectives import OBJECTIVES

    t0 = time.perf_counter()
    try:
        data = _data(evaluator.data, data_spec)
        fusion = FusionConfig.from_dict(job.fusion)
        train = TrainConfig.from_dict(job.train)
        if cpu_only and train.device == "auto":
            train = train.replace(device="cpu")
        costs = import_object(evaluator.costs)(fusion, data.shapes, gallery=COST_GALLERY,
                                               measure_latency="latency_ms" in objectives)
        res = call_train(import_object(evaluator.train), fusion, train, data,
                         rungs=list(rungs), report=None, costs=costs)
        metrics = {k: float(v) for k, v in res.metrics.items() if isinstance(v, (int, float))}
        costs = {k: float(v) for k, v in res.costs.items()}
        values = {o: OBJECTIVES[o].value(metrics, costs) for o in objectives}
        bad = [o for o, v in values.items() if not math.isfinite(v)]
        error = f"non-finite {', '.join(bad)}" if bad else None
        return {"values": values, "metrics": metrics, "costs": costs,
                "wall_s": time.perf_counter() - t0, "error": error}
    except Exception as e:  # noqa: BLE001 - the reason is recorded with the run
        return {"values": {}, "metrics": {}, "costs": {}, "wall_s": time.perf_counter() - t0,
                "error": f"{type(e).__name__}: {e}"}


def execute_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """``execute`` on plain data (what a Ray task receives)."""
    from nas.search.evaluator import EvaluatorSpec

    return execute(Job(**payload["job"]), EvaluatorSpec(**payload["evaluator"]),
                   payload["data"], payload["objectives"], payload["rungs"],
                   payload.get("cpu_only", False))


def payload(job: Job, evaluator: Any, data_spec: str, objectives: Sequence[str],
            rungs: Sequence[float], cpu_only: bool) -> dict[str, Any]:
    """The plain-data form of one run for ``execute_payload``."""
    return {"job": asdict(job), "evaluator": asdict(evaluator), "data": data_spec,
            "objectives": list(objectives), "rungs": [float(r) for r in rungs],
            "cpu_only": cpu_only}

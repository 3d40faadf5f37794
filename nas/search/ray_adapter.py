"""Ray Tune execution: the only module that imports Ray.

- ``trainable``: a Tune function trainable that loads the data (cached per worker
  process), builds the configs and calls the evaluator (``train_proxy`` by default, any
  function with its signature by import path), reporting one Tune result per rung.
  Workers never open the study storage: they only report results.
- ``_Searcher``: a Tune ``Searcher`` over our ``AskTellSearcher`` (Optuna ask/tell in the
  driver process), used instead of Ray's ``OptunaSearch`` (which records early-stopped
  multi-objective trials as COMPLETE with low-budget values and stores no intermediate
  values).
- ``_Scheduler``: MO-ASHA (``nas.search.scheduler.MOASHA``) as a Tune ``FIFOScheduler``:
  ``on_trial_result`` returns CONTINUE or STOP per rung.
- ``run_tune``: starts (or connects to) Ray, runs the ``Tuner`` and returns.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import shutil
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, ContextManager

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Ctrl-C is handled by the driver (it records interrupted trials), not by Tune.
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
os.environ.setdefault("TUNE_DISABLE_AUTO_INIT", "1")

import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.schedulers import FIFOScheduler, TrialScheduler  # noqa: E402
from ray.tune.search import Searcher  # noqa: E402

from nas.search.evaluator import (EvaluatorSpec, RayOptions, call_train,  # noqa: E402
                                  import_object)
from nas.search.scheduler import MOASHA  # noqa: E402
from nas.search.searcher import AskTellSearcher, TrialSpec  # noqa: E402

__all__ = ["EvaluatorSpec", "RayOptions", "import_object", "run_tune", "trainable"]

_METRIC_PREFIX = "m/"


# ------------------------------------------------------------------------------- worker

_DATA_CACHE: dict[tuple[str, str], Any] = {}


def _load_data(loader: str, spec: str) -> Any:
    key = (loader, spec)
    if key not in _DATA_CACHE:  # reused actors keep the data between trials
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = import_object(loader)(spec)
    return _DATA_CACHE[key]


def trainable(config: dict[str, Any]) -> None:
    """Tune function trainable: train one TrialSpec, report each rung, then a final result."""
    from nas.config import FusionConfig, TrainConfig

    spec = config["spec"]
    ev = config["evaluator"]
    node = ray.get_runtime_context().get_node_id()
    t0 = time.perf_counter()

    def report(rung: int, metrics: dict[str, Any]) -> bool:
        tune.report({"nas_kind": "rung", "nas_rung": int(rung), "nas_node": node,
                     **{_METRIC_PREFIX + k: float(v) for k, v in metrics.items()
                        if isinstance(v, (int, float))}})
        return False  # stopping is the scheduler's decision (Tune ends the trial)

    try:
        data = _load_data(ev["data"], config["data_spec"])
        fusion = FusionConfig.from_dict(spec["fusion"])
        train = TrainConfig.from_dict(spec["train"])
        if config.get("gpus", 0) == 0 and train.device == "auto":
            train = train.replace(device="cpu")
        # The driver estimated the costs before the trial (limits, objectives): hand them
        # over rather than estimating them again in the worker's time.
        res = call_train(import_object(ev["train"]), fusion, train, data, rungs=spec["rungs"],
                         report=report, costs=spec.get("costs"))
    except Exception as e:  # the reason goes into the study; the driver decides the state
        tune.report({"nas_kind": "failed", "nas_error": f"{type(e).__name__}: {e}",
                     "nas_node": node, "nas_wall_s": time.perf_counter() - t0})
        return
    tune.report({"nas_kind": "final", "nas_node": node, "nas_epochs": float(res.epochs),
                 "nas_stopped": bool(res.stopped), "nas_wall_s": float(res.wall_s),
                 "nas_gates": json.dumps(res.gate_stats, default=float),
                 **{_METRIC_PREFIX + k: float(v) for k, v in res.metrics.items()
                    if isinstance(v, (int, float))}})


def _metrics(result: dict[str, Any]) -> dict[str, float]:
    n = len(_METRIC_PREFIX)
    return {k[n:]: v for k, v in result.items() if k.startswith(_METRIC_PREFIX)}


# ------------------------------------------------------------------------------- driver

class _Searcher(Searcher):
    """Tune searcher over the Optuna ask/tell searcher (runs in the driver process)."""

    def __init__(self, core: AskTellSearcher, evaluator: EvaluatorSpec, data_spec: str,
                 gpus: float, guard: Callable[[], ContextManager[Any]]) -> None:
        super().__init__(metric=None, mode=None)
        self.core = core
        self.evaluator = evaluator
        self.data_spec = data_spec
        self.gpus = gpus
        self.guard = guard
        self.numbers: dict[str, int] = {}
        self.errors: dict[str, str] = {}  # Tune trial id -> why its worker failed
        self.retries: dict[str, int] = {}  # Tune trial id -> restarts after a worker died

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        with self.guard():
            spec = self.core.next()
        if spec is None:
            return Searcher.FINISHED
        self.numbers[trial_id] = spec.number
        return {"spec": asdict(spec), "evaluator": asdict(self.evaluator),
                "data_spec": self.data_spec, "gpus": self.gpus}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        pass  # rungs are recorded by the scheduler, which sees every result first

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        number = self.numbers.pop(trial_id, None)
        if number is None:
            return
        result = result or {}
        kind = result.get("nas_kind")
        retries = self.retries.pop(trial_id, 0)
        extra = {"retries": retries} if retries else None
        why = self.errors.pop(trial_id, None)
        with self.guard():
            if error or kind is None:
                self.core.finish(number, error=why or "the Ray worker failed or was lost "
                                 "(see the Ray logs)", node_id=result.get("nas_node"),
                                 extra=extra)
            elif kind == "failed":
                self.core.finish(number, error=result.get("nas_error", "unknown error"),
                                 node_id=result.get("nas_node"),
                                 wall_s=result.get("nas_wall_s"), extra=extra)
            elif kind == "final":
                gates = json.loads(result.get("nas_gates") or "{}")
                self.core.finish(number, metrics=_metrics(result),
                                 epochs=result.get("nas_epochs"),
                                 stopped=bool(result.get("nas_stopped")), gates=gates,
                                 node_id=result.get("nas_node"),
                                 wall_s=result.get("nas_wall_s"), extra=extra)
            else:  # stopped by the scheduler after a rung
                self.core.finish(number, metrics=_metrics(result), stopped=True,
                                 node_id=result.get("nas_node"),
                                 wall_s=result.get("time_total_s"), extra=extra)

    # Tune pickles its config for its own restore feature, which we do not use (the study
    # is the state; resume reads it): pickle to an inert placeholder, never the storage.
    def __reduce__(self) -> tuple:
        return (_Placeholder, ())

    # Nothing to checkpoint: the Optuna study is the state (resume reads it).
    def save_to_dir(self, *args: Any, **kwargs: Any) -> None:
        pass

    def get_state(self) -> dict:
        return {}

    def set_state(self, state: dict) -> None:
        pass


class _Scheduler(FIFOScheduler):
    """MO-ASHA as a Tune scheduler; records each rung's intermediate value first."""

    def __init__(self, searcher: _Searcher, asha: MOASHA,
                 guard: Callable[[], ContextManager[Any]]) -> None:
        super().__init__()
        self.searcher = searcher
        self.asha = asha
        self.guard = guard

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        """The trial's worker failed for good (retries used up): keep the reason for the
        searcher, which Tune calls next (``on_trial_complete(error=True)``)."""
        self.searcher.errors[trial.trial_id] = _worker_error(trial)
        self.searcher.retries[trial.trial_id] = max(0, int(trial.num_failures) - 1)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        if trial.num_failures:  # restarted after its worker died: remember for the record
            self.searcher.retries[trial.trial_id] = int(trial.num_failures)
        if result.get("nas_kind") != "rung":
            return TrialScheduler.CONTINUE
        number = self.searcher.numbers.get(trial.trial_id)
        if number is None or number not in self.searcher.core.in_flight:
            return TrialScheduler.CONTINUE
        rung = int(result["nas_rung"])
        metrics = _metrics(result)
        with self.guard():
            self.searcher.core.on_rung(number, rung, metrics)
            vec = self.searcher.core.rung_vector(number, metrics)
        if rung >= self.asha.n_rungs - 1:
            self.asha.report(trial.trial_id, rung, vec)
            return TrialScheduler.CONTINUE  # full budget: let it send the final result
        go_on = self.asha.report(trial.trial_id, rung, vec)
        return TrialScheduler.CONTINUE if go_on else TrialScheduler.STOP

    def debug_string(self) -> str:
        return "MO-ASHA"

    def __reduce__(self) -> tuple:
        return (_Placeholder, ())


def _worker_error(trial: Any) -> str:
    """A one-line reason for a trial whose worker process failed (from Tune's error file)."""
    text = ""
    try:
        if trial.error_file:
            text = Path(trial.error_file).read_text(errors="replace")
    except OSError:
        pass
    attempts = int(trial.num_failures) or 1
    head = (f"the trial's Ray worker process died ({attempts} attempt"
            f"{'s' if attempts > 1 else ''})")
    detail = ""
    m = re.search(r"Worker exit detail: ([^\n]*?)(?: Some common causes| There are some| *$)", text,
                  re.M)
    if m:
        detail = m.group(1).strip()
    else:
        lines = [ln.strip() for ln in text.splitlines()
                 if ln.strip() and not ln.startswith("Failure #")]
        detail = lines[-1] if lines else ""
    return f"{head}: {detail[:300]}" if detail else head


class _Placeholder:
    """What a pickled searcher/scheduler becomes (Tune's restore is not used)."""


def _trial_name(trial: Any) -> str:
    number = trial.config.get("spec", {}).get("number", "x")
    return f"trial_{number}_{trial.trial_id}"


def _init_ray(opts: RayOptions) -> bool:
    """Start a local Ray (or connect with --address); True when this call started it."""
    if ray.is_initialized():
        return False
    if opts.address:
        ray.init(address=opts.address, log_to_driver=False)
    else:
        tmp = tempfile.mkdtemp(prefix=f"nr{os.getpid()}-", dir="/tmp")  # short: socket paths
        # Ray leaves its session files (~24 MB) there: remove them at exit, after the
        # shutdown Ray registers during init (atexit runs in reverse order).
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False,
                 _temp_dir=tmp, log_to_driver=False, configure_logging=False)
    return True


def cluster_cpus() -> float:
    """CPUs of the connected cluster."""
    return float(ray.cluster_resources().get("CPU", 1))


def run_tune(core: AskTellSearcher, asha: MOASHA, evaluator: EvaluatorSpec, data_spec: str,
             opts: RayOptions, guard: Callable[[], ContextManager[Any]] = nullcontext,
             on_start: Callable[[float], None] | None = None) -> None:
    """Run trials on Ray Tune until the searcher has nothing more to ask."""
    started = _init_ray(opts)
    workdir = tempfile.mkdtemp(prefix="nas-tune-")
    try:
        cpus = cluster_cpus()
        concurrency = opts.concurrency or max(1, int(cpus // max(opts.cpus_per_trial, 1e-9)))
        if on_start:
            on_start(concurrency)
        searcher = _Searcher(core, evaluator, data_spec, opts.gpus_per_trial, guard)
        scheduler = _Scheduler(searcher, asha, guard)
        resources = {"cpu": opts.cpus_per_trial, "gpu": opts.gpus_per_trial}
        tuner = tune.Tuner(
            tune.with_resources(trainable, resources),
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                        num_samples=-1, max_concurrent_trials=concurrency,
                                        reuse_actors=True,
                                        trial_name_creator=_trial_name,
                                        trial_dirname_creator=_trial_name),
            run_config=tune.RunConfig(
                name="nas", storage_path=workdir, verbose=0,
                failure_config=tune.FailureConfig(max_failures=opts.max_failures),
                checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),
                log_to_file=False),
        )
        # Tune's result grid looks for per-trial result files that we do not write (the
        # study holds the results): keep its warnings about them off the terminal.
        quiet = logging.getLogger("ray.tune")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            tuner.fit()
        finally:
            quiet.setLevel(level)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if started:
            ray.shutdown()

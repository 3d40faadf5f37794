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
- ``_Deadlines``: ``--trial-timeout`` as a Tune callback: a trial running longer is
  failed with the reason and its worker process killed (freed for the next trial).
- ``HeadWatch`` (``nas.search.head_watch``): with ``--address``, notices within seconds
  that the Ray head is gone and stops the search with one line.
- ``run_tune``: starts (or connects to) Ray, runs the ``Tuner`` and returns.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Ctrl-C is handled by the driver (it records interrupted trials), not by Tune.
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
os.environ.setdefault("TUNE_DISABLE_AUTO_INIT", "1")
# A failed trial's reason goes into the study (fail_reason); Tune's traceback of it would
# only bury the driver's own one-line messages.
os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")

import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune import Callback  # noqa: E402
from ray.tune.schedulers import FIFOScheduler, TrialScheduler  # noqa: E402
from ray.tune.search import Searcher  # noqa: E402

from nas.search import messages  # noqa: E402
from nas.search.evaluator import EvaluatorSpec, RayOptions, call_train, import_object  # noqa: E402
from nas.search.head_watch import HeadWatch  # noqa: E402

if TYPE_CHECKING:  # the driver's side only: a trial's worker imports this module too,
    # and should not pay for Optuna and the storage layer (imported once per worker)
    from nas.search.scheduler import MOASHA
    from nas.search.searcher import AskTellSearcher

__all__ = ["EvaluatorSpec", "RayOptions", "import_object", "run_tune", "trainable"]


# ------------------------------------------------------------------------------- worker

_DATA_CACHE: dict[tuple[str, str], Any] = {}
# what a pre-started worker of a local cluster warms up with (nas.search._worker_preload)
PRELOAD_ENV = {"train": "NAS_PRELOAD_TRAIN", "loader": "NAS_PRELOAD_DATA_LOADER",
               "spec": "NAS_PRELOAD_DATA_SPEC", "ready": "NAS_PRELOAD_READY_DIR"}


def _load_data(loader: str, spec: str) -> Any:
    key = (loader, spec)
    if key not in _DATA_CACHE:  # reused actors keep the data between trials
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = import_object(loader)(spec)
    return _DATA_CACHE[key]


def trainable(config: dict[str, Any]) -> None:
    """Tune function trainable: train one TrialSpec, report each rung, then a final result
    (the messages of ``nas.search.messages``)."""
    from nas.config import FusionConfig, TrainConfig

    spec = config["spec"]
    ev = config["evaluator"]
    node = ray.get_runtime_context().get_node_id()
    t0 = time.perf_counter()

    def report(rung: int, metrics: dict[str, Any]) -> bool:
        tune.report(messages.encode(messages.RungReport(rung, metrics, node)))
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
        tune.report(messages.encode(messages.TrialFailed(
            f"{type(e).__name__}: {e}", time.perf_counter() - t0, node)))
        return
    tune.report(messages.encode(messages.TrialDone(
        res.metrics, float(res.epochs), bool(res.stopped), float(res.wall_s),
        res.gate_stats, node)))


# ------------------------------------------------------------------------------- driver

class _Searcher(Searcher):
    """Tune searcher over the Optuna ask/tell searcher (runs in the driver process)."""

    def __init__(self, core: AskTellSearcher, evaluator: EvaluatorSpec, data_spec: str,
                 gpus: float, guard: Callable[[], ContextManager[Any]],
                 halt: Callable[[], str | None] | None = None) -> None:
        super().__init__(metric=None, mode=None)
        self.halt = halt  # says why no new trial should start (e.g. the disk is nearly full)
        self.core = core
        self.evaluator = evaluator
        self.data_spec = data_spec
        self.gpus = gpus
        self.guard = guard
        self.numbers: dict[str, int] = {}
        self.errors: dict[str, str] = {}  # Tune trial id -> why its worker failed
        self.retries: dict[str, int] = {}  # Tune trial id -> restarts after a worker died

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
        if self.halt is not None and self.halt():
            return Searcher.FINISHED  # the running trials finish and are recorded
        wait_warm()  # the first ask only: Tune has set up, the first workers are warming
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
        msg = messages.decode(result)
        retries = self.retries.pop(trial_id, 0)
        extra = {"retries": retries} if retries else None
        why = self.errors.pop(trial_id, None)
        node = msg.node if msg is not None else None
        with self.guard():
            if error or msg is None:
                self.core.finish(number, error=why or "the Ray worker failed or was lost "
                                 "(see the Ray logs)", node_id=node, extra=extra)
            elif isinstance(msg, messages.TrialFailed):
                self.core.finish(number, error=msg.error, node_id=node, wall_s=msg.wall_s,
                                 extra=extra)
            elif isinstance(msg, messages.TrialDone):
                self.core.finish(number, metrics=msg.metrics, epochs=msg.epochs,
                                 stopped=msg.stopped, gates=msg.gates, node_id=node,
                                 wall_s=msg.wall_s, extra=extra)
            else:  # stopped by the scheduler after a rung (Tune's own clock for its time)
                self.core.finish(number, metrics=msg.metrics, stopped=True, node_id=node,
                                 wall_s=(result or {}).get("time_total_s"), extra=extra)

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
        kept = self.searcher.errors.get(trial.trial_id, "")
        if not kept.startswith("exceeded --trial-timeout"):  # the timeout's reason stays;
            # any other is replaced by the last attempt's (its count of attempts is final)
            self.searcher.errors[trial.trial_id] = _worker_error(trial)
        self.searcher.retries[trial.trial_id] = max(0, int(trial.num_failures) - 1)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        if trial.num_failures:  # restarted after its worker died: remember for the record
            self.searcher.retries[trial.trial_id] = int(trial.num_failures)
        msg = messages.decode(result)
        if not isinstance(msg, messages.RungReport):
            return TrialScheduler.CONTINUE
        number = self.searcher.numbers.get(trial.trial_id)
        if number is None or number not in self.searcher.core.in_flight:
            return TrialScheduler.CONTINUE
        rung, metrics = msg.rung, msg.metrics
        with self.guard():
            self.searcher.core.on_rung(number, rung, metrics)
            vec = self.searcher.core.rung_vector(number, rung, metrics)
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


def fmt_duration(s: float) -> str:
    """30 -> '30s', 90 -> '1m30s', 7200 -> '2h'."""
    s = int(round(s))
    parts = [(s // 3600, "h"), (s % 3600 // 60, "m"), (s % 60, "s")]
    return "".join(f"{v}{u}" for v, u in parts if v) or "0s"


class _Deadlines(Callback):
    """``--trial-timeout``: checked at every step of Tune's loop (every ~0.1 s). A trial
    over its time is failed with the reason and its worker process killed (a stuck trial
    cannot be asked to stop; killing frees its CPUs/GPU for the next trial). It is not
    retried: a trial that is too slow once is too slow again."""

    def __init__(self, searcher: _Searcher, timeout_s: float) -> None:
        self.searcher = searcher
        self.timeout_s = timeout_s
        self.started: dict[str, float] = {}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.started[trial.trial_id] = time.monotonic()

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        for trial in trials:
            t0 = self.started.get(trial.trial_id)
            if t0 is None or now - t0 <= self.timeout_s or trial.status != "RUNNING":
                continue
            del self.started[trial.trial_id]
            actor = trial.temporary_state.ray_actor
            if actor is None:
                continue
            number = self.searcher.numbers.get(trial.trial_id)
            epochs = self.searcher.core.rung_metrics.get(number, {}).get("epochs", 0.0) \
                if number is not None else 0.0
            self.searcher.errors[trial.trial_id] = (
                f"exceeded --trial-timeout {fmt_duration(self.timeout_s)} at epoch "
                f"{float(epochs):g} (ran {fmt_duration(now - t0)}; its worker was stopped)")
            trial.max_failures = 0  # not retried (see the class docstring)
            ray.kill(actor, no_restart=True)

    def __reduce__(self) -> tuple:
        return (_Placeholder, ())


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def _trial_name(trial: Any) -> str:
    number = trial.config.get("spec", {}).get("number", "x")
    return f"trial_{number}_{trial.trial_id}"


def init_ray(opts: RayOptions, warm: EvaluatorSpec | None = None,
             data_spec: str | None = None) -> bool:
    """Start a local Ray (or connect with --address); True when this call started it.

    With ``warm`` (and ``data_spec``), a local cluster's pre-started workers import the
    evaluator and load the data as they start (``nas.search._worker_preload``), in
    parallel with whatever the driver does next; Tune's trial actors take these workers.
    An existing cluster (``--address``) is used as it is."""
    if ray.is_initialized():
        return False
    if opts.address:
        ray.init(address=opts.address, log_to_driver=False)
    else:
        tmp = tempfile.mkdtemp(prefix=f"nr{os.getpid()}-", dir="/tmp")  # short: socket paths
        # Ray leaves its session files (~24 MB) there: remove them at exit, after the
        # shutdown Ray registers during init (atexit runs in reverse order).
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        cpus = os.cpu_count() or 1
        system: dict[str, Any] = {}
        env: dict[str, str] = {}
        # Ray pre-starts one worker per CPU; warming them all pays off when the trials
        # use at least half of them (each warm worker holds torch and the data: ~0.4 GB).
        if warm is not None and 2 * trials_at_once(opts, cpus) < cpus:
            warm = None
        if warm is not None:  # (the module is not imported here: it runs on import)
            system["preload_python_modules"] = ["nas.search._worker_preload"]
            # Ray kills a worker that has idled 1 s while the pool is over its soft limit.
            # Warm workers idle while Tune sets up (``wait_warm``), and on a busy machine
            # Ray then killed them and started the trials on fresh processes (seen in 3 of
            # 8 runs of tests/search/test_ray_warm.py's probe beside two busy processes;
            # 0 of 9 with a longer threshold): give them a minute.
            system["idle_worker_killing_time_threshold_ms"] = 60_000
            ready = os.path.join(tmp, "warm")
            os.makedirs(ready)
            env = {PRELOAD_ENV["train"]: warm.train, PRELOAD_ENV["loader"]: warm.data,
                   PRELOAD_ENV["spec"]: data_spec or "", PRELOAD_ENV["ready"]: ready,
                   "PL_DISABLE_FORK": "1"}  # see _tune_actors_on_plain_workers
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # the raylet, and the workers it starts, inherit them
        try:
            ray.init(num_cpus=cpus, include_dashboard=False,
                     _temp_dir=tmp, log_to_driver=False, configure_logging=False,
                     _system_config=system or None)
            if warm is not None:
                _tune_actors_on_plain_workers()
                _WARM["dir"], _WARM["workers"] = ready, min(trials_at_once(opts, cpus), cpus)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return True


# the warm-up that init_ray started: the folder its workers mark themselves ready in, and
# how many warm workers the first trials need
_WARM: dict[str, Any] = {}


def wait_warm(timeout_s: float = 60.0) -> float:
    """Wait until the workers that the first trials will run on have warmed up (or
    ``timeout_s`` has passed); returns the seconds waited (0 without a warm-up).

    A worker's warm-up (Tune, torch, the evaluator, the data: 2-5 s of CPU) happens once
    per worker. Waiting for it before the first trial is asked makes it part of the
    search's start-up, where the driver's own set-up overlaps it, instead of a first trial
    that sits in Ray's queue while its ask and its actor wait. Past the timeout the
    trials start anyway: a worker that is not warm loads what it needs itself."""
    ready, need = _WARM.pop("dir", None), _WARM.pop("workers", 0)
    if not ready:
        return 0.0
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            if len(os.listdir(ready)) >= need:
                break
        except OSError:
            break
        time.sleep(0.05)
    return time.monotonic() - t0


def _tune_actors_on_plain_workers() -> None:
    """Let Tune's trial actors start on the cluster's pre-started (warm) workers.

    Tune gives every trial actor a runtime environment that sets ``PL_DISABLE_FORK=1`` (a
    PyTorch Lightning setting, ``ray.tune.execution.class_cache.DEFAULT_ENV_VARS``). A
    worker serves only actors of its own runtime environment, so with it every trial actor
    waits for a fresh process and the warm workers stay idle. ``nas`` does not use
    Lightning; the variable goes into the workers' inherited environment instead (the
    raylet is started by this process), and Tune's default is emptied. Where Tune no
    longer has the table, or propagates other variables (AWS credentials), trials start
    on fresh workers as before. Checked by ``tests/search/test_ray_warm.py``.
    """
    try:
        from ray.tune.execution import class_cache
    except ImportError:
        return
    defaults = getattr(class_cache, "DEFAULT_ENV_VARS", None)
    if isinstance(defaults, dict):
        defaults.clear()


def shutdown_ray() -> None:
    """Stop the Ray that ``init_ray`` started in this process."""
    _WARM.clear()
    ray.shutdown()


def trials_at_once(opts: RayOptions, cpus: float) -> int:
    """--concurrency, else as many trials as ``cpus`` hold at --cpus-per-trial (>= 1)."""
    return opts.concurrency or max(1, int(cpus // max(opts.cpus_per_trial, 1e-9)))


def cluster_cpus() -> float:
    """CPUs of the connected cluster."""
    return float(ray.cluster_resources().get("CPU", 1))


def run_tune(core: AskTellSearcher, asha: MOASHA, evaluator: EvaluatorSpec, data_spec: str,
             opts: RayOptions, guard: Callable[[], ContextManager[Any]] = nullcontext,
             on_start: Callable[[float], None] | None = None,
             halt: Callable[[], str | None] | None = None,
             trial_timeout_s: float | None = None) -> None:
    """Run trials on Ray Tune until the searcher has nothing more to ask (or ``halt``
    says why no new trial should start). Raises ``Abort`` when the Ray head is lost."""
    from nas.search.storage import Abort

    started = init_ray(opts)
    workdir = tempfile.mkdtemp(prefix="nas-tune-")
    lost = "driver stopped: Ray head lost"

    def on_lost() -> None:
        core.abandon(lost)

    watch = HeadWatch(opts.address, on_lost).start() \
        if opts.address not in (None, "", "auto", "local") else None
    try:
        cpus = cluster_cpus()
        concurrency = trials_at_once(opts, cpus)
        if on_start:
            on_start(concurrency)
        searcher = _Searcher(core, evaluator, data_spec, opts.gpus_per_trial, guard, halt)
        scheduler = _Scheduler(searcher, asha, guard)
        callbacks: list[Callback] = [_Deadlines(searcher, trial_timeout_s)] \
            if trial_timeout_s else []
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
                log_to_file=False, callbacks=callbacks),
        )
        # Tune's result grid looks for per-trial result files that we do not write (the
        # study holds the results): keep its warnings about them off the terminal.
        quiet = logging.getLogger("ray.tune")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        unfinished = _DropMessage("Trials did not complete")  # failed ones: in the study
        logging.getLogger("ray.tune.tune").addFilter(unfinished)
        try:
            tuner.fit()
        except KeyboardInterrupt:
            if watch is not None and watch.lost:
                watch.handled.set()
                raise Abort(watch.message(), lost) from None
            raise
        finally:
            quiet.setLevel(level)
            logging.getLogger("ray.tune.tune").removeFilter(unfinished)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if watch is not None:
            watch.stop()
        if started and not (watch is not None and watch.lost):
            ray.shutdown()  # (with the head gone it would wait on it: the process exits)

"""The search loop: create or resume the study, warm-start it, run trials, summarise.

One driver process per study writes the storage. It:
1. loads the space (applying ``--min-budget/--max-budget/--eta``), the objectives and the
   data (for the input dims and the cost estimates);
2. creates the study (directions, metric names, study attributes, the fixed hypervolume
   reference point, the warm-start queue) or loads it and checks that objectives, space and
   rungs match (a clear error otherwise: use another ``--study``);
3. registers itself (``liveness``), marks trials left RUNNING by a dead driver FAIL
   ("driver crashed") and re-queues their parameters; several drivers may share a study;
4. runs trials on Ray Tune (``ray_adapter``) or, for tests, in this process (``local``)
   until ``--trials`` trials have trained or the time budget is spent, whichever comes
   first (``--time-budget``, else the space's ``time_budget``: wall clock from the start
   of the command, of which the last 10%, at most 30 s, is kept for recording, stopping
   Ray and the summary). Ctrl-C, and the deadline likewise, records the running trials as
   FAIL ("interrupted", "time budget ... reached") and re-queues them, never leaving a
   half-written record (SIGINT is held back while a record is being written);
5. prints the Pareto front of full-budget trials.
"""


from __future__ import annotations

import dataclasses
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, TextIO

import optuna

from nas import DEFAULT_STORAGE
from nas.errors import SearchStopped, UserError
from nas.search import _optuna, records
from nas.search.control import Deadline, Halt, SigintGuard, wind_up
from nas.search.evaluator import EvaluatorSpec, RayOptions, call_train, import_object
from nas.search.liveness import DriverRegistry
from nas.search.objectives import (
    DEFAULT_OBJECTIVES,
    RUNG_SIGNALS,
    Objective,
    parse_limits,
    parse_objectives,
)
from nas.search.pareto import pareto_front, study_hypervolume
from nas.search.progress import Progress, fmt_s, format_front
from nas.search.sampler import make_sampler
from nas.search.scheduler import MOASHA, PROMOTIONS, check_hedge
from nas.search.searcher import AskTellSearcher
from nas.search.space import ProxyBudget, SearchSpace, load_space
from nas.search.storage import Abort, StorageGuard
from nas.search.study import check_storage, open_study
from nas.search.warm_start import warm_start_configs

__all__ = ["SearchOptions", "SearchSummary", "check_ray_address", "check_storage",
           "format_front", "run_search", "warm_start_configs"]


@dataclass
class SearchOptions:
    """Everything ``nas search`` takes (the CLI fills it from its flags)."""

    space: str = "gated_fusion"
    study: str | None = None  # default: the space's name
    storage: str = DEFAULT_STORAGE
    data: str | None = None  # default: the space's `data`, else "synthetic"
    trials: int | None = None  # default: the space's `trials`, else 20
    sampler: str = "tpe"
    cost_aware: bool = False  # --cost-aware (nas.search.cost_aware)
    rung_signal: str = "mean_rank"  # --rung-signal (nas.search.objectives.RUNG_SIGNALS)
    promotion: str = "hypervolume"  # --promotion (nas.search.scheduler.PROMOTIONS)
    hedge: int = 0  # --hedge N: every N-th trial is not stopped at the first rung (0: none)
    warm_start: bool = True  # --no-warm-start: a new study gets no warm-start queue
    seed: int | None = 0
    objectives: str = DEFAULT_OBJECTIVES
    limits: list[str] = field(default_factory=list)  # ["query_gflops=5", ...]
    min_budget: float | None = None
    max_budget: float | None = None
    eta: float | None = None
    prune: bool = True
    ray: RayOptions = field(default_factory=RayOptions)
    evaluator: EvaluatorSpec = field(default_factory=EvaluatorSpec)
    executor: str = "ray"  # "ray" | "local" (in-process, sequential: tests, debugging)
    quiet: bool = False
    time_budget_s: float | None = None  # default: the space's time_budget, else none
    started_at: float | None = None  # time.monotonic() when the command started (the CLI's)
    max_skips: int = 100  # proposals in a row that cannot be trained before giving up
    # Faults on a cluster (docs/reliability.md): how long to wait for the database through
    # an outage, the free space below which no new trial starts, a per-trial time limit.
    db_retry_s: float = 120.0
    min_free: float = 100 * 2**20
    trial_timeout_s: float | None = None


@dataclass
class SearchSummary:
    """What a finished (or interrupted) run leaves behind."""

    study_name: str
    storage: str
    trained: int
    target: int
    states: dict[str, int]
    front: list[optuna.trial.FrozenTrial]
    hypervolume: float
    interrupted: bool
    elapsed_s: float
    time_up: bool = False  # the time budget ended the run
    time_budget_s: float | None = None



@dataclass
class _Run:
    """What ``run_search`` prepared for one run: the inputs of ``_search``."""

    opts: SearchOptions
    space: SearchSpace
    objectives: list[Objective]
    limits: Mapping[str, float]
    data_spec: str
    n_trials: int
    cost_fn: Callable[..., dict[str, float]]
    data: Any
    overrides: Mapping[str, Any]
    out: TextIO
    t0: float  # time.monotonic() when the command started
    sampler: optuna.samplers.BaseSampler
    study: optuna.Study | None = None
    created: bool = False
    registry: DriverRegistry | None = None
    ray_started: bool = False  # this process started a local Ray cluster (shut down at end)

    @property
    def time_budget_s(self) -> float | None:
        b = self.opts.time_budget_s
        return b if b is not None else self.space.time_budget_s


# ----------------------------------------------------------------------------- helpers

def check_ray_address(address: str | None, timeout_s: float = 5.0) -> None:
    """Fail fast (seconds, not a hang) when ``--address`` has no Ray cluster listening."""
    if not address or address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise UserError(f"--address {address!r}: expected HOST:PORT of a Ray head node "
                        "(e.g. 127.0.0.1:6379), or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise UserError(f"--address {address!r}: no Ray cluster reachable there ({why}); "
                        "start one with `ray start --head` or check host and port") from None


def _space_with_budget(space: SearchSpace, opts: SearchOptions) -> SearchSpace:
    p = space.proxy
    proxy = ProxyBudget(opts.min_budget if opts.min_budget is not None else p.min_budget,
                        opts.max_budget if opts.max_budget is not None else p.max_budget,
                        opts.eta if opts.eta is not None else p.eta)
    if opts.max_budget is not None and opts.min_budget is None:
        proxy = dataclasses.replace(proxy, min_budget=min(proxy.min_budget, proxy.max_budget))
    try:
        proxy.check("budget (--min-budget/--max-budget/--eta)")
    except UserError:
        raise
    return dataclasses.replace(space, proxy=proxy)


def _data_overrides(shapes: Any) -> dict[str, int]:
    """FusionConfig fields that must match the data."""
    from nas.data import model_inputs

    return model_inputs(shapes)


def _run_local(core: AskTellSearcher, asha: MOASHA, evaluator: EvaluatorSpec, data: Any,
               guard: Any, halt: Callable[[], str | None] = lambda: None) -> None:
    """Sequential in-process execution with the same searcher and scheduler (no Ray)."""
    from nas.config import FusionConfig, TrainConfig

    train_fn = import_object(evaluator.train)
    last = len(core.rungs) - 1
    while not halt():
        with guard():
            spec = core.next()
        if spec is None:
            return
        n = spec.number

        def report(rung: int, metrics: dict[str, Any], n: int = n) -> bool:
            with guard():
                core.on_rung(n, rung, metrics)
                go_on = asha.report(n, rung, core.rung_vector(n, rung, metrics))
            return rung < last and not go_on

        t0 = time.perf_counter()
        try:
            res = call_train(train_fn, FusionConfig.from_dict(spec.fusion),
                             TrainConfig.from_dict(spec.train), data, rungs=spec.rungs,
                             report=report, costs=spec.costs)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - recorded as the trial's failure reason
            with guard():
                core.finish(n, error=f"{type(e).__name__}: {e}", node_id="local",
                            wall_s=time.perf_counter() - t0)
            continue
        with guard():
            core.finish(n, metrics=res.metrics, epochs=res.epochs, stopped=res.stopped,
                        gates=res.gate_stats, node_id="local", wall_s=res.wall_s)


def _gate_plot_attacher(study: optuna.Study, storage_url: str
                        ) -> Callable[[int, dict[str, Any], list[float]], None]:
    """Attach each full-budget trial's gate plot (SVG) as an Optuna artifact on the trial,
    in the folder beside the storage (``studies.db.artifacts/``), where optuna-dashboard
    (``--artifact-dir``) and ``nas dashboard`` show it on the trial's page."""
    from nas import dashboard

    store: list[Any] = []

    def attach(trial_id: int, gates: dict[str, Any], values: list[float]) -> None:
        if not store:  # created on first use: a search with no full-budget trial makes none
            store.append(dashboard.open_artifact_store(dashboard.artifact_dir_for(storage_url)))
        dashboard.attach_running_trial_gates(study, store[0], trial_id, gates, values)

    return attach



# ----------------------------------------------------------------------------- the run

def run_search(opts: SearchOptions, out: TextIO | None = None) -> SearchSummary:
    """Run (or resume) a search; see the module docstring."""
    run = _prepare(opts, out or sys.stderr)
    try:
        return _open_and_search(run)
    finally:
        if run.ray_started:
            from nas.search import ray_adapter

            ray_adapter.shutdown_ray()


def _warm_cost_fn(cost_fn: Callable[..., dict[str, float]], space: SearchSpace,
                  overrides: Mapping[str, Any], shapes: Any) -> None:
    """Estimate the reference configuration's costs now, while the cluster's workers warm
    up. A process's first estimate pays about 2 s of one-time setup (torch's FLOP
    counter), which would otherwise delay the first trial; the reference is in the warm
    start's queue, so the (cached) result is used. A failure here is left to the trial
    that meets it."""
    from nas.config import COST_GALLERY

    try:
        fusion, _ = space.build(space.reference_params(), overrides)
        cost_fn(fusion, shapes, gallery=COST_GALLERY)
    except Exception:  # noqa: BLE001 - reported where it matters, by the trial
        pass


def _open_and_search(run: _Run) -> SearchSummary:
    from nas import dashboard

    opts = run.opts
    store = StorageGuard(opts.storage, opts.db_retry_s, opts.min_free,
                         dashboard.artifact_dir_for(opts.storage), run.out)
    low = store.low_disk()
    if low:
        raise SearchStopped(f"--storage {store.shown}: not starting: {low}")
    try:
        run.study, run.created, run.registry = open_study(
            opts, run.space, run.objectives, run.sampler, run.data_spec, run.overrides, store)
    except Abort as e:
        raise SearchStopped(e.message) from None
    try:
        return _search(run)
    except Abort as e:
        raise SearchStopped(e.message) from None
    finally:
        try:
            if run.registry is not None:
                run.registry.stop()
        except Abort:
            pass  # not marked ended: the next driver sees this process gone all the same


def _prepare(opts: SearchOptions, out: TextIO) -> _Run:
    """Check the options and load space, objectives and data; nothing is written yet.

    On Ray, the cluster is started (or joined) once the options are checked and before the
    driver imports torch and loads its data: a local cluster's workers warm up (Tune,
    torch, the evaluator, the data) meanwhile, so the first trial does not wait for them."""
    t0 = opts.started_at if opts.started_at is not None else time.monotonic()
    space = _space_with_budget(load_space(opts.space), opts)
    objectives = parse_objectives(opts.objectives)
    limits = parse_limits(opts.limits)
    data_spec = opts.data or space.data or "synthetic"
    n_trials = opts.trials or space.trials or 20
    if n_trials < 1:
        raise UserError(f"--trials must be >= 1, got {n_trials}")
    if opts.rung_signal not in RUNG_SIGNALS:
        raise UserError(f"--rung-signal {opts.rung_signal!r}: choose from "
                        f"{', '.join(RUNG_SIGNALS)}")
    if opts.promotion not in PROMOTIONS:
        raise UserError(f"--promotion {opts.promotion!r}: choose from {', '.join(PROMOTIONS)}")
    try:
        check_hedge(opts.hedge)
    except ValueError:
        raise UserError(f"--hedge {opts.hedge}: give 0 (no hedge) or N >= 2 (every N-th "
                        "trial is not stopped at the first rung)") from None
    if opts.trial_timeout_s and opts.executor == "local":
        raise UserError("--trial-timeout needs the Ray executor (a trial in the driver's own "
                        "process cannot be stopped)")
    sampler = make_sampler(opts.sampler, opts.seed, opts.cost_aware)
    # Checks that need no data, before anything is loaded or written.
    check_storage(opts.storage)
    ray_started = False
    if opts.executor != "local":
        check_ray_address(opts.ray.address)
        if not opts.ray.address:  # a cluster given by --address is joined in run_tune
            from nas.search import ray_adapter  # the only module that imports Ray

            ray_started = ray_adapter.init_ray(opts.ray, warm=opts.evaluator,
                                               data_spec=data_spec)
    try:
        cost_fn = import_object(opts.evaluator.costs)
        data = import_object(opts.evaluator.data)(data_spec)
    except BaseException:
        if ray_started:
            ray_adapter.shutdown_ray()
        raise
    overrides = _data_overrides(data.shapes)
    if ray_started:
        _warm_cost_fn(cost_fn, space, overrides, data.shapes)
    return _Run(opts, space, objectives, limits, data_spec, n_trials, cost_fn, data,
                overrides, out, t0, sampler, ray_started=ray_started)


def _search(run: _Run) -> SearchSummary:
    """Run trials until --trials or the time budget; record what is left; summarise."""
    opts, study = run.opts, run.study
    assert study is not None
    core = AskTellSearcher(study, run.space, run.objectives, run.cost_fn, run.data.shapes,
                           run.overrides, run.limits, run.n_trials, max_skips=opts.max_skips,
                           registry=run.registry,
                           on_full_budget=_gate_plot_attacher(study, opts.storage),
                           rung_signal=opts.rung_signal)
    budget = run.time_budget_s
    # Trials stop a little before the budget ends: recording the running ones, stopping Ray
    # and printing the summary take the rest, so the command itself ends within its budget.
    reserve = 0.0 if budget is None else min(30.0, 0.1 * budget)
    end = None if budget is None else run.t0 + budget - reserve
    deadline = Deadline(core, None if end is None else end - time.monotonic())
    progress = Progress(study, core, run.out, opts.quiet, deadline=end)
    core.on_event = progress.update
    if not opts.quiet:
        run.out.write(_banner(run, core, budget))
    halt = Halt(_optuna.storage_of(study).guard.low_disk)
    interrupted, time_up = _execute(run, core, deadline, progress, halt)
    if halt.reason and records.counted(study.get_trials(deepcopy=False)) < run.n_trials:
        raise SearchStopped(f"stopped starting new trials: {halt.reason}")
    return _summary(run, interrupted, time_up)


def _banner(run: _Run, core: AskTellSearcher, budget: float | None) -> str:
    """The first line: what is searched, how, and how far it is."""
    opts, space, study = run.opts, run.space, run.study
    assert study is not None
    verb = "created" if run.created else "resuming"
    crashed = core.recovered
    return (f"nas search: {verb} study {study.study_name!r} in {opts.storage}: space "
            f"{space.name} ({len(space.dimensions)} dims), objectives "
            f"{','.join(o.name for o in run.objectives)}, sampler {opts.sampler}, rungs "
            f"{space.proxy.rungs()} epochs, {'MO-ASHA' if opts.prune else 'no pruning'}"
            f", data {run.data_spec}; {core.done}/{run.n_trials} trials done"
            + (f"; time budget {fmt_s(budget)} (this run)" if budget else "")
            + (f"; {crashed} trial(s) left running by a crash re-queued" if crashed else "")
            + "\n")


def _execute(run: _Run, core: AskTellSearcher, deadline: Deadline, progress: Progress,
             halt: Halt) -> tuple[bool, bool]:
    """Run the trials (Ray Tune, or in process), then record the ones still running
    honestly and re-queue them. Returns (interrupted by Ctrl-C, ended by the deadline)."""
    opts, space = run.opts, run.space
    asha = MOASHA(len(space.proxy.rungs()), space.proxy.eta, enabled=opts.prune,
                  quality=[i for i, o in enumerate(run.objectives)
                           if not o.known_before_training], cut=opts.promotion,
                  hedge=opts.hedge)
    guard = SigintGuard()
    guard.install()
    interrupted = time_up = False
    aborted: Abort | None = None
    try:
        try:
            deadline.start()
            if core.remaining > 0:
                if opts.executor == "local":
                    _run_local(core, asha, opts.evaluator, run.data, guard, halt)
                else:
                    from nas.search import ray_adapter  # the only module that imports Ray

                    run.data = None  # the workers load their own copy
                    ray_adapter.run_tune(core, asha, opts.evaluator, run.data_spec, opts.ray,
                                         guard, halt=halt,
                                         trial_timeout_s=opts.trial_timeout_s)
        finally:
            deadline.stop()  # no interrupt is sent after this returns
    except KeyboardInterrupt:
        if deadline.fired:
            time_up = True
        else:
            interrupted = True
    except Abort as e:
        aborted = e
    finally:
        guard.uninstall()
        # Anything still running did not finish: record it honestly and re-queue it.
        reason = ("interrupted" if interrupted else
                  f"time budget {fmt_s(run.time_budget_s or 0)} reached"
                  if time_up or deadline.fired else "driver stopped before the trial ended")
        wind_up(core, progress, aborted.reason if aborted else reason, aborted)
    return interrupted, time_up or deadline.fired


def _summary(run: _Run, interrupted: bool, time_up: bool) -> SearchSummary:
    study = run.study
    assert study is not None
    front = pareto_front(study)
    states: dict[str, int] = {}
    trials = study.get_trials(deepcopy=False)
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    return SearchSummary(study.study_name, run.opts.storage, records.counted(trials),
                         run.n_trials, states, front, study_hypervolume(study, front),
                         interrupted, time.monotonic() - run.t0, time_up=time_up,
                         time_budget_s=run.time_budget_s)

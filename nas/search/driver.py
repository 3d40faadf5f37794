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
import os
import signal
import socket
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TextIO

import optuna
from optuna.trial import TrialState

from nas import DEFAULT_STORAGE
from nas.errors import SearchStopped, UserError
from nas.search import records
from nas.search.evaluator import EvaluatorSpec, RayOptions, call_train, import_object
from nas.search.faults import faultpoint
from nas.search.liveness import DriverRegistry
from nas.search.objectives import (DEFAULT_OBJECTIVES, Objective, parse_limits,
                                   parse_objectives)
from nas.search.pareto import pareto_front, study_hypervolume
from nas.search.scheduler import MOASHA
from nas.search.sampler import make_sampler
from nas.search.searcher import AskTellSearcher, requeue
from nas.search.space import ProxyBudget, SearchSpace, load_space
from nas.search.storage import Abort, StorageGuard

__all__ = ["SearchOptions", "SearchSummary", "run_search", "warm_start_configs",
           "format_front"]

# The research plan's recommended single variants (system.md "Warm start").
WARM_START = [
    ("1A layer_decay=fixed", {"layer_decay": "fixed"}),
    ("3 residual_gate", {"residual_gate": True}),
    ("2 attn_temperature=scalar", {"attn_temperature": "scalar"}),
    ("4 query_fusion=per_head", {"query_fusion": "per_head"}),
    ("5 text_audio=keys", {"text_audio": "keys"}),
]


@dataclass
class SearchOptions:
    """Everything ``nas search`` takes (the CLI fills it from its flags)."""

    space: str = "gated_fusion"
    study: str | None = None  # default: the space's name
    storage: str = DEFAULT_STORAGE
    data: str | None = None  # default: the space's `data`, else "synthetic"
    trials: int | None = None  # default: the space's `trials`, else 20
    sampler: str = "tpe"
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


# ----------------------------------------------------------------------------- helpers

def check_storage(url: str) -> None:
    """Fail early, before anything is written, on a storage URL that cannot work.

    SQLite: the folder must exist and be writable (SQLite also writes its -wal/-shm files
    there), and an existing file must be a writable file. Other URLs must parse and their
    driver must be installed; connection errors surface when the storage is opened.
    """
    import sqlalchemy
    from sqlalchemy.engine import make_url

    try:
        u = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise UserError(f"--storage {url!r}: not a database URL (e.g. sqlite:///studies.db "
                        "or postgresql://user:pw@host/db)") from None
    if u.get_backend_name() == "sqlite":
        db = u.database
        if not db or db == ":memory:":
            raise UserError(f"--storage {url!r}: an in-memory SQLite database would be lost "
                            "when the search ends; give a file, e.g. sqlite:///studies.db")
        path = Path(db)
        parent = path.parent if str(path.parent) else Path(".")
        if path.exists():
            if not path.is_file():
                raise UserError(f"--storage {url!r}: {path} is not a file")
            if not os.access(path, os.R_OK | os.W_OK):
                raise UserError(f"--storage {url!r}: {path} is not writable")
        if not parent.is_dir():
            raise UserError(f"--storage {url!r}: folder {parent} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UserError(f"--storage {url!r}: folder {parent} is not writable")
        return
    try:
        u.get_dialect().import_dbapi()
    except ImportError as e:
        hint = " (pip install 'nas[postgres]')" if u.get_backend_name() == "postgresql" else ""
        raise UserError(f"--storage {url!r}: the database driver is not installed: "
                        f"{e}{hint}") from None


def _storage(url: str) -> optuna.storages.RDBStorage:
    """The RDB storage, with SQLite set up for one writer beside many readers.

    SQLite: a 60 s busy timeout (a reader holding a lock briefly makes the writer wait, not
    fail); WAL journal mode is switched on once the study is validated (``_enable_wal``):
    readers then never block the writer nor the writer the readers, and they see each
    committed trial. Connection errors become a UserError naming the URL.
    """
    import sqlalchemy

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        kwargs = {"connect_args": {"timeout": 60}}
    else:  # a pooled connection that died with a database restart is replaced, not used
        kwargs = {"pool_pre_ping": True}
        if url.startswith("postgresql"):
            kwargs["connect_args"] = {"connect_timeout": 10}  # a lost host: no long hang
    try:
        for attempt in range(5):
            try:
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError,
                    sqlalchemy.exc.OperationalError) as e:
                # Two drivers creating Optuna's tables in a new database at once: one
                # loses the race (duplicate table / version row); the tables exist now.
                racy = not isinstance(e, sqlalchemy.exc.OperationalError) or \
                    "already exists" in str(e)
                if attempt == 4 or not racy:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")
    except sqlalchemy.exc.OperationalError as e:
        raise UserError(f"--storage {url!r}: cannot open the database: "
                        f"{str(getattr(e, 'orig', e)).strip().splitlines()[0]}") from None


def _enable_wal(storage: optuna.storages.RDBStorage) -> None:
    """Persistent WAL journal mode for a SQLite storage (no-op for other databases)."""
    if storage.engine.name != "sqlite":
        return
    with storage.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")


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


# The original AVIGATE configuration: the reference's sizes with gates that read only
# [video; audio] and no text-guided query fusion (model.md keeps it as ``gate_inputs: va``).
AVIGATE = ("avigate (text-agnostic baseline)", {"gate_inputs": "va", "query_fusion": "none"})


def warm_start_configs(space: SearchSpace, overrides: Mapping[str, Any]
                       ) -> list[tuple[str, dict[str, Any]]]:
    """(label, params) to enqueue on creation, in this order: the original AVIGATE
    configuration, the reference, then the plan's single variants, as far as the space
    can express them (duplicates and inexpressible ones left out).

    Why AVIGATE first (cost-aware warm start). The reference and the plan's variants are
    all text-conditioned: each answers a query with one fused pass per gallery clip, two
    to three orders of magnitude more query FLOPs than a text-agnostic configuration,
    and several times the training time per epoch. The front's cheap end (and most of
    the hypervolume, whose cost axis runs from 0 to the reference point) belongs to
    text-agnostic configurations, and AVIGATE is the baseline the plan sets out to
    improve on. Trained first, it costs a fraction of one text-conditioned trial, puts
    a point on the cheap end of the front at once, and gives MO-ASHA a yardstick at
    every rung: the text-conditioned warm-start trials that follow are only continued
    where they beat it on recall (at their cost they cannot beat it on cost), instead
    of each running to the full budget because it was the first at its rungs.
    """
    ref_params = space.reference_params()
    ref_f, ref_t = space.build(ref_params, overrides)
    out: list[tuple[str, dict[str, Any]]] = []
    try:
        base = space.params_of(ref_f.replace(**AVIGATE[1]), ref_t)
    except Exception:  # noqa: BLE001 - not expressible with this base: leave it out
        base = None
    if base is not None and base != ref_params:
        out.append((AVIGATE[0], base))
    out.append(("reference", ref_params))
    for label, change in WARM_START:
        try:
            f = ref_f.replace(**change)
        except Exception:  # noqa: BLE001 - an impossible variant for this base: skip it
            continue
        p = space.params_of(f, ref_t)
        if p is not None and all(p != q for _, q in out):
            out.append((label, p))
    return out


READY_KEY = "nas:ready"


def _is_ready(study: optuna.Study) -> bool:
    """Initialised (attrs, metric names, warm start): by this version, or an older one."""
    return bool(study._storage.get_study_system_attrs(study._study_id).get(READY_KEY)) or \
        "reference_params" in study._storage.get_study_user_attrs(study._study_id)


def _initialise(study: optuna.Study, opts: SearchOptions, space: SearchSpace,
                names: list[str], data_spec: str, overrides: Mapping[str, Any]) -> None:
    """Enqueue the warm start, set metric names and study attrs, then mark it ready.

    Idempotent, so a driver that finds a study whose creator crashed half-way finishes
    the job: warm-start configs already enqueued (by label) are not enqueued again.
    """
    have = {t.user_attrs.get("warm_start") for t in study.get_trials(deepcopy=False)}
    for label, params in warm_start_configs(space, overrides):
        if label not in have:
            study.enqueue_trial(params, user_attrs={"warm_start": label})
    with warnings.catch_warnings():  # experimental since optuna 3.2, stable in practice
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(names)
    _, base_train = space.build(space.reference_params(), overrides)
    attrs = {"objectives": names, "space": space.path, "space_text": space.text,
             "data": data_spec, "rungs": space.proxy.rungs(),
             "full_budget": space.proxy.max_budget, "eta": space.proxy.eta,
             "train_config": base_train.to_dict(), "seed": opts.seed, "sampler": opts.sampler,
             "limits": parse_limits(opts.limits)}
    for k, v in attrs.items():
        study.set_user_attr(k, v)
    # Last: its presence means everything above is there (older versions: see _is_ready).
    study.set_user_attr("reference_params", space.reference_params())
    study._storage.set_study_system_attr(study._study_id, READY_KEY, True)


def _open_study(opts: SearchOptions, space: SearchSpace, objectives: list[Objective],
                sampler: optuna.samplers.BaseSampler, data_spec: str, overrides: Mapping[str, Any],
                guard: StorageGuard, ready_timeout_s: float = 120.0
                ) -> tuple[optuna.Study, bool, DriverRegistry]:
    """Create or load the study, register this driver in it, and check it matches.

    Two drivers may start at once on one storage: the one whose ``create_study`` loses
    loads the study and waits until the creator has initialised it (or initialises it
    itself when the creator died half-way).
    """
    rdb = _storage(opts.storage)
    storage = guard.wrap(rdb)  # every call retried through a database outage
    name = opts.study or space.name
    directions = [o.direction for o in objectives]
    names = [o.name for o in objectives]
    created = False
    try:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    except KeyError:
        try:
            study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                        directions=directions)
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    if not created and _is_ready(study):
        _check_matches(study, opts, space, names, directions, data_spec)
    _enable_wal(rdb)
    registry = DriverRegistry(study)
    registry.start()
    entries = registry.entries()
    if any(registry.alive(d, entries) for d in entries if d != registry.id):
        # Another driver is searching this study now, with the same --seed most likely:
        # it would propose the very same configurations (all duplicates). Diverge.
        sampler.reseed_rng()
    if created:
        faultpoint("after_create")
        _initialise(study, opts, space, names, data_spec, overrides)
        return study, True, registry
    deadline = time.monotonic() + ready_timeout_s
    while not _is_ready(study):
        entries = registry.entries()
        if not any(registry.alive(d, entries) for d in entries if d != registry.id):
            # Nobody else is initialising it: its creator died half-way. Finish the job.
            _initialise(study, opts, space, names, data_spec, overrides)
            break
        if time.monotonic() > deadline:
            registry.stop()
            raise UserError(f"study {name!r} in {opts.storage}: another driver created it "
                            f"but has not initialised it within {ready_timeout_s:.0f} s")
        time.sleep(0.2)
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    try:
        _check_matches(study, opts, space, names, directions, data_spec)
    except UserError:
        registry.stop()
        raise
    return study, False, registry


def _check_matches(study: optuna.Study, opts: SearchOptions, space: SearchSpace,
                   names: list[str], directions: list[str], data_spec: str) -> None:
    """A clear error when resuming with other objectives, space, rungs or data."""
    name = study.study_name
    have = study.metric_names or []
    if have != names or [d.name.lower() for d in study.directions] != directions:
        raise UserError(
            f"study {name!r} in {opts.storage} has objectives {have or '(unnamed)'}; "
            f"--objectives asks for {names}. Use the same objectives to resume, or a new "
            "--study name")
    ua = study.user_attrs
    if ua.get("space_text") not in (None, space.text):
        raise UserError(f"study {name!r} was created with a different search space "
                        f"({ua.get('space')}); resuming needs the same space file. Use a "
                        "new --study name for a new space")
    if ua.get("rungs") not in (None, space.proxy.rungs()):
        raise UserError(f"study {name!r} uses rungs {ua.get('rungs')} (epochs); this run "
                        f"asks for {space.proxy.rungs()}. Use the same --min-budget/"
                        "--max-budget/--eta to resume, or a new --study name")
    if ua.get("data") not in (None, data_spec):
        raise UserError(f"study {name!r} was run on data {ua.get('data')!r}; this run "
                        f"asks for {data_spec!r}. Use the same --data, or a new --study")


class _Deadline:
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


class _SigintGuard:
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


# ----------------------------------------------------------------------------- progress

class Progress:
    """One live status line on stderr (\\r-updated on a tty, plain lines otherwise)."""

    def __init__(self, study: optuna.Study, core: AskTellSearcher, out: TextIO, quiet: bool,
                 min_interval: float = 0.5, deadline: float | None = None) -> None:
        self.study = study
        self.core = core
        self.out = out
        self.quiet = quiet
        self.tty = hasattr(out, "isatty") and out.isatty()
        self.t0 = time.monotonic()
        self.done0 = core.done
        self.last = 0.0
        self.last_line = ""
        self.min_interval = min_interval if self.tty else 5.0
        self.deadline = deadline  # time.monotonic() at which the time budget ends

    def counts(self) -> dict[str, int]:
        """Trial counts by status (from the storage)."""
        c = {s: 0 for s in records.STATUS}
        for t in self.study.get_trials(deepcopy=False):
            s = t.user_attrs.get("status")
            if s in c:
                c[s] += 1
        return c

    def line(self) -> str:
        c = self.counts()
        front = pareto_front(self.study)
        hv = study_hypervolume(self.study, front)
        el = time.monotonic() - self.t0
        done_now = self.core.done - self.done0
        left = self.core.n_trials - self.core.done
        eta = f"{_fmt_s(el / done_now * left)}" if done_now and left > 0 else "-"
        if self.deadline is not None:
            eta += f", budget left {_fmt_s(max(0.0, self.deadline - time.monotonic()))}"
        return (f"trials {self.core.done}/{self.core.n_trials} done "
                f"(complete {c['complete']}, stopped {c['stopped']}, failed {c['failed']}, "
                f"infeasible {c['infeasible']}, duplicate {c['duplicate']}) | running "
                f"{len(self.core.in_flight)} | front {len(front)} | hypervolume {hv:.3f} | "
                f"{_fmt_s(el)} elapsed, ETA {eta}")

    def update(self, force: bool = False) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if not force and now - self.last < self.min_interval:
            return
        self.last = now
        line = self.line()
        if self.tty:
            self.out.write("\r\x1b[2K" + line)
        elif line != self.last_line:
            self.out.write(line + "\n")
        self.last_line = line
        self.out.flush()

    def close(self) -> None:
        if self.quiet:
            return
        self.update(force=True)
        if self.tty:
            self.out.write("\n")
        self.out.flush()


def _short(v: object) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def format_front(study: optuna.Study, front: list[optuna.trial.FrozenTrial] | None = None
                 ) -> str:
    """A text table of the full-budget Pareto front."""
    from nas.report.data import canonical_params  # here: nas.report imports plotly

    front = pareto_front(study) if front is None else front
    names = study.metric_names or [f"objective{i}" for i in range(len(study.directions))]
    if not front:
        return "Pareto front: no full-budget trial yet."
    head = ["trial", *names, "config_id", "changed from reference"]
    rows = [head]
    ref = study.user_attrs.get("reference_params") or {}
    for t in front:
        changed = ", ".join(f"{k}={_short(v)}" for k, v in canonical_params(t).items()
                            if k not in ref or ref[k] != v) or "(reference)"
        rows.append([str(t.number), *(f"{v:.4g}" for v in t.values),
                     str(t.user_attrs.get("config_id", "")), changed[:100]])
    w = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(x) for c, x in zip(r, w)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * x for x in w))
    return f"Pareto front ({len(front)} full-budget trials):\n" + "\n".join(lines)


# ----------------------------------------------------------------------------- execution

class _Halt:
    """Why no new trial should start (the first check that says so), else None."""

    def __init__(self, *checks: Callable[[], str | None]) -> None:
        self.checks = checks
        self.reason: str | None = None

    def __call__(self) -> str | None:
        if self.reason is None:
            self.reason = next((r for r in (c() for c in self.checks) if r), None)
        return self.reason


def _wind_up(core: AskTellSearcher, progress: "Progress", reason: str,
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
                go_on = asha.report(n, rung, core.rung_vector(n, metrics))
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


def run_search(opts: SearchOptions, out: TextIO | None = None) -> SearchSummary:
    """Run (or resume) a search; see the module docstring."""
    out = out or sys.stderr
    t0 = opts.started_at if opts.started_at is not None else time.monotonic()
    space = _space_with_budget(load_space(opts.space), opts)
    objectives = parse_objectives(opts.objectives)
    limits = parse_limits(opts.limits)
    data_spec = opts.data or space.data or "synthetic"
    n_trials = opts.trials or space.trials or 20
    if n_trials < 1:
        raise UserError(f"--trials must be >= 1, got {n_trials}")

    sampler = make_sampler(opts.sampler, opts.seed)
    # Checks that need no data, before anything is loaded or written.
    check_storage(opts.storage)
    if opts.executor != "local":
        check_ray_address(opts.ray.address)

    cost_fn = import_object(opts.evaluator.costs)
    data = import_object(opts.evaluator.data)(data_spec)
    shapes = data.shapes
    overrides = _data_overrides(shapes)

    if opts.trial_timeout_s and opts.executor == "local":
        raise UserError("--trial-timeout needs the Ray executor (a trial in the driver's own "
                        "process cannot be stopped)")
    from nas import dashboard

    store = StorageGuard(opts.storage, opts.db_retry_s, opts.min_free,
                         dashboard.artifact_dir_for(opts.storage), out)
    low = store.low_disk()
    if low:
        raise SearchStopped(f"--storage {store.shown}: not starting: {low}")
    try:
        study, created, registry = _open_study(opts, space, objectives, sampler, data_spec,
                                               overrides, store)
    except Abort as e:
        raise SearchStopped(e.message) from None
    try:
        return _search(opts, study, created, registry, space, objectives, cost_fn, shapes,
                       overrides, limits, data, data_spec, n_trials, out, t0)
    except Abort as e:
        raise SearchStopped(e.message) from None
    finally:
        try:
            registry.stop()
        except Abort:
            pass  # not marked ended: the next driver sees this process gone all the same


def _search(opts: SearchOptions, study: optuna.Study, created: bool,
            registry: DriverRegistry, space: SearchSpace, objectives: list[Objective],
            cost_fn: Any, shapes: Any, overrides: Mapping[str, Any],
            limits: Mapping[str, float], data: Any, data_spec: str, n_trials: int,
            out: TextIO, t0: float) -> SearchSummary:
    core = AskTellSearcher(study, space, objectives, cost_fn, shapes, overrides, limits,
                           n_trials, max_skips=opts.max_skips, registry=registry,
                           on_full_budget=_gate_plot_attacher(study, opts.storage))
    crashed = core.recovered
    budget = opts.time_budget_s if opts.time_budget_s is not None else space.time_budget_s
    # Trials stop a little before the budget ends: recording the running ones, stopping Ray
    # and printing the summary take the rest, so the command itself ends within its budget.
    reserve = 0.0 if budget is None else min(30.0, 0.1 * budget)
    deadline = _Deadline(core, None if budget is None else
                         t0 + budget - reserve - time.monotonic())
    progress = Progress(study, core, out, opts.quiet,
                        deadline=None if budget is None else t0 + budget - reserve)
    core.on_event = progress.update
    if not opts.quiet:
        verb = "created" if created else "resuming"
        out.write(f"nas search: {verb} study {study.study_name!r} in {opts.storage}: space "
                  f"{space.name} ({len(space.dimensions)} dims), objectives "
                  f"{','.join(o.name for o in objectives)}, sampler {opts.sampler}, rungs "
                  f"{space.proxy.rungs()} epochs, {'MO-ASHA' if opts.prune else 'no pruning'}"
                  f", data {data_spec}; {core.done}/{n_trials} trials done"
                  + (f"; time budget {_fmt_s(budget)} (this run)" if budget else "")
                  + (f"; {crashed} trial(s) left running by a crash re-queued" if crashed else "")
                  + "\n")
    asha = MOASHA(len(space.proxy.rungs()), space.proxy.eta, enabled=opts.prune,
                  quality=[i for i, o in enumerate(objectives) if not o.known_before_training])
    guard = _SigintGuard()
    guard.install()
    interrupted = time_up = False
    halt = _Halt(study._storage.guard.low_disk)
    aborted: Abort | None = None
    try:
        try:
            deadline.start()
            if core.remaining > 0:
                if opts.executor == "local":
                    _run_local(core, asha, opts.evaluator, data, guard, halt)
                else:
                    from nas.search import ray_adapter  # the only module that imports Ray

                    del data  # the workers load their own copy
                    ray_adapter.run_tune(core, asha, opts.evaluator, data_spec, opts.ray,
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
                  f"time budget {_fmt_s(budget or 0)} reached" if time_up or deadline.fired
                  else "driver stopped before the trial ended")
        _wind_up(core, progress, aborted.reason if aborted else reason, aborted)
    if halt.reason and records.counted(study.get_trials(deepcopy=False)) < n_trials:
        raise SearchStopped(f"stopped starting new trials: {halt.reason}")
    front = pareto_front(study)
    states: dict[str, int] = {}
    trials = study.get_trials(deepcopy=False)
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    return SearchSummary(study.study_name, opts.storage, records.counted(trials), n_trials,
                         states, front, study_hypervolume(study, front), interrupted,
                         time.monotonic() - t0, time_up=time_up or deadline.fired,
                         time_budget_s=budget)

"""Replay search methods on a tabular-benchmark table with simulated time.

A trial takes no training: its metrics at each rung are read from the table (the row of
its configuration and of the table seed this replay seed uses), and it *takes* the table's
wall seconds (to the rung where it stopped) on a simulated clock. The method's own
decision time (proposals, cost estimates, bookkeeping, storage writes, early-stopping
decisions) is real time, measured from its first proposal on, and added to the same
clock, like Syne Tune's simulator backend (trials take their tabulated time; the
scheduler's own time is counted too). Cost estimates run the real ``estimate_costs`` so
that their time counts (a cost-aware choice pays for the candidates it costs, Ray's
trials for their query cost, once per architecture as a live run caches them); the
figures they answer with are the table's. One trial at a time.

Methods (``METHODS``):

- ``tool``: ``nas.search.driver.run_search`` itself, as shipped (multivariate TPE through
  the learning view, MO-ASHA, the warm start, SQLite records), in process
  (``executor="local"``) with the evaluator's import paths pointing at the table
  (``tabular_replay:table_train`` / ``table_data`` / ``table_costs``): the tool's own
  AskTellSearcher and MOASHA decide everything;
- ``tool_nows``: the same with ``--no-warm-start``;
- ``random``, ``tpe``: the same driver with ``sampler=random|tpe`` and no early stopping
  (no warm start);
- ``moasha_random``: random proposals with the tool's MO-ASHA (no warm start): the
  MO-ASHA of Schmucker et al. 2021 as published (random search + multi-objective
  asynchronous successive halving);
- ``ray``: Ray Tune's stock ``OptunaSearch`` (multi-objective TPE, define-by-run over the
  same space) with ``ASHAScheduler(metric="recall", grace_period=1 rung,
  reduction_factor=eta)``: Ray's own classes, driven the way Tune's controller drives them
  (``suggest``; ``on_trial_add``; ``on_trial_result`` per rung until STOP; then
  ``on_trial_complete`` on both with the last result), without Tune's execution (so none of
  Ray's orchestration time is counted). Trials ASHA stopped are told to the searcher as
  COMPLETE with their last values (stock behaviour) and are left out of its front;
- ``tool_cost``, ``tool_cost_nows``, ``tpe_cost``: ``tool``, ``tool_nows``, ``tpe`` with the
  search's ``--cost-aware`` proposals.

Every method runs until its simulated clock reaches the budget (``--budget-trials`` x the
mean full-budget wall seconds of the table's configurations); the trial running then is
cut off (not counted). Hypervolume of the full-budget Pareto front of (recall max,
query_gflops min) against one fixed reference point: recall 0 and 1.1 x the largest
query GFLOPs in the table.
"""

from __future__ import annotations

import io
import math
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nas.errors import UserError

__all__ = [
    "METHODS",
    "MethodError",
    "Replay",
    "add_replay_args",
    "check_table",
    "main_replay",
    "replay_budget",
    "replay_method",
    "table_costs",
    "table_data",
    "table_train",
]

METHODS = {
    "tool": "the tool: TPE (learning view) + MO-ASHA + warm start",
    "tool_nows": "the tool without its warm start",
    "random": "random search, no early stopping",
    "tpe": "the tool's TPE, no early stopping, no warm start",
    "moasha_random": "MO-ASHA (Schmucker et al. 2021): random proposals + the tool's MO-ASHA",
    "ray": "Ray Tune stock OptunaSearch (MO TPE) + ASHAScheduler(recall)",
    "tool_cost": "the tool with --cost-aware proposals",
    "tool_cost_nows": "the tool with --cost-aware proposals, without its warm start",
    "tpe_cost": "the tool's TPE with --cost-aware proposals, no early stopping, no warm start",
    "tool_recall": "the tool with --rung-signal objective (MO-ASHA ranks by recall at every "
                   "rung; the default before 2026-12-02)",
    "tool_nows_recall": "the tool with --rung-signal objective, without its warm start",
    "moasha_random_recall": "moasha_random with --rung-signal objective",
    "tool_v1": "the tool as of 2026-12-01 (--promotion crowding, no start-up design)",
    "tool_nows_v1": "the tool as of 2026-12-01, without its warm start",
    "tool_crowd": "the tool with --promotion crowding (MO-ASHA cuts a rung's last front by "
                  "NSGA-II crowding distance; the default before 2026-12-02)",
    "tool_nows_crowd": "the tool with --promotion crowding, without its warm start",
    "tool_cost_crowd": "the tool with --cost-aware and --promotion crowding",
    "tool_cost_nows_crowd": "the tool with --cost-aware and --promotion crowding, without "
                            "its warm start",
    "tool_cost_wide": "tool_cost with 64 candidates per choice, every one costed (the "
                      "candidate set of a cheap cost estimate)",
    "tool_cost_nows_wide": "tool_cost_wide without its warm start",
    "tool_hedge": "the tool with --hedge 3: MO-ASHA does not stop every third trial at "
                  "the first rung (Hyperband's second bracket)",
    "tool_nows_hedge": "tool_hedge without its warm start",
    "tool_cost_hedge": "tool_cost with the first-rung hedge",
    "tool_cost_nows_hedge": "tool_cost_nows with the first-rung hedge",
    "tool_2d": "the tool searching the 2-D objectives (recall, query GFLOPs: what the 2-D "
               "hypervolume and Ray's OptunaSearch measure) instead of its default three",
    "tool_nows_2d": "tool_2d without its warm start",
    "tool_cost_2d": "tool_cost searching the 2-D objectives",
    "tool_cost_nows_2d": "tool_cost_nows searching the 2-D objectives",
    "tool_cost_nows_hedge_2d": "tool_cost_nows_hedge searching the 2-D objectives",
    "tool_cost_nows_hedge5_2d": "tool_cost_nows_hedge_2d sparing every fifth trial at the "
                                "first rung instead of every third",
    "tool_cost_hedge5_2d": "tool_cost_nows_hedge5_2d with the warm start",
    "tool_cost_hedge5": "tool_cost_hedge5_2d with the default three objectives",
}

# the method-name parts that modify a base method (tool, tool_nows, random, tpe, ...)
_MODIFIERS = ("_cost", "_recall", "_crowd", "_v1", "_wide", "_hedge5", "_hedge", "_2d")
WIDE_CANDIDATES = 64  # the *_wide methods' candidates per cost-aware choice
HEDGE = 3  # the *_hedge methods: every third trial is not stopped at the first rung


class MethodError(UserError):
    """An unknown method name."""


# ----------------------------------------------------------------------------- the clock

@dataclass
class Replay:
    """The state of one replayed run: the table, which table seed answers, the simulated
    clock and the trials trained so far (completion order)."""

    table: Any
    seed: int  # the table's training seed that answers this run
    budget_s: float = math.inf
    clock: str = "cpu"  # "cpu": CPU seconds (table cpu_s, process_time); "wall": wall seconds
    trials: list[dict[str, Any]] = field(default_factory=list)
    table_s: float = 0.0  # simulated seconds of the trials (the table's wall seconds)
    lookup_s: float = 0.0  # real seconds spent reading the table (not the method's time)
    t0: float | None = None  # real time at the first proposal

    def tick(self) -> float:
        """The method's own time now: this process's CPU seconds (``clock="cpu"``: load
        from other jobs on a shared machine does not count) or wall seconds."""
        return time.process_time() if self.clock == "cpu" else time.perf_counter()

    def trial_s(self, row: Mapping[str, Any]) -> float:
        """A trial's seconds to the end of a rung, from the table."""
        return float(row["cpu_s" if self.clock == "cpu" else "wall_s"])

    def start(self) -> None:
        """Start the clock, at the method's first proposal (the drivers call it there; the
        evaluator too, for a method that trains before it proposes): the one-off set-up,
        e.g. creating its study, is not counted; every proposal and decision from the
        first on is."""
        if self.t0 is None:
            self.t0 = self.tick()

    def now(self) -> float:
        """Simulated seconds since the start: the method's own real time + the trials'."""
        if self.t0 is None:
            return 0.0
        return (self.tick() - self.t0) - self.lookup_s + self.table_s

    def decision_s(self) -> float:
        return self.now() - self.table_s


class BudgetSpent(KeyboardInterrupt):
    """Raised by the table evaluator when the simulated budget is spent: the driver
    treats it as Ctrl-C (the running trial is recorded as interrupted, the run ends)."""


_CURRENT: list[Replay] = []  # the run the evaluator import paths answer for


def _rows(rep: Replay, cid: str) -> list[dict[str, Any]]:
    try:
        return rep.table.results[(cid, rep.seed)]
    except KeyError:
        raise RuntimeError(f"configuration {cid} (seed {rep.seed}) is not in table "
                           f"{rep.table.path}: the method proposed a configuration outside "
                           "the table's space") from None


def table_train(fusion: Any, train: Any, data: Any, *, rungs: Sequence[float],
                report: Callable[[int, dict], Any], costs: Mapping[str, float] | None = None
                ) -> Any:
    """The evaluator's train function, answered from the table (``nas.train.train_proxy``'s
    contract: ``report(i, metrics)`` after each rung, True stops)."""
    from nas.search.searcher import config_key

    rep = _CURRENT[-1]
    rep.start()
    t_in = rep.tick()
    if rep.now() >= rep.budget_s:
        raise BudgetSpent
    cid = config_key(fusion, train)
    rows = _rows(rep, cid)
    if [round(r["epochs"], 6) for r in rows] != [round(float(x), 6) for x in rungs]:
        raise RuntimeError(f"rungs {list(rungs)} differ from the table's "
                           f"{[r['epochs'] for r in rows]}")
    in_report = 0.0
    stopped, last = False, rows[0]
    for i, r in enumerate(rows):
        last = r
        t_r = rep.tick()
        go = report(i, dict(r["metrics"]))
        in_report += rep.tick() - t_r
        if go is True and i < len(rows) - 1:
            stopped = True
            break
    rep.lookup_s += (rep.tick() - t_in) - in_report
    return _finish_trial(rep, cid, last, stopped, len(rows))


def _finish_trial(rep: Replay, cid: str, last: Mapping[str, Any], stopped: bool,
                  n_rungs: int) -> Any:
    """Advance the clock by the trial's table seconds and record it."""
    if rep.now() + rep.trial_s(last) > rep.budget_s:
        # the trial would end after the budget: it does not count (cut off)
        rep.table_s += max(0.0, rep.budget_s - rep.now())
        raise BudgetSpent
    rep.table_s += rep.trial_s(last)
    full = not stopped and last["rung"] == n_rungs - 1
    cfg = rep.table.configs[cid]
    rep.trials.append({"config_id": cid, "rung": int(last["rung"]), "full": full,
                       "recall": float(last["recall"]), "trial_s": rep.trial_s(last),
                       "epochs": float(last["epochs"]), "query_gflops": cfg["query_gflops"],
                       "index_gflops": float(cfg["costs"].get("index_gflops", math.nan)),
                       "t_end": rep.now(), "decision_s": rep.decision_s()})
    return SimpleNamespace(metrics=dict(last["metrics"]), costs=dict(cfg["costs"]),
                           gate_stats={}, epochs=float(last["epochs"]), stopped=stopped,
                           wall_s=float(last["wall_s"]), history=[])


_DATA: dict[str, Any] = {}


def table_data(spec: str) -> Any:
    """The evaluator's data loader: the real data (its shapes set the model's input dims),
    loaded once per process."""
    from nas.data import load_data

    if spec not in _DATA:
        _DATA[spec] = load_data(spec)
    return _DATA[spec]


def table_costs(fusion: Any, shapes: Any = None, gallery: int = 1000,
                measure_latency: bool = False, **kw: Any) -> dict[str, float]:
    """The evaluator's cost function. It runs the real ``estimate_costs`` (the same call a
    live search makes), so its time is the method's own and counts on the clock: a
    cost-aware method that costs more candidates pays for them as it would live. It
    answers with the table's figures (computed by the build with that call) where the
    table holds them, so every method reads the same costs."""
    from nas.cost import estimate_costs

    real = estimate_costs(fusion, shapes, gallery=gallery, measure_latency=measure_latency,
                          **kw)
    if gallery == 1000 and not measure_latency and not kw and _CURRENT:
        hit = _CURRENT[-1].table.by_fusion().get(fusion.fusion_id)
        if hit is not None:
            return dict(hit["costs"])
    return real


def warm_costs(table: Any) -> None:
    """One cost estimate before any run: the process's first ``estimate_costs`` pays a
    one-off set-up (imports, torch's dispatch caches) that a live search pays once, not
    the first replayed run alone."""
    from nas.config import FusionConfig
    from nas.cost import estimate_costs

    first = next(iter(table.configs.values()))
    estimate_costs(FusionConfig.from_dict(first["fusion"]),
                   table_data(table.meta["data"]).shapes, gallery=1000)


# ----------------------------------------------------------------------------- methods

def _run_driver(method: str, rep: Replay, space_path: str, data_spec: str, seed: int,
                workdir: str, trials: int) -> None:
    """tool / tool_nows / random / tpe / moasha_random through ``run_search``."""
    from nas.search import driver, searcher
    from nas.search.driver import SearchOptions, run_search
    from nas.search.evaluator import EvaluatorSpec
    from nas.search.searcher import SearchExhausted

    storage = f"sqlite:///{workdir}/{method}_{seed}.db"
    name = f"{method}_{seed}"
    # tool_cost = tool + --cost-aware, tool_recall = tool + --rung-signal objective, ...
    base = method
    for suffix in _MODIFIERS:
        base = base.replace(suffix, "")
    sampler = {"tool": "tpe", "tool_nows": "tpe", "random": "random", "tpe": "tpe",
               "moasha_random": "random"}[base]
    prune = base in ("tool", "tool_nows", "moasha_random")
    ev = EvaluatorSpec("tabular_replay:table_train", "tabular_replay:table_data",
                       "tabular_replay:table_costs")
    opts = SearchOptions(space=space_path, study=name, storage=storage, data=data_spec,
                         trials=trials, sampler=sampler, cost_aware="_cost" in method,
                         rung_signal="objective" if method.endswith("_recall") else "mean_rank",
                         promotion="crowding" if method.endswith(("_crowd", "_v1"))
                         else "hypervolume", warm_start=base == "tool",
                         hedge=(5 if "_hedge5" in method else HEDGE if "_hedge" in method
                                else 0),
                         seed=seed, prune=prune, evaluator=ev, executor="local", quiet=True,
                         **({"objectives": "recall,query_gflops"} if method.endswith("_2d")
                            else {}))
    make_sampler, new_costs = driver.make_sampler, searcher.NEW_COSTS_PER_CHOICE
    ask = searcher.AskTellSearcher.next

    def timed_ask(self: Any) -> Any:  # the clock starts at the first proposal
        rep.start()
        return ask(self)
    searcher.AskTellSearcher.next = timed_ask  # type: ignore[method-assign]
    tweak: dict[str, Any] = {}  # sampler attributes this method changes
    if method.endswith("_v1"):  # the search of 2026-12-01: no start-up design either
        tweak["design"] = 0
    if method.endswith("_wide"):  # more candidates, each with its (table) cost
        tweak["candidates"] = WIDE_CANDIDATES
        searcher.NEW_COSTS_PER_CHOICE = WIDE_CANDIDATES
    if tweak:
        def tweaked(*a: Any, **k: Any) -> Any:
            s = make_sampler(*a, **k)
            for name, value in tweak.items():
                setattr(s, name, value)
            return s
        driver.make_sampler = tweaked  # type: ignore[assignment]
    try:
        run_search(opts, out=io.StringIO())
    except SearchExhausted:
        pass  # the sampler keeps proposing trained configurations: the run ends here
    finally:
        driver.make_sampler = make_sampler  # type: ignore[assignment]
        searcher.NEW_COSTS_PER_CHOICE = new_costs
        searcher.AskTellSearcher.next = ask  # type: ignore[method-assign]


def _run_ray(rep: Replay, space: Any, shapes: Any, seed: int) -> None:
    """Ray Tune's stock OptunaSearch + ASHAScheduler, driven as Tune's controller does."""
    import numpy as np
    import optuna
    from optuna.distributions import CategoricalDistribution, IntDistribution
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler
    from ray.tune.search.optuna import OptunaSearch

    from nas.config import FusionConfig
    from nas.data import model_inputs
    from nas.search.searcher import config_key
    from nas.search.space import InvalidCombination

    over = model_inputs(shapes)

    def define(trial: Any) -> dict[str, Any]:
        def suggest(name: str, dist: Any) -> Any:
            if isinstance(dist, CategoricalDistribution):
                return trial.suggest_categorical(name, dist.choices)
            if isinstance(dist, IntDistribution):
                return trial.suggest_int(name, dist.low, dist.high, step=dist.step)
            return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
        try:
            _, f, t = space.suggest(suggest, over)
        except InvalidCombination:
            return {"config_id": None}
        return {"config_id": config_key(f, t)}

    n_rungs = len(rep.table.rungs)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    searcher = OptunaSearch(space=define, metric=["recall", "query_gflops"],
                            mode=["max", "min"], sampler=optuna.samplers.TPESampler(seed=seed))
    sched = ASHAScheduler(time_attr="training_iteration", metric="recall", mode="max",
                          max_t=n_rungs, grace_period=1, reduction_factor=rep.table.meta["eta"])
    np.random.seed(seed)  # ASHAScheduler draws the bracket with numpy's global RNG
    costed: set[str] = set()  # architectures whose costs were estimated (as a live run caches)
    i = 0
    while True:
        if rep.now() >= rep.budget_s:
            return
        tid = f"t{i:05d}"
        i += 1
        rep.start()
        cfg = searcher.suggest(tid)
        trial = SimpleNamespace(trial_id=tid)
        cid = cfg.get("config_id")
        if cid is None:  # an invalid combination errors in Tune before any result
            searcher.on_trial_complete(tid, None, error=True)
            continue
        sched.on_trial_add(None, trial)
        t_look = rep.tick()
        rows = _rows(rep, cid)
        cfg_row = rep.table.configs[cid]
        rep.lookup_s += rep.tick() - t_look
        fusion = FusionConfig.from_dict(cfg_row["fusion"])
        if fusion.fusion_id not in costed:  # its query cost, once per architecture
            costed.add(fusion.fusion_id)
            table_costs(fusion, shapes)
        q = cfg_row["query_gflops"]
        last, stopped, result = rows[0], False, {}
        for k, r in enumerate(rows):
            last = r
            result = {"training_iteration": k + 1, "recall": r["recall"], "query_gflops": q}
            searcher.on_trial_result(tid, result)
            if sched.on_trial_result(None, trial, result) == TrialScheduler.STOP:
                stopped = k < n_rungs - 1
                break
        try:
            _finish_trial(rep, cid, last, stopped, n_rungs)
        except BudgetSpent:
            return
        searcher.on_trial_complete(tid, result)
        sched.on_trial_complete(None, trial, result)


def replay_method(method: str, table: Any, space_path: str, seed: int, budget_s: float,
                  workdir: str, clock: str = "cpu", trials: int | None = None,
                  table_seed: int | None = None) -> Replay:
    """One seed of one method; returns the run (its trials and clock).

    ``seed`` seeds the method (its sampler); the table's training seed ``table_seed``
    answers (default: the table's seeds in turn, ``seed`` modulo their number).
    ``trials``: the driver's ``--trials`` (default: every configuration of the table; the
    budget ends the run first). The driver's study stays in ``workdir``.
    """
    from nas.search.space import load_space

    if method not in METHODS:
        raise MethodError(f"--methods: unknown method {method!r}; choose from "
                          f"{', '.join(METHODS)}")
    n_seeds = len(table.seeds)
    rep = Replay(table, seed=table.seeds[seed % n_seeds] if table_seed is None else table_seed,
                 budget_s=budget_s, clock=clock)
    _CURRENT.append(rep)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if method == "ray":
                space = load_space(space_path)
                _run_ray(rep, space, table_data(table.meta["data"]).shapes, seed)
            else:
                try:
                    _run_driver(method, rep, space_path, table.meta["data"], seed, workdir,
                                trials or len(table.configs))
                except BudgetSpent:
                    pass
    finally:
        _CURRENT.pop()
    return rep


def replay_budget(table: Any, budget_trials: float, clock: str = "cpu") -> float:
    """Simulated seconds per replayed run: ``budget_trials`` x the table's mean
    full-budget trial (CPU or wall seconds, as the clock counts)."""
    key = "cpu_s" if clock == "cpu" else "wall_s"
    return budget_trials * statistics.fmean(rows[-1][key] for rows in table.results.values())


# ----------------------------------------------------------------------------- checks

def check_table(table_path: str, space_path: str) -> Any:
    """Open the table and check it was built from this space (TableError otherwise)."""
    from nas.search.space import load_space

    from tabular_table import TableError, enumerate_space, open_table, space_hash

    table = open_table(table_path)
    space = load_space(space_path)
    data = table_data(table.meta["data"])
    h = space_hash(enumerate_space(space, data.shapes), space.proxy.rungs(), table.meta["data"])
    if h != table.meta["space_hash"]:
        raise TableError(f"table {table_path}: built from another space (hash "
                         f"{table.meta['space_hash']}, space {table.meta.get('space_name')!r});"
                         f" --space {space_path} enumerates {h}")
    if not table.seeds:
        raise TableError(f"table {table_path}: no seed is complete yet (resume the build)")
    return table


# ----------------------------------------------------------------------------- analysis

HV_COLUMNS = {2: ("recall", "query_gflops"), 3: ("recall", "query_gflops", "index_gflops")}


def hv_reference(table: Any, dims: int) -> list[float]:
    """Recall 0 and 1.1 x the largest cost of each cost objective in the table."""
    return [0.0] + [1.1 * max(float(c["costs"][k]) for c in table.configs.values())
                    for k in HV_COLUMNS[dims][1:]]


def run_curve(rep: Replay, ref: Sequence[float]) -> list[dict[str, float]]:
    """Hypervolume after each trial against simulated time (``compute_s``): of the
    full-budget front of (recall max, query_gflops min) with a 2-entry ``ref``, and of
    (recall, query_gflops, index_gflops), the tool's default objectives, with 3 entries."""
    import numpy as np

    from nas.search import hypervolume

    cols = HV_COLUMNS[len(ref)]
    out, pts = [], []
    for t in rep.trials:
        if t["full"]:
            pts.append([-t["recall"], *(t[k] for k in cols[1:])])
        hv = hypervolume(np.array(pts, dtype=float), [-ref[0], *ref[1:]]) if pts else 0.0
        out.append({"compute_s": t["t_end"], "hv": float(hv)})
    return out


def _bootstrap(xs: Sequence[float], stat: Callable[..., Any], level: float, n: int,
               seed: int, method: str) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` over the non-NaN values of ``xs``."""
    import numpy as np

    a = np.asarray([x for x in xs if not math.isnan(x)], dtype=float)
    if not len(a):
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    stats = stat(a[rng.integers(0, len(a), size=(n, len(a)))], axis=1)
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2], method=method)
    return float(lo), float(hi)


def bootstrap_median(xs: Sequence[float], level: float = 0.9, n: int = 2000,
                     seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the median (inf values allowed: "never")."""
    import numpy as np

    return _bootstrap(xs, np.median, level, n, seed, "lower")


def bootstrap_mean(xs: Sequence[float], level: float = 0.9, n: int = 2000, seed: int = 0
                   ) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean."""
    import numpy as np

    return _bootstrap(xs, np.mean, level, n, seed, "linear")


def _median_iqr(xs: Sequence[float]) -> str:
    from common import summary

    s = summary(xs)
    if not s["n"]:
        return "-"
    return f"{s['median']:.3g} [{s['q1']:.3g}-{s['q3']:.3g}]"


def analyse(curves: Mapping[str, list[list[dict]]], fractions: Sequence[float],
            tolerance: float = 0.0) -> dict[str, Any]:
    """Per method: the share of random search's final compute at which it first reaches
    random search's final hypervolume (per seed: against the random run of the same seed;
    with ``tolerance`` > 0 also ``reach_tol``: to within that share of it), and the
    hypervolume after each fraction of random search's final compute (per seed)."""
    from bench_search import hv_at, reach_fraction

    out: dict[str, Any] = {}
    rand = curves.get("random")
    for m, cs in curves.items():
        res: dict[str, Any] = {"final_hv": [c[-1]["hv"] if c else 0.0 for c in cs]}
        if rand:
            res["reach"] = [reach_fraction(c, r) if r else math.nan for c, r in zip(cs, rand)]
            if tolerance > 0:
                res["reach_tol"] = [reach_fraction(c, r, tolerance) if r else math.nan
                                    for c, r in zip(cs, rand)]
            res["hv_at"] = {f: [hv_at(c, f * r[-1]["compute_s"]) if r else math.nan
                                for c, r in zip(cs, rand)] for f in fractions}
        out[m] = res
    return out


def _reach_text(reach: Sequence[float]) -> str:
    """Median [IQR] (90% bootstrap CI of the median) of reach shares; never = +inf."""
    if not reach:
        return "-"
    med = statistics.median(reach)  # never reaching counts as +inf: over all seeds
    s = sorted(reach)
    q1, q3 = s[len(s) // 4], s[(3 * len(s)) // 4]
    lo, hi = bootstrap_median(reach)
    return (f"{med:.0%} [{q1:.0%}-{q3:.0%}] (90% CI of median {lo:.0%}-{hi:.0%})"
            .replace("inf%", "never"))


def format_results(res: Mapping[str, Any], runs: Mapping[str, list[Replay]],
                   fractions: Sequence[float], tolerance: float = 0.0) -> str:
    """The printed tables: median [IQR] over seeds (with ``tolerance``, a column for
    reaching random search's final hypervolume to within that share of it)."""
    tol = tolerance > 0
    lines = [("| method | trials | full budget | decision s / run | final hv | reaches random's"
              " final hv at (share of its compute) | seeds reaching it |"
              + (f" reaches it to within {tolerance:g} of it at |" if tol else "")),
             "|---" * (8 if tol else 7) + "|"]
    for m, r in res.items():
        reps = runs[m]
        reach = r.get("reach") or []
        finite = [x for x in reach if math.isfinite(x)]
        lines.append(
            f"| {m} | {_median_iqr([len(x.trials) for x in reps])} | "
            f"{_median_iqr([sum(t['full'] for t in x.trials) for x in reps])} | "
            f"{_median_iqr([x.trials[-1]['decision_s'] if x.trials else 0 for x in reps])} | "
            f"{_median_iqr(r['final_hv'])} | "
            f"{'-' if m == 'random' else _reach_text(reach)} | "
            f"{'-' if m == 'random' else f'{len(finite)}/{len(reach)}'} |"
            + (f" {'-' if m == 'random' else _reach_text(r.get('reach_tol') or [])} |"
               if tol else ""))
    lines += ["", ("median [IQR] hypervolume after a share of random search's final compute "
                   "(same seed):"),
              "| method | " + " | ".join(f"{f:.0%}" for f in fractions) + " |",
              "|---" * (len(fractions) + 1) + "|"]
    for m, r in res.items():
        if "hv_at" in r:
            lines.append(f"| {m} | " + " | ".join(_median_iqr(r["hv_at"][f])
                                                    for f in fractions) + " |")
    return "\n".join(lines)


def format_paired(res: Mapping[str, Any], pairs: Sequence[tuple[str, str]],
                  fractions: Sequence[float]) -> str:
    """Per pair (a, b): the hypervolume of a minus that of b after each share of random
    search's compute, paired by seed (the same table seed answers both): mean with its
    90% bootstrap interval, and in how many seeds a is ahead / behind."""
    lines = ["| a - b | " + " | ".join(f"{f:.0%}" for f in fractions) + " |",
             "|---" * (len(fractions) + 1) + "|"]
    for a, b in pairs:
        cells = []
        for f in fractions:
            d = [x - y for x, y in zip(res[a]["hv_at"][f], res[b]["hv_at"][f])
                 if not (math.isnan(x) or math.isnan(y))]
            if not d:
                cells.append("-")
                continue
            lo, hi = bootstrap_mean(d)
            cells.append(f"{statistics.fmean(d):+.3g} [{lo:+.3g}, {hi:+.3g}] "
                         f"({sum(x > 1e-12 for x in d)}+/{sum(x < -1e-12 for x in d)}-)")
        lines.append(f"| {a} - {b} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI

def add_replay_args(ap: Any, default_table: str, default_space: str) -> None:
    ap.add_argument("--table", default=default_table, help="the table file (SQLite)")
    ap.add_argument("--space", default=default_space,
                    help="the sub-space the table was built from (checked by its hash)")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help=f"comma-separated, from: {', '.join(METHODS)}")
    ap.add_argument("--seeds", type=int, default=50, help="replay seeds 0..N-1 (default 50)")
    ap.add_argument("--first-seed", type=int, default=0,
                    help="start at this replay seed (split seeds across processes)")
    ap.add_argument("--merge", default=None, metavar="JSON,JSON",
                    help="report the replay JSONs of several runs together (runs nothing)")
    ap.add_argument("--budget-trials", type=float, default=24.0,
                    help="simulated budget per run, in mean full-budget trials of the table "
                         "(default 24)")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="simulated seconds: the table's CPU seconds and the method's own CPU "
                         "time (default; robust to other jobs on a shared machine), or wall "
                         "seconds for both")
    ap.add_argument("--out", default=None, metavar="JSON",
                    help="figures as JSON (default bench/results/tabular_replay.json)")
    ap.add_argument("--tolerance", type=float, default=0.0, metavar="T",
                    help="also report the share of random search's compute at which a method "
                         "reaches random's final hypervolume less the share T of it (e.g. "
                         "0.001; default 0: only the exact figure)")
    ap.add_argument("--paired", default="", metavar="A:B,...",
                    help="also print, per pair, A's hypervolume minus B's paired by seed "
                         "(mean, 90%% bootstrap interval, seeds ahead/behind)")


def _tolerance(args: Any) -> float:
    t = float(getattr(args, "tolerance", 0.0) or 0.0)
    if not 0.0 <= t < 1.0:
        raise UserError(f"--tolerance {t:g}: give a share of the hypervolume in [0, 1)")
    return t


def parse_pairs(text: str, methods: Sequence[str]) -> list[tuple[str, str]]:
    """``--paired A:B,C:D`` -> [(A, B), (C, D)], each a method of this run."""
    pairs = []
    for item in (x.strip() for x in text.split(",") if x.strip()):
        a, sep, b = item.partition(":")
        if not sep or a not in methods or b not in methods or a == b:
            raise UserError(f"--paired: {item!r} is not A:B with two different methods of "
                            f"this run ({', '.join(methods)})")
        pairs.append((a, b))
    return pairs


def report(runs: Mapping[str, Sequence[Any]], methods: Sequence[str], ref: Sequence[float],
           ref3: Sequence[float], out: str, meta: Mapping[str, Any],
           pairs: Sequence[tuple[str, str]] = (), tolerance: float = 0.0) -> None:
    """Print the 2-D and 3-D tables (and the paired differences of ``pairs``) and write the
    JSON (``runs``: anything with ``.trials`` per method and seed)."""
    from common import write_json

    fractions = (0.1, 0.25, 0.5, 1.0)
    curves = {m: [run_curve(r, ref) for r in rs] for m, rs in runs.items()}
    res = analyse(curves, fractions, tolerance)
    print("\n2-D hypervolume (recall, query_gflops):\n"
          + format_results(res, runs, fractions, tolerance))
    curves3 = {m: [run_curve(r, ref3) for r in rs] for m, rs in runs.items()}
    res3 = analyse(curves3, fractions, tolerance)
    print("\n3-D hypervolume (recall, query_gflops, index_gflops: the tool's default "
          "objectives):\n" + format_results(res3, runs, fractions, tolerance))
    if pairs and "random" in res:
        for dim, r in (("2-D", res), ("3-D", res3)):
            print(f"\n{dim} hypervolume, paired by seed: mean [90% CI] (seeds ahead+/behind-)"
                  " after a share of random search's final compute:\n"
                  + format_paired(r, pairs, fractions))
    write_json(out, {**meta, "tolerance": tolerance, "hv_reference": list(ref),
                     "hv_reference_3d": list(ref3),
                     "seeds": len(runs[methods[0]]), "methods": {m: {
                         "label": METHODS[m], **res[m], "hv3": res3[m],
                         "trials": [r.trials for r in runs[m]]} for m in methods}})


def merge_results(paths: Sequence[str], out: str, paired: str = "",
                  tolerance: float = 0.0) -> int:
    """Report the seeds of several replay JSONs of one table, budget and clock together
    (e.g. two processes that ran different ``--first-seed`` ranges): the methods that
    every file replayed."""
    import json

    docs = []
    for p in paths:
        try:
            docs.append(json.loads(Path(p).read_text()))
        except (OSError, ValueError) as e:
            raise UserError(f"--merge: cannot read {p}: {e}") from None
    keys = ("space_hash", "budget_s", "clock", "hv_reference", "hv_reference_3d")
    for p, d in zip(paths[1:], docs[1:]):
        for k in keys:
            if d.get(k) != docs[0].get(k):
                raise UserError(f"--merge: {p} differs from {paths[0]} in {k}")
    methods = [m for m in docs[0]["methods"] if all(m in d["methods"] for d in docs)]
    if not methods:
        raise UserError(f"--merge: no method was replayed in all of {', '.join(paths)}")
    left = sorted({m for d in docs for m in d["methods"]} - set(methods))
    if left:
        print(f"--merge: left out (not replayed in every file): {', '.join(left)}")
    pairs = parse_pairs(paired, methods)
    runs = {m: [SimpleNamespace(trials=t) for d in docs for t in d["methods"][m]["trials"]]
            for m in methods}
    report(runs, methods, docs[0]["hv_reference"], docs[0]["hv_reference_3d"], out, {
        "machine": docs[0]["machine"], "table": docs[0]["table"],
        "space_hash": docs[0]["space_hash"], "budget_s": docs[0]["budget_s"],
        "clock": docs[0]["clock"], "merged_from": list(paths),
        "seed_list": [s for d in docs for s in d.get("seed_list", [])],
        "interrupted": any(d.get("interrupted") for d in docs),
        "wall_s": sum(d.get("wall_s", 0.0) for d in docs)}, pairs, tolerance)
    print(f"json: {out}")
    return 0


def main_replay(args: Any) -> int:
    from common import RESULTS, machine_info, print_machine

    if getattr(args, "merge", None):
        return merge_results(args.merge.split(","), args.out or str(RESULTS /
                                                                   "tabular_replay.json"),
                             getattr(args, "paired", ""), _tolerance(args))

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise MethodError(f"--methods: unknown method {bad[0] if bad else args.methods!r}; "
                          f"choose from {', '.join(METHODS)}")
    pairs = parse_pairs(getattr(args, "paired", ""), methods)
    tolerance = _tolerance(args)
    if args.seeds < 1 or args.budget_trials <= 0:
        raise UserError("--seeds and --budget-trials must be positive")
    table = check_table(args.table, args.space)
    import signal

    # SIGTERM = Ctrl-C: report the completed seeds. The driver of a replayed method takes
    # an interrupt for the end of its run (that is how the budget ends it), so the flag,
    # not the exception, says that the run in progress was cut short and must not count.
    stop: list[bool] = []

    def interrupt(signum: int, frame: Any) -> None:
        stop.append(True)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    info = machine_info()
    print_machine(info)
    budget = replay_budget(table, args.budget_trials, args.clock)
    ref = hv_reference(table, 2)
    ref3 = hv_reference(table, 3)
    print(f"table {table.path}: {len(table.configs)} configurations, seeds {table.seeds}, "
          f"rungs {table.rungs}; budget {budget:.1f} simulated s per run ({args.budget_trials:g}"
          f" x mean full-budget trial {budget / args.budget_trials:.2f} s, clock {args.clock}); "
          f"hv reference {ref} (2-D), {ref3} (3-D)",
          flush=True)
    runs: dict[str, list[Replay]] = {m: [] for m in methods}
    # harness-only: the drivers' SQLite files on tmpfs where there is one (fsync waits
    # are not the method's CPU time but cost wall time)
    shm = Path("/dev/shm")
    workdir = tempfile.mkdtemp(prefix="tabular-replay-",
                               dir=str(shm) if shm.is_dir() else None)
    warm_costs(table)
    t0 = time.monotonic()
    interrupted = False
    try:
        # seed-major: every method of seed s before seed s + 1, so an interrupted replay
        # (Ctrl-C, SIGTERM) still reports every completed seed of every method
        for s in range(args.first_seed, args.first_seed + args.seeds):
            for m in methods:
                run = replay_method(m, table, args.space, s, budget, workdir,
                                    clock=args.clock)
                if stop:  # interrupted inside the method's driver: the run is cut short
                    raise KeyboardInterrupt
                runs[m].append(run)
                for f in Path(workdir).iterdir():
                    f.unlink() if f.is_file() else shutil.rmtree(f, ignore_errors=True)
            print(f"seed {s}: " + ", ".join(
                f"{m} {len(runs[m][-1].trials)} trials" for m in methods)
                + f" ({time.monotonic() - t0:.0f} s real time)", flush=True)
    except KeyboardInterrupt:
        interrupted = True
        n = min(len(v) for v in runs.values())
        runs = {m: v[:n] for m, v in runs.items()}
        print(f"interrupted: reporting the {n} seeds every method completed", flush=True)
        if not n:
            return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    first = getattr(args, "first_seed", 0)
    seed_list = list(range(first, first + len(runs[methods[0]])))
    out = args.out or str(RESULTS / "tabular_replay.json")
    report(runs, methods, ref, ref3, out, {
        "machine": info, "table": table.path, "space_hash": table.meta["space_hash"],
        "budget_s": budget, "seed_list": seed_list, "interrupted": interrupted,
        "clock": args.clock, "wall_s": time.monotonic() - t0}, pairs, tolerance)
    print(f"json: {out}\nwall: {time.monotonic() - t0:.0f} s")
    return 0

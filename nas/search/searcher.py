"""The ask/tell searcher on Optuna: turns the sampler's suggestions into trainable trial
specs (dedupe, cost limits), and is the study's only writer. The samplers, and why they
see stopped trials through a view, are in ``nas.search.sampler``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from nas.config import COST_GALLERY, config_key
from nas.errors import UserError
from nas.search import records
from nas.search.faults import faultpoint
from nas.search.liveness import DriverRegistry
from nas.search.objectives import Objective
from nas.search.space import InvalidCombination, SearchSpace

__all__ = ["AskTellSearcher", "TrialSpec", "SearchExhausted", "requeue", "config_key"]


# ----------------------------------------------------------------------------- searcher

@dataclass
class TrialSpec:
    """Everything a worker needs to train one trial (plain data, picklable)."""

    number: int
    trial_id: int
    config_id: str
    fusion: dict[str, Any]
    train: dict[str, Any]
    rungs: list[float]
    costs: dict[str, float]


class SearchExhausted(UserError):
    """The sampler keeps proposing configurations that cannot be trained."""


class AskTellSearcher:
    """Asks Optuna for configurations and tells it the results; the study's only writer.

    ``next()`` returns the next trial to train (or None when ``--trials`` is reached);
    configurations that are invalid, over a cost limit, or already trained in the study
    are recorded (FAIL with status infeasible/duplicate) and skipped without training,
    and do not count toward ``--trials``. ``on_rung`` and ``finish`` record results.

    Several drivers may search one study at once, so the counts and the dedupe are read
    from the storage, not kept in memory. A sampled configuration is *claimed* by writing
    ``status=running`` on its trial, and only then are the other trials read: a claimed
    trial that sees another trained-or-claimed trial with its config id yields
    (``duplicate``), and one that sees more than ``--trials`` trained-or-claimed trials
    yields (``surplus``: FAIL, not counted; an enqueued configuration is re-enqueued).
    Since every driver writes its claim before it reads, of two racing claims at least
    one sees the other: the total never exceeds ``--trials`` and no configuration is
    trained twice (at worst both yield and ask again).

    Every trial this driver asks is stamped with its id (``liveness``); trials left
    RUNNING by a dead driver are recovered (FAIL ``driver crashed``, re-queued) before
    each ask.
    """

    def __init__(self, study: optuna.Study, space: SearchSpace,
                 objectives: Sequence[Objective], cost_fn: Callable[..., dict[str, float]],
                 shapes: Any, overrides: Mapping[str, Any], limits: Mapping[str, float],
                 n_trials: int, max_skips: int = 100,
                 on_event: Callable[[], None] | None = None,
                 registry: DriverRegistry | None = None,
                 on_full_budget: Callable[[int, dict[str, Any], list[float]], None] | None = None
                 ) -> None:
        self.study = study
        # Called with (trial_id, gates, values) for a full-budget trial while it is still
        # RUNNING, just before its final record (the driver attaches the gate plot there:
        # Optuna cannot attach artifacts to a finished trial). Failures only warn.
        self.on_full_budget = on_full_budget
        self.space = space
        self.objectives = list(objectives)
        self.cost_fn = cost_fn
        self.shapes = shapes
        self.overrides = dict(overrides)
        self.limits = dict(limits)
        self.n_trials = n_trials
        self.max_skips = max_skips
        self.closed = False  # set when the time budget is spent: propose nothing more
        self.on_event = on_event or (lambda: None)
        self.registry = registry
        self.rungs = space.proxy.rungs()
        self.in_flight: dict[int, TrialSpec] = {}
        self.rung_metrics: dict[int, dict[str, float]] = {}
        self.done = 0  # trained trials in the study (all drivers), as of the last refresh
        self.others = 0  # trials claimed and running under other drivers
        self.recovered = 0  # orphaned trials this searcher recovered
        self._cost_cache: dict[str, dict[str, float]] = {}
        self.measure_latency = any(o.name == "latency_ms" for o in self.objectives) or \
            "latency_ms" in self.limits
        self.refresh()

    # ------------------------------------------------------------------ counting
    def refresh(self) -> list[FrozenTrial]:
        """Recover orphaned trials, then re-read the counts from the storage."""
        trials = self.study.get_trials(deepcopy=False)
        if self.registry is not None:
            mine = {s.trial_id for s in self.in_flight.values()}
            orphans = [t for t in self.registry.orphaned(trials) if t._trial_id not in mine]
            for t in orphans:
                requeue(self.study, t, "driver crashed", "crashed")
            if orphans:
                self.recovered += len(orphans)
                trials = self.study.get_trials(deepcopy=False)
        self._count(trials)
        return trials

    def _count(self, trials: Sequence[FrozenTrial]) -> None:
        mine = set(self.in_flight)
        self.done = records.counted(trials)
        self.others = sum(t.number not in mine and t.state == TrialState.RUNNING
                          and records.is_claimed(t) for t in trials)

    # ------------------------------------------------------------------ asking
    @property
    def remaining(self) -> int:
        """Trials still to start so that done + running (all drivers) reaches --trials."""
        return max(0, self.n_trials - self.done - len(self.in_flight) - self.others)

    def next(self) -> TrialSpec | None:
        """The next trial to train, or None when enough trials are done or running."""
        skips = 0
        while True:
            if self.closed:
                return None
            self.refresh()
            if self.remaining <= 0:
                return None
            spec = self._ask_one()
            if spec is not None:
                return spec
            skips += 1
            if skips >= self.max_skips:
                raise SearchExhausted(
                    f"{skips} proposals in a row were infeasible or already trained; the "
                    f"space may be exhausted ({self.done} trials trained). Lower --trials, "
                    "widen the space or relax --max.")

    def _suggest(self, trial: optuna.Trial) -> Callable[[str, Any], Any]:
        first = [True]

        def suggest(name: str, dist: Any) -> Any:
            if isinstance(dist, CategoricalDistribution):
                v = trial.suggest_categorical(name, dist.choices)
            elif isinstance(dist, IntDistribution):
                v = trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
            else:
                v = trial.suggest_float(name, dist.low, dist.high, step=dist.step,
                                        log=dist.log)
            if first[0]:
                first[0] = False
                faultpoint("mid_sample")  # test hook: some params written, not all
            return v
        return suggest

    def _costs(self, fusion: Any) -> dict[str, float]:
        cid = fusion.fusion_id
        if cid not in self._cost_cache:
            self._cost_cache[cid] = {k: float(v) for k, v in self.cost_fn(
                fusion, self.shapes, gallery=COST_GALLERY,
                measure_latency=self.measure_latency).items()}
        return self._cost_cache[cid]

    def _ask_one(self) -> TrialSpec | None:
        faultpoint("before_ask")
        trial = self.study.ask()
        tid = trial._trial_id
        faultpoint("after_ask")
        if self.registry is not None:
            self.registry.stamp(tid)
        try:
            params, fusion, train = self.space.suggest(self._suggest(trial), self.overrides)
        except InvalidCombination as e:
            # Teach it as infeasible (a violated constraint) when constraints are on.
            self._tell_infeasible(trial, None, {k: 1.0 for k in self.limits},
                                  {"status": "infeasible", "fail_reason": str(e),
                                   "budget": 0.0, "full_budget": False})
            return None
        cid = config_key(fusion, train)
        costs = self._costs(fusion)
        # config_id: the dedupe unit (architecture + training settings, since lr etc. are
        # searched), also what export, `nas train` and `nas ablate` name things by;
        # fusion_id: the architecture's own id (FusionConfig.fusion_id).
        records.set_attrs(self.study, tid, config_id=cid, fusion_id=fusion.fusion_id,
                          fusion=fusion.to_dict(),
                          train=train.to_dict(), costs=costs, rung_epochs=self.rungs,
                          budget=0.0, full_budget=False)
        violations = {k: costs.get(k, math.inf) - v for k, v in self.limits.items()}
        if any(v > 0 for v in violations.values()):
            why = "; ".join(f"{k} {costs.get(k, math.nan):.4g} > limit {self.limits[k]:g}"
                            for k, v in violations.items() if v > 0)
            self._tell_infeasible(trial, costs, violations,
                                  {"status": "infeasible",
                                   "fail_reason": f"over cost limit: {why}"})
            return None
        # Claim, then look (see the class docstring for why this order).
        records.set_attrs(self.study, tid, status=records.RUNNING_STATUS)
        faultpoint("after_claim")
        trials = self.study.get_trials(deepcopy=False)
        dup_of = min((t.number for t in trials if t.number != trial.number
                      and t.user_attrs.get("config_id") == cid and records.is_claimed(t)),
                     default=None)
        if dup_of is not None:
            # Not trained again. Recorded as FAIL/duplicate pointing at the original (whose
            # results stand); not shown to the sampler (no learning values), not counted.
            records.write_final(self.study, tid, TrialState.FAIL, attrs={
                "status": "duplicate", "duplicate_of": dup_of,
                "fail_reason": f"same configuration as trial {dup_of}"})
            self.on_event()
            return None
        if records.claimed(trials) > self.n_trials:
            # Another driver took the last slot at the same time: yield it. An enqueued
            # configuration (warm start, re-queued crash) goes back into the queue.
            frozen = self.study._storage.get_trial(tid)
            if "fixed_params" in frozen.system_attrs:
                _enqueue_again(self.study, frozen)
            records.write_final(self.study, tid, TrialState.FAIL, attrs={
                "status": "surplus",
                "fail_reason": f"--trials {self.n_trials} reached by other drivers"})
            self._count(self.study.get_trials(deepcopy=False))
            self.on_event()
            return None
        if self.limits:
            records.set_learning(self.study, tid, None, violations)
        spec = TrialSpec(number=trial.number, trial_id=tid, config_id=cid,
                         fusion=fusion.to_dict(), train=train.to_dict(), rungs=list(self.rungs),
                         costs=costs)
        self.in_flight[trial.number] = spec
        self.on_event()
        return spec

    def _tell_infeasible(self, trial: optuna.Trial, costs: Mapping[str, float] | None,
                         violations: Mapping[str, float], attrs: Mapping[str, Any]) -> None:
        """FAIL without training. With cost limits, the sampler sees it as an infeasible
        point (worst quality seen, exact costs, positive constraints); without limits
        (an impossible combination in a space without --max) it is simply ignored, since
        constraint values must exist on every trial or none."""
        system: dict[str, Any] = {}
        if self.limits:
            learn = [self._worst(o) if not o.known_before_training or costs is None
                     or o.key not in costs else o.value(None, costs) for o in self.objectives]
            system = records.learning_attrs(learn, violations)
        records.write_final(self.study, trial._trial_id, TrialState.FAIL, attrs=attrs,
                            system_attrs=system)
        self.on_event()

    def _worst(self, o: Objective) -> float:
        vals = [t.values[i] for t in self.study.get_trials(deepcopy=False,
                                                           states=(TrialState.COMPLETE,))
                for i, oo in enumerate(self.objectives) if oo is o]
        if not vals:
            return 0.0 if o.maximize else 1e9
        return min(vals) if o.maximize else max(vals)

    # ------------------------------------------------------------------ telling
    def rung_vector(self, number: int, metrics: Mapping[str, float]) -> list[float]:
        """The trial's objective vector at a rung, oriented for minimisation (scheduler)."""
        spec = self.in_flight[number]
        return [o.as_loss(o.value(metrics, spec.costs)) for o in self.objectives]

    def on_rung(self, number: int, rung: int, metrics: Mapping[str, float]) -> None:
        """Record the intermediate value of a rung (step = rung, value = recall)."""
        spec = self.in_flight.get(number)
        if spec is None:
            return
        try:
            records.record_rung(self.study, spec.trial_id, rung,
                                metrics.get("recall", math.nan))
            faultpoint("after_report")
            records.set_attrs(self.study, spec.trial_id, budget=float(metrics.get(
                "epochs", self.rungs[rung])), metrics=dict(metrics))
        except optuna.exceptions.UpdateFinishedTrialError:
            return  # recovered by another driver meanwhile (see ``finish``)
        self.rung_metrics[number] = dict(metrics)
        self.on_event()

    def finish(self, number: int, *, metrics: Mapping[str, float] | None = None,
               epochs: float | None = None, stopped: bool = False,
               gates: Mapping[str, Any] | None = None, error: str | None = None,
               node_id: str | None = None, wall_s: float | None = None,
               extra: Mapping[str, Any] | None = None) -> TrialState:
        """Tell the final state of a trained trial and return it.

        Full budget -> COMPLETE with objective values; stopped early -> PRUNED with its
        rung values kept for the sampler; an error -> FAIL with the reason. The record
        (attributes, learning values, state) is written in one transaction.
        """
        spec = self.in_flight.get(number)
        if spec is None:
            return TrialState.FAIL
        tid = spec.trial_id
        metrics = dict(metrics or self.rung_metrics.get(number) or {})
        budget = float(epochs if epochs is not None else metrics.get("epochs", 0.0) or 0.0)
        full = error is None and not stopped and budget >= self.rungs[-1] - 1e-6
        attrs: dict[str, Any] = {"budget": budget, "full_budget": full, **(extra or {})}
        if node_id:
            attrs["node_id"] = node_id
        if wall_s is not None:
            attrs["wall_s"] = float(wall_s)
        if metrics:
            attrs["metrics"] = metrics
        system: dict[str, Any] = {}
        values: list[float] | None = None
        if error is None:
            try:
                vals = [o.value(metrics, spec.costs) for o in self.objectives]
            except KeyError as e:
                error = f"result lacks a value: {e}"
            else:
                bad = [o.name for o, v in zip(self.objectives, vals) if not math.isfinite(v)]
                if bad:
                    error = f"non-finite objective(s) {bad}"
                elif full:
                    if gates is not None:
                        attrs["gates"] = gates
                    values = vals
                else:
                    system = records.learning_attrs(vals, None)
        if error is not None:
            state = TrialState.FAIL
            attrs.update(status="failed", fail_reason=error, full_budget=False)
        elif values is not None:
            state = TrialState.COMPLETE
            attrs["status"] = "complete"
            if self.on_full_budget is not None and gates:
                try:
                    self.on_full_budget(tid, gates, values)
                except Exception as e:  # noqa: BLE001 - a plot must never cost a result
                    warnings.warn(f"trial {number}: gate plot not attached: {e}")
        else:
            state = TrialState.PRUNED
            attrs["status"] = "stopped"
        try:
            records.write_final(self.study, tid, state, values=values, attrs=attrs,
                                system_attrs=system)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another driver judged this one dead (no heartbeat for GRACE_S: the machine
            # slept?) and recovered the trial: its re-queued copy stands, this result not.
            self.in_flight.pop(number, None)
            self.rung_metrics.pop(number, None)
            return TrialState.FAIL
        faultpoint("after_tell")
        self.in_flight.pop(number, None)
        self.rung_metrics.pop(number, None)
        self.done += 1
        self.on_event()
        return state

    def abandon(self, reason: str, status: str = "interrupted") -> list[int]:
        """Mark every in-flight trial FAIL (``reason``) and re-queue its configuration."""
        numbers = sorted(self.in_flight)
        for n in numbers:
            spec = self.in_flight.pop(n)
            requeue(self.study, self.study._storage.get_trial(spec.trial_id), reason, status)
        return numbers


def _requeue_params(t: FrozenTrial) -> dict[str, Any] | None:
    """The parameters to train again for an unfinished trial, or None (nothing to redo).

    An enqueued trial keeps its full parameters in ``fixed_params``; a sampled one has
    complete ``params`` once its config id (or any status) is written. A sampled trial
    killed before that (mid-sampling) trained nothing and its partial parameters mean
    nothing.
    """
    if "fixed_params" in t.system_attrs:
        return dict(t.system_attrs["fixed_params"])
    if t.user_attrs.get("config_id") or t.user_attrs.get("status"):
        return dict(t.params)
    return None


def _enqueue_again(study: optuna.Study, t: FrozenTrial) -> bool:
    """Enqueue ``t``'s parameters once (idempotent: a crash-and-retry re-queues once)."""
    params = _requeue_params(t)
    if params is None:
        return False
    if any(x.user_attrs.get("requeued_from") == t.number
           for x in study.get_trials(deepcopy=False)):
        return True
    attrs: dict[str, Any] = {"requeued_from": t.number}
    if "warm_start" in t.user_attrs:
        attrs["warm_start"] = t.user_attrs["warm_start"]
    study.enqueue_trial(params, user_attrs=attrs)
    return True


def requeue(study: optuna.Study, t: FrozenTrial, reason: str, status: str) -> None:
    """Enqueue the trial's configuration again, then mark the trial FAIL with ``reason``.

    In this order so that a crash in between leaves the trial RUNNING (recovered again
    next time; the enqueue is idempotent), never a FAIL trial whose configuration was
    not re-queued.
    """
    if t.state != TrialState.RUNNING:
        return  # finished meanwhile: another driver recovered (and re-queued) it
    requeued = _enqueue_again(study, t)
    faultpoint("during_requeue")
    if not requeued:
        reason = f"{reason} (before its configuration was sampled; nothing to re-queue)"
    try:
        records.write_final(study, t._trial_id, TrialState.FAIL,
                            attrs={"status": status, "fail_reason": reason})
    except optuna.exceptions.UpdateFinishedTrialError:
        pass  # another driver recovered it at the same moment; the enqueue is idempotent

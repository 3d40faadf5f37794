"""The ask/tell searcher on Optuna: turns the sampler's suggestions into trainable trial
specs (dedupe, cost limits), and tells the study each result; the study's only writer.
The samplers, and why they see stopped trials through a view, are in
``nas.search.sampler``; the claim protocol and orphan recovery in ``nas.search.claims``;
what a record holds in ``nas.search.records``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from nas.config import COST_GALLERY, config_key
from nas.errors import UserError
from nas.search import _optuna, records
from nas.search.claims import check_claim, requeue
from nas.search.cost_aware import choose, spread, training_seconds
from nas.search.faults import faultpoint
from nas.search.liveness import DriverRegistry
from nas.search.objectives import Objective
from nas.search.records import TrialStatus
from nas.search.sampler import LearningSampler
from nas.search.space import InvalidCombination, SearchSpace
from nas.search.surrogate import QualityModel, encode

__all__ = ["AskTellSearcher", "TrialOutcome", "TrialSpec", "SearchExhausted", "requeue",
           "config_key"]


# ----------------------------------------------------------------------------- searcher

# Uniform draws the start-up design chooses among (each new architecture costs one cost
# estimate, cached per architecture).
DESIGN_POOL = 16
# Candidates of a cost-aware choice whose architecture has no cost estimate yet, at most
# (FLOP counting takes about 0.05-0.3 CPU s per architecture, BENCHMARKS.md section 8).
NEW_COSTS_PER_CHOICE = 4

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


@dataclass(frozen=True)
class TrialOutcome:
    """How a trained trial ended, as the executor saw it (``AskTellSearcher.finish``).

    ``metrics``: val metrics at the last rung reached (default: the last rung recorded);
    ``epochs``: the budget reached; ``stopped``: stopped early; ``gates``: gate statistics;
    ``error``: why it failed (None: it did not); ``extra``: further record attributes
    (e.g. ``retries``).
    """

    metrics: Mapping[str, float] | None = None
    epochs: float | None = None
    stopped: bool = False
    gates: Mapping[str, Any] | None = None
    error: str | None = None
    node_id: str | None = None
    wall_s: float | None = None
    extra: Mapping[str, Any] | None = None


@dataclass
class _Final:
    """A trial's final record, before it is written."""

    state: TrialState
    attrs: dict[str, Any]
    values: list[float] | None = None
    system: dict[str, Any] = field(default_factory=dict)


class SearchExhausted(UserError):
    """The sampler keeps proposing configurations that cannot be trained."""


class AskTellSearcher:
    """Asks Optuna for configurations and tells it the results; the study's only writer.

    ``next()`` returns the next trial to train (or None when ``--trials`` is reached);
    configurations that are invalid, over a cost limit, or already trained in the study
    are recorded (FAIL with status infeasible/duplicate) and skipped without training,
    and do not count toward ``--trials``. ``on_rung`` and ``finish`` record results.

    Several drivers may search one study at once, so the counts and the dedupe are read
    from the storage, not kept in memory, and a sampled configuration is claimed before
    it is trained (``nas.search.claims``).

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
                 on_full_budget: Callable[[int, dict[str, Any], list[float]], None] | None = None,
                 rung_signal: str = "mean_rank") -> None:
        self.study = study
        self.rung_signal = rung_signal
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
        # the start-up design's uniform draws: (params, costs, config_id), drawn once
        self._design_pool: list[tuple[dict[str, Any], dict[str, float], str]] | None = None
        self._design_done = False
        sampler = getattr(study, "sampler", None)
        self.sampler = sampler if isinstance(sampler, LearningSampler) else None
        if self.sampler is not None:
            self.sampler.chooser = self.choose_proposal
        self.measure_latency = any(o.name == "latency_ms" for o in self.objectives) or \
            "latency_ms" in self.limits
        self.refresh()

    # ------------------------------------------------------------------ counting
    def refresh(self) -> list[FrozenTrial]:
        """Recover orphaned trials, then re-read the counts from the storage."""
        trials = self.study.get_trials(deepcopy=False)
        if self.registry is not None:
            mine = {s.trial_id for s in self.in_flight.values()}
            orphans = [t for t in self.registry.orphaned(trials)
                       if _optuna.trial_id(self.study, t) not in mine]
            for t in orphans:
                requeue(self.study, t, "driver crashed", TrialStatus.CRASHED)
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

    def choose_proposal(self, candidates: Sequence[Mapping[str, Any]],
                        trials: Sequence[FrozenTrial]) -> int:
        """Which of the sampler's proposals to train (``nas.search.cost_aware.choose``):
        the hypervolume each can be expected to add to the full-budget front per
        estimated training second. Costs are exact; each quality objective is predicted
        by a ``nas.search.surrogate.QualityModel`` fitted on the trials so far (stopped
        ones at the budget they reached), or, while that cannot be fitted (fewer than two
        trials), taken at the best value seen (the optimistic bound). Training seconds
        are estimated from the trained trials. Candidates that are not whole
        configurations or are over a cost limit are left out; 0 (the sampler's own
        first proposal) when it is one of those, when no other is left, or when nothing
        is trained yet."""
        if self.measure_latency:
            return 0  # latency is measured, not known: a measurement per candidate is dear
        costs, index = [], []
        new = 0
        for i, p in enumerate(candidates):
            def fixed(name: str, dist: Any, p: Mapping[str, Any] = p) -> Any:
                return p[name]
            try:
                _, fusion, _ = self.space.suggest(fixed, self.overrides)
            except (KeyError, InvalidCombination):
                continue  # not a whole configuration on its own (or an impossible one)
            if i and fusion.fusion_id not in self._cost_cache:
                if new >= NEW_COSTS_PER_CHOICE:
                    continue  # bound the cost estimates one choice may take
                new += 1
            c = self._costs(fusion)
            if any(c.get(k, math.inf) > v for k, v in self.limits.items()):
                continue  # over a cost limit: never trained
            costs.append(c)
            index.append(i)
        if len(costs) <= 1 or index[0] != 0:
            return 0
        m = len(self.objectives)
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None
                and len(t.values) == m and (t.user_attrs.get("budget") or 0) > 0]
        if not done:
            return 0
        losses = np.array([[o.as_loss(v) for o, v in zip(self.objectives, t.values)]
                           for t in done])
        mean = np.array([[o.as_loss(o.value(None, c)) if o.known_before_training
                          else losses[:, j].min() for j, o in enumerate(self.objectives)]
                         for c in costs])
        sd = np.zeros_like(mean)
        dists = self.space.distributions()
        x, groups = encode([t.params for t in done], dists)
        share = np.array([min(1.0, t.user_attrs["budget"] / self.rungs[-1]) for t in done])
        x_new, _ = encode([candidates[i] for i in index], dists)
        for j, o in enumerate(self.objectives):
            if o.known_before_training or len(done) < 2:
                continue
            model = QualityModel(x, groups, share, np.array([t.values[j] for t in done]))
            mu, s = model.predict(x_new)
            mean[:, j], sd[:, j] = (-mu if o.maximize else mu), s
        front = losses[[bool(t.user_attrs.get("full_budget")) for t in done]]
        keys = sorted(k for k in costs[0] if all(k in c for c in costs))
        timed = [t.user_attrs for t in trials
                 if t.user_attrs.get("wall_s") and (t.user_attrs.get("budget") or 0) > 0
                 and isinstance(t.user_attrs.get("costs"), dict)
                 and all(k in t.user_attrs["costs"] for k in keys)]
        per_epoch = training_seconds(
            np.array([[ua["costs"][k] for k in keys] for ua in timed], dtype=float),
            np.array([ua["wall_s"] / ua["budget"] for ua in timed], dtype=float),
            np.array([[c[k] for k in keys] for c in costs], dtype=float))
        if len(done) < 2:  # no model yet: the optimistic bound against every trial seen
            return index[choose(losses, mean, list(per_epoch * self.rungs[-1]))]
        return index[choose(front, mean, list(per_epoch * self.rungs[-1]), sd)]

    def _enqueue_design(self) -> None:
        """The start-up design (``LearningSampler.design``; ``nas.search.cost_aware.spread``):
        while fewer trials than the design's are claimed and nothing waits in the queue
        (a warm start, a re-queued trial), enqueue the one of the design's uniform draws
        whose exact costs lie farthest from every trial so far. The ``DESIGN_POOL`` draws
        are made (and their costs estimated) once per searcher, and each design trial
        takes one of them: in a large space every draw is a new architecture, and a cost
        estimate costs about 0.05-0.3 CPU s (BENCHMARKS.md section 8). Draws that are
        impossible, over a cost limit or already taken are left out; the cost objectives
        span the distance (every cost when the objectives hold none)."""
        if self.sampler is None or self.sampler.design <= 0 or self.measure_latency or \
                self._design_done:
            return
        trials = self.study.get_trials(deepcopy=False)
        if any(t.state == TrialState.WAITING for t in trials):
            return
        claimed = [t for t in trials if records.is_claimed(t)]
        if len(claimed) >= self.sampler.design:
            self._design_done = True  # claims only grow: no more reads of every trial
            return
        if self._design_pool is None:
            self._design_pool = []
            for _ in range(DESIGN_POOL):
                try:
                    params, fusion, train = self.space.suggest(
                        lambda name, dist: self.sampler.uniform(dist),  # type: ignore[union-attr]
                        self.overrides)
                except InvalidCombination:
                    continue
                costs = self._costs(fusion)
                if not any(costs.get(k, math.inf) > v for k, v in self.limits.items()):
                    self._design_pool.append((params, costs, config_key(fusion, train)))
        taken = {t.user_attrs.get("config_id") for t in trials}
        pool = [d for d in self._design_pool if d[2] not in taken]
        if not pool:
            return  # the sampler's own draw
        keys = [o.key for o in self.objectives if o.known_before_training] or \
            sorted(k for k in pool[0][1] if all(k in c for _, c, _ in pool))
        have = [t.user_attrs["costs"] for t in claimed
                if isinstance(t.user_attrs.get("costs"), dict)
                and all(k in t.user_attrs["costs"] for k in keys)]
        pick = pool[spread(np.array([[c[k] for k in keys] for c in have], dtype=float),
                           np.array([[c[k] for k in keys] for _, c, _ in pool], dtype=float))]
        self._design_pool.remove(pick)
        self.study.enqueue_trial(pick[0], user_attrs={"design": "cost spread"})

    def _ask_one(self) -> TrialSpec | None:
        faultpoint("before_ask")
        self._enqueue_design()
        trial = self.study.ask()
        tid = _optuna.trial_id(self.study, trial)
        faultpoint("after_ask")
        if self.registry is not None:
            self.registry.stamp(tid)
        try:
            params, fusion, train = self.space.suggest(self._suggest(trial), self.overrides)
        except InvalidCombination as e:
            # Teach it as infeasible (a violated constraint) when constraints are on.
            self._tell_infeasible(tid, None, {k: 1.0 for k in self.limits},
                                  {"status": TrialStatus.INFEASIBLE, "fail_reason": str(e),
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
            self._tell_infeasible(tid, costs, violations,
                                  {"status": TrialStatus.INFEASIBLE,
                                   "fail_reason": f"over cost limit: {why}"})
            return None
        # Claim, then look (see the class docstring for why this order).
        records.set_attrs(self.study, tid, status=TrialStatus.RUNNING)
        faultpoint("after_claim")
        yielded = check_claim(self.study, tid, trial.number, cid, self.n_trials,
                              self.study.get_trials(deepcopy=False))
        if yielded is not None:
            if yielded == TrialStatus.SURPLUS:
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

    def _tell_infeasible(self, tid: int, costs: Mapping[str, float] | None,
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
        records.write_final(self.study, tid, TrialState.FAIL, attrs=attrs,
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
    def rung_vector(self, number: int, rung: int, metrics: Mapping[str, float]
                    ) -> list[float]:
        """The trial's vector at a rung, oriented for minimisation (the scheduler's): the
        objectives' own values, except at the rungs before half the full budget, where
        each is ranked by ``rung_signal`` (``nas.search.objectives.RUNG_SIGNALS``: there,
        after a short training, recall is coarse and the mean rank ranks better; from half
        the budget on recall ranks better, BENCHMARKS.md section 2)."""
        spec = self.in_flight[number]
        if self.rungs[rung] >= 0.5 * self.rungs[-1]:
            return [o.as_loss(o.value(metrics, spec.costs)) for o in self.objectives]
        return [o.rung_loss(metrics, spec.costs, self.rung_signal) for o in self.objectives]

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

    def finish(self, number: int, outcome: TrialOutcome | None = None,
               **kwargs: Any) -> TrialState:
        """Tell the final state of a trained trial and return it: ``outcome``, or a
        ``TrialOutcome(**kwargs)``.

        Full budget -> COMPLETE with objective values; stopped early -> PRUNED with its
        rung values kept for the sampler; an error -> FAIL with the reason. The record
        (attributes, learning values, state) is written in one transaction.
        """
        spec = self.in_flight.get(number)
        if spec is None:
            return TrialState.FAIL
        final = self._final(number, spec, outcome or TrialOutcome(**kwargs))
        if final.state == TrialState.COMPLETE:
            self._attach_gates(number, spec.trial_id, final)
        try:
            records.write_final(self.study, spec.trial_id, final.state, values=final.values,
                                attrs=final.attrs, system_attrs=final.system)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another driver judged this one dead (no heartbeat for GRACE_S: the machine
            # slept?) and recovered the trial: its re-queued copy stands, this result not.
            self._forget(number)
            return TrialState.FAIL
        faultpoint("after_tell")
        self._forget(number)
        self.done += 1
        self.on_event()
        return final.state

    def _final(self, number: int, spec: TrialSpec, out: TrialOutcome) -> _Final:
        """The final record of a trained trial (see ``finish``)."""
        metrics = dict(out.metrics or self.rung_metrics.get(number) or {})
        budget = float(out.epochs if out.epochs is not None else
                       metrics.get("epochs", 0.0) or 0.0)
        full = out.error is None and not out.stopped and budget >= self.rungs[-1] - 1e-6
        attrs: dict[str, Any] = {"budget": budget, "full_budget": full, **(out.extra or {})}
        if out.node_id:
            attrs["node_id"] = out.node_id
        if out.wall_s is not None:
            attrs["wall_s"] = float(out.wall_s)
        if metrics:
            attrs["metrics"] = metrics
        error = out.error
        vals: list[float] = []
        if error is None:
            vals, error = self._objective_values(metrics, spec.costs)
        if error is not None:
            attrs.update(status=TrialStatus.FAILED, fail_reason=error, full_budget=False)
            return _Final(TrialState.FAIL, attrs)
        if full:
            attrs["status"] = TrialStatus.COMPLETE
            if out.gates is not None:
                attrs["gates"] = dict(out.gates)
            return _Final(TrialState.COMPLETE, attrs, values=vals)
        attrs["status"] = TrialStatus.STOPPED
        return _Final(TrialState.PRUNED, attrs, system=records.learning_attrs(vals, None))

    def _objective_values(self, metrics: Mapping[str, float], costs: Mapping[str, float]
                          ) -> tuple[list[float], str | None]:
        """The objective vector, or why there is none (a missing or non-finite value)."""
        try:
            vals = [o.value(metrics, costs) for o in self.objectives]
        except KeyError as e:
            return [], f"result lacks a value: {e}"
        bad = [o.name for o, v in zip(self.objectives, vals) if not math.isfinite(v)]
        return vals, (f"non-finite objective(s) {bad}" if bad else None)

    def _attach_gates(self, number: int, trial_id: int, final: _Final) -> None:
        gates = final.attrs.get("gates")
        if self.on_full_budget is None or not gates or final.values is None:
            return
        try:
            self.on_full_budget(trial_id, gates, final.values)
        except Exception as e:  # noqa: BLE001 - a plot must never cost a result
            warnings.warn(f"trial {number}: gate plot not attached: {e}")

    def _forget(self, number: int) -> None:
        self.in_flight.pop(number, None)
        self.rung_metrics.pop(number, None)

    def abandon(self, reason: str, status: TrialStatus = TrialStatus.INTERRUPTED
                ) -> list[int]:
        """Mark every in-flight trial FAIL (``reason``) and re-queue its configuration."""
        numbers = sorted(self.in_flight)
        storage = _optuna.storage_of(self.study)
        for n in numbers:
            spec = self.in_flight.pop(n)
            requeue(self.study, storage.get_trial(spec.trial_id), reason, status)
        return numbers

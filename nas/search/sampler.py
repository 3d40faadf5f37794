"""Samplers that learn from stopped and infeasible trials.

Why a sampler wrapper. Stopped trials are stored honestly as PRUNED (no objective values,
intermediate values per rung). Optuna 5.0's samplers do not learn from them in
multi-objective studies: TPE sorts PRUNED trials with ``_get_pruned_trial_score``, which
reads ``study.direction`` and raises for multi-objective studies; NSGA-II and the GP
sampler look at COMPLETE trials only and would ignore them. Infeasible configurations
(over a cost limit, never trained) are FAIL and would be ignored too.

``LearningSampler`` therefore hands its inner sampler a *view* of the study in which:
- a stopped (PRUNED) trial appears COMPLETE with the objective values it had at the last
  rung it reached (its quality metrics at that rung, its exact costs). An early rung
  understates what full training would give, so the trial is presented worse than it
  would be: that missing training is the penalty, and it is what made the scheduler stop
  it (it was dominated at that rung);
- an infeasible trial appears COMPLETE with the worst quality seen and its exact costs,
  and keeps its ``constraints`` (positive = violated), so constraint-aware samplers (TPE,
  NSGA-II, GP are all given a ``constraints_func`` when limits exist) treat it as
  infeasible;
- everything else is unchanged. The storage is never changed by the view.

One view serves every call the inner sampler makes while one trial is sampled (the
relative search space, the relative sample, each independent parameter, ``after_trial``):
the study's trials are read from the storage and presented once per trial, not once per
call (measured in BENCHMARKS.md, "Tabular benchmark": a multivariate TPE ask made a dozen
storage reads of every trial). Trials that finish meanwhile are seen at the next trial.

``LearningSampler`` also keeps the inner sampler from proposing a configuration that is
already trained, running or infeasible in the study. On a finite (or coarse) space a
converged TPE proposes its best configuration again and again; each such proposal cost a
whole ask and a duplicate record (142 duplicates for 15 trained trials in one replay).
When the relative sample fixes every parameter of an existing trial to that trial's
values (so it is the same configuration), the inner sampler draws again (its own
distribution, so the proposal stays model-based), and after ``redraws`` tries it takes a
uniform draw among the configurations of the relative space that are not taken; if all
are taken the proposal stands and the driver records the duplicate as before. (On a small
categorical space multivariate TPE's redraw is nearly always the same configuration: it
takes the best of its own candidates by l(x)/g(x), so the uniform draw is what usually
breaks a repeat.)

Start-up design (``design`` > 0: TPE and GP). Until ``design`` trials are claimed, the
searcher enqueues each next trial itself: of a few uniform draws from this sampler's seeded
stream, the one whose exact costs are farthest from every trial so far
(``nas.search.cost_aware.spread``). A warm-started study has its queue instead, and
random search and NSGA-II keep their own first draws.

Cost-aware proposals (``candidates`` > 1: ``make_sampler(..., cost_aware=True)``, the
search's ``--cost-aware``; off by default, see BENCHMARKS.md section 8 for why). The model's
proposal and up to ``candidates - 1`` untaken configurations that differ from it in one
categorical or integer parameter are handed to ``chooser`` (the searcher's
``choose_proposal``, which knows the space, the exact costs and the trained trials'
seconds), which picks the one with the largest potential hypervolume gain per estimated
training second (``nas.search.cost_aware``). The neighbours keep the proposal model-based:
they share all but one of the model's chosen values.
"""

from __future__ import annotations

import copy
import itertools
import math
import warnings
from collections.abc import Callable, Container
from typing import Any

import numpy as np
import optuna
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from nas.errors import UserError
from nas.search import _optuna, records

__all__ = ["SAMPLERS", "LearningSampler", "StudyView", "make_sampler"]

SAMPLERS = ("tpe", "nsga2", "random", "gp")
# Proposals offered to the cost-aware choice per trial (``--cost-aware``; the model's own
# and up to 7 neighbours; measured on the tabular benchmark, BENCHMARKS.md section 8).
COST_AWARE_CANDIDATES = 16
NEIGHBOURS = 7  # of them at most this many one-parameter neighbours; uniform draws fill up


class StudyView:
    """A read view of a study for samplers: stopped/infeasible trials shown as COMPLETE
    with their learning values (see the module docstring). Everything else delegates."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study
        self._all: list[FrozenTrial] | None = None  # presented trials, read once

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    @staticmethod
    def present(t: FrozenTrial) -> FrozenTrial:
        """The trial as the inner sampler should see it."""
        learn = t.system_attrs.get(records.LEARN_KEY)
        if learn is None or t.state not in (TrialState.PRUNED, TrialState.FAIL):
            return t
        v = copy.copy(t)
        v.state = TrialState.COMPLETE
        v = _optuna.with_values(v, learn)
        return v

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        # Read everything once, present, then filter on the presented state.
        if self._all is None:
            trials = _optuna.study_trials(self._study, deepcopy=False, use_cache=use_cache)
            self._all = [self.present(t) for t in trials]
        out = copy.deepcopy(self._all) if deepcopy else list(self._all)
        return out if states is None else [t for t in out if t.state in states]

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                   ) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=deepcopy, states=states)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


class LearningSampler(BaseSampler):
    """Wraps any Optuna sampler so that it learns from stopped and infeasible trials."""

    def __init__(self, inner: BaseSampler, redraws: int = 8, seed: int | None = None,
                 candidates: int = 1, design: int = 0) -> None:
        self.inner = inner
        self.redraws = redraws
        # Cost-aware choice (``nas.search.cost_aware``): with ``candidates`` > 1 and a
        # ``chooser`` set (the searcher sets it: it knows the space and the costs), the
        # model's proposal and up to ``candidates - 1`` of its untaken neighbours are
        # offered, and the chooser picks one of them.
        self.candidates = candidates
        self.chooser: Callable[[list[dict[str, Any]], list[FrozenTrial]], int] | None = None
        self._rng = np.random.RandomState(seed)
        # Start-up design (``nas.search.cost_aware.spread``): the number of first trials
        # the searcher chooses by their exact costs instead of the inner sampler's random
        # start-up draws (0: none; the model-based samplers' own start-up count).
        self.design = design
        self._view: tuple[int, int, StudyView] | None = None  # (study id, trial number, view)
        self.redrawn = 0  # proposals drawn again because they were taken (for benchmarks)

    def __str__(self) -> str:
        return f"LearningSampler({type(self.inner).__name__})"

    def _view_of(self, study: optuna.Study, trial: FrozenTrial) -> StudyView:
        """The one view of the study while ``trial`` is sampled (see the module docstring)."""
        key = (id(study), trial.number)
        if self._view is None or self._view[:2] != key:
            self._view = (*key, StudyView(study))
        return self._view[2]

    def infer_relative_search_space(self, study, trial):  # type: ignore[override]
        return self.inner.infer_relative_search_space(self._view_of(study, trial), trial)

    def sample_relative(self, study, trial, search_space):  # type: ignore[override]
        view = self._view_of(study, trial)
        params = self.inner.sample_relative(view, trial, search_space)
        if not params:
            return params
        taken = [t.params for t in view.get_trials(deepcopy=False)
                 if t.number != trial.number and t.params and _taken(t)]
        params = self._new_proposal(view, trial, search_space, params, taken)
        if self.chooser is None or self.candidates <= 1 or _is_taken(params, taken):
            return params
        # The model's proposal and its untaken neighbours (one categorical or integer
        # parameter changed; TPE's own redraws are no alternative: its argmax over its
        # candidates is nearly the same configuration every call).
        cands = [params, *self._neighbours(params, search_space, taken,
                                           min(NEIGHBOURS, self.candidates - 1))]
        cands += self._untaken_draws(params, search_space, taken + cands,
                                     self.candidates - len(cands))  # then uniform draws
        if len(cands) == 1:
            return params
        return cands[self.chooser(cands, view.get_trials(deepcopy=False))]

    def _neighbours(self, params: dict[str, Any], space: dict[str, Any],
                    taken: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
        """Up to ``n`` untaken configurations that differ from ``params`` in one
        categorical or integer parameter, drawn at random when there are more."""
        out = []
        for k, v in params.items():
            d = space.get(k)
            if isinstance(d, optuna.distributions.CategoricalDistribution):
                values: list[Any] = list(d.choices)
            elif isinstance(d, optuna.distributions.IntDistribution) and \
                    (d.high - d.low) // d.step < 64:
                values = list(range(d.low, d.high + 1, d.step))
            else:
                continue
            out += [{**params, k: w} for w in values if w != v]
        out = [p for p in out if not _is_taken(p, taken)]
        if len(out) > n:
            out = [out[i] for i in sorted(self._rng.choice(len(out), n, replace=False))]
        return out

    def _new_proposal(self, view: Any, trial: FrozenTrial, search_space: dict[str, Any],
                      params: dict[str, Any], taken: list[dict[str, Any]]) -> dict[str, Any]:
        """``params`` or, when it is taken, a redraw (see the module docstring)."""
        for _ in range(self.redraws):
            if not _is_taken(params, taken):
                return params
            self.redrawn += 1
            params = self.inner.sample_relative(view, trial, search_space)
        if self.redraws <= 0 or not _is_taken(params, taken):
            return params
        return self._untaken(params, search_space, taken)

    def _untaken(self, params: dict[str, Any], space: dict[str, Any],
                 taken: list[dict[str, Any]]) -> dict[str, Any]:
        """A uniform draw among the configurations of the relative space that are not
        taken (``params`` itself when every one is taken: the driver records it)."""
        draws = self._untaken_draws(params, space, taken, 1)
        return draws[0] if draws else params

    def _untaken_draws(self, params: dict[str, Any], space: dict[str, Any],
                       taken: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
        """Up to ``n`` distinct uniform draws among the configurations of the relative
        space that are not taken: enumerated when the space is finite and small, else by
        rejection."""
        keys = [k for k in params if k in space]
        dists = [space[k] for k in keys]
        if all(isinstance(d, optuna.distributions.CategoricalDistribution) for d in dists):
            size = math.prod(len(d.choices) for d in dists)
            if size <= 4096:
                free = [c for c in itertools.product(*(d.choices for d in dists))
                        if not _is_taken({**params, **dict(zip(keys, c))}, taken)]
                if not free:
                    return []
                pick = self._rng.choice(len(free), min(n, len(free)), replace=False)
                return [{**params, **dict(zip(keys, free[int(i)]))} for i in pick]
        out: list[dict[str, Any]] = []
        for _ in range(4 * self.redraws * n):
            if len(out) >= n:
                break
            draw = {**params, **{k: _uniform(self._rng, d) for k, d in zip(keys, dists)}}
            if not _is_taken(draw, taken + out):
                out.append(draw)
        return out

    def uniform(self, dist: Any) -> Any:
        """One uniform draw from a distribution, from this sampler's seeded stream (the
        start-up design's candidates)."""
        return _uniform(self._rng, dist)

    def sample_independent(self, study, trial, param_name, param_distribution):  # type: ignore[override]
        return self.inner.sample_independent(self._view_of(study, trial), trial, param_name,
                                             param_distribution)

    def before_trial(self, study, trial):  # type: ignore[override]
        self._view = None  # a new trial: read the study again
        self.inner.before_trial(self._view_of(study, trial), trial)

    def after_trial(self, study, trial, state, values):  # type: ignore[override]
        self.inner.after_trial(self._view_of(study, trial), trial, state, values)
        self._view = None

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
        self._rng = np.random.RandomState()


def _taken(t: FrozenTrial) -> bool:
    """Trained, claimed, or infeasible: proposing its configuration again is waste."""
    return records.is_claimed(t) or t.user_attrs.get("status") == "infeasible"


def _is_taken(params: dict[str, Any], taken: list[dict[str, Any]]) -> bool:
    """Whether the proposal fixes every parameter of a taken trial to that trial's value.

    Dimensions are active according to the values of other dimensions, so matching every
    parameter a trial has means the proposal activates the same ones: the same
    configuration. A trial with a parameter the proposal lacks (sampled later,
    independently) is never matched: the check errs toward "new".
    """
    return any(all(k in params and params[k] == v for k, v in p.items()) for p in taken)


def _uniform(rng: np.random.RandomState, dist: Any) -> Any:
    """One uniform draw from an Optuna distribution (the random fallback)."""
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return dist.choices[rng.randint(len(dist.choices))]
    if isinstance(dist, optuna.distributions.IntDistribution):
        return int(dist.low + rng.randint((dist.high - dist.low) // dist.step + 1) * dist.step)
    lo, hi = dist.low, dist.high
    if dist.step is not None:
        return float(lo + rng.randint(round((hi - lo) / dist.step) + 1) * dist.step)
    if dist.log:
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    return float(rng.uniform(lo, hi))


def make_sampler(name: str, seed: int | None, cost_aware: bool = False) -> LearningSampler:
    """A seeded sampler by name (a factory: names map to classes, never to instances).
    ``cost_aware``: offer the model's proposal and its neighbours to the cost-aware choice
    (``--cost-aware``; samplers that propose all parameters jointly: TPE, GP, NSGA-II).

    Cost limits need no ``constraints_func`` (deprecated in Optuna 5): the driver stores
    each trial's constraint values itself and the samplers read them from the trials.
    """
    design = 0
    if name == "tpe":
        # Multivariate TPE (joint density over the parameters; ``group`` splits it along
        # the space's conditions) learns combinations such as "gates read [v; a] AND no
        # query fusion" = text-agnostic, which an independent TPE learns only one
        # parameter at a time. 4 random startup trials: a new study already starts with
        # the warm-start configurations (4-7 of them), so the model is fitted on 8+
        # trials either way. Measured with bench/bench_search.py (BENCHMARKS.md).
        with warnings.catch_warnings():  # multivariate/group: experimental in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            inner: BaseSampler = optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=4, multivariate=True, group=True)
        design = 4  # its start-up trials, spread over the costs when not warm-started
    elif name == "nsga2":
        inner = optuna.samplers.NSGAIISampler(seed=seed, population_size=16)
    elif name == "random":
        inner = optuna.samplers.RandomSampler(seed=seed)
    elif name == "gp":
        inner = optuna.samplers.GPSampler(seed=seed, n_startup_trials=8,
                                          warn_independent_sampling=False)
        design = 8
    else:
        raise UserError(f"--sampler: unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")
    return LearningSampler(inner, seed=seed, candidates=COST_AWARE_CANDIDATES if cost_aware else 1,
                           design=design)

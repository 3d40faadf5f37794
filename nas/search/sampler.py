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
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, Container

import optuna
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from nas.errors import UserError
from nas.search import _optuna, records

__all__ = ["SAMPLERS", "LearningSampler", "StudyView", "make_sampler"]

SAMPLERS = ("tpe", "nsga2", "random", "gp")


class StudyView:
    """A read view of a study for samplers: stopped/infeasible trials shown as COMPLETE
    with their learning values (see the module docstring). Everything else delegates."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study

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
        # Ask for everything, present, then filter on the presented state.
        trials = _optuna.study_trials(self._study, deepcopy=deepcopy, use_cache=use_cache)
        out = [self.present(t) for t in trials]
        return out if states is None else [t for t in out if t.state in states]

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                   ) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=deepcopy, states=states)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


class LearningSampler(BaseSampler):
    """Wraps any Optuna sampler so that it learns from stopped and infeasible trials."""

    def __init__(self, inner: BaseSampler) -> None:
        self.inner = inner

    def __str__(self) -> str:
        return f"LearningSampler({type(self.inner).__name__})"

    def infer_relative_search_space(self, study, trial):  # type: ignore[override]
        return self.inner.infer_relative_search_space(StudyView(study), trial)

    def sample_relative(self, study, trial, search_space):  # type: ignore[override]
        return self.inner.sample_relative(StudyView(study), trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):  # type: ignore[override]
        return self.inner.sample_independent(StudyView(study), trial, param_name,
                                             param_distribution)

    def before_trial(self, study, trial):  # type: ignore[override]
        self.inner.before_trial(StudyView(study), trial)

    def after_trial(self, study, trial, state, values):  # type: ignore[override]
        self.inner.after_trial(StudyView(study), trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()


def make_sampler(name: str, seed: int | None) -> LearningSampler:
    """A seeded sampler by name (a factory: names map to classes, never to instances).

    Cost limits need no ``constraints_func`` (deprecated in Optuna 5): the driver stores
    each trial's constraint values itself and the samplers read them from the trials.
    """
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
    elif name == "nsga2":
        inner = optuna.samplers.NSGAIISampler(seed=seed, population_size=16)
    elif name == "random":
        inner = optuna.samplers.RandomSampler(seed=seed)
    elif name == "gp":
        inner = optuna.samplers.GPSampler(seed=seed, n_startup_trials=8,
                                          warn_independent_sampling=False)
    else:
        raise UserError(f"--sampler: unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")
    return LearningSampler(inner)

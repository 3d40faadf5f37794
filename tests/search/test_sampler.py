"""LearningSampler: one read of the study per sampled trial, and no proposal of a
configuration the study already holds (real Optuna TPE on a real SQLite study)."""

from __future__ import annotations

import warnings

import optuna
from optuna.trial import TrialState

from nas.search.sampler import LearningSampler, _is_taken

CHOICES = {"a": [0, 1, 2], "b": ["x", "y"], "c": [True, False]}  # 12 configurations


def _objective(trial: optuna.Trial) -> tuple[float, float]:
    a = trial.suggest_categorical("a", CHOICES["a"])
    b = trial.suggest_categorical("b", CHOICES["b"])
    c = trial.suggest_categorical("c", CHOICES["c"])
    trial.set_user_attr("status", "complete")  # what the driver writes for a trained trial
    # one configuration is best on both objectives: a converged TPE wants it every time
    return float(a == 2) + float(b == "x") + float(c), float(a)


def _sampler(seed: int) -> LearningSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        inner = optuna.samplers.TPESampler(seed=seed, n_startup_trials=3, multivariate=True,
                                           group=True)
    return LearningSampler(inner, seed=seed)


def test_no_configuration_is_proposed_twice_until_all_are_taken(tmp_path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for seed in (0, 1):
        sampler = _sampler(seed)
        study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s{seed}.db",
                                    directions=["maximize", "minimize"], sampler=sampler)
        study.optimize(_objective, n_trials=12)
        seen = [tuple(t.params[k] for k in CHOICES) for t in study.trials
                if t.state == TrialState.COMPLETE]
        # startup draws (independent, uniform) may repeat; every model-based one is new
        assert len(set(seen[3:])) == len(seen[3:]), seen
        assert not set(seen[3:]) & set(seen[:3]), seen
        assert sampler.redrawn > 0  # the model did want a taken configuration again


def test_without_the_check_tpe_repeats_itself(tmp_path) -> None:
    # the property the sampler fixes is real: the same TPE, check off, proposes a
    # configuration it already has
    sampler = _sampler(0)
    sampler.redraws = 0
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/off.db",
                                directions=["maximize", "minimize"], sampler=sampler)
    study.optimize(_objective, n_trials=12)
    seen = [tuple(t.params[k] for k in CHOICES) for t in study.trials]
    assert len(set(seen)) < len(seen)


def test_a_partial_proposal_is_never_a_duplicate() -> None:
    taken = [{"a": 1, "b": "x"}, {"a": 2, "b": "y", "c": True}]
    assert _is_taken({"a": 1, "b": "x", "c": False}, taken)  # c inactive for that trial
    assert not _is_taken({"a": 2, "b": "y"}, taken)  # c not yet sampled: may be new
    assert not _is_taken({"a": 0, "b": "x"}, taken)

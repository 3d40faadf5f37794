"""The cost-aware choice among model-based proposals (``nas.search.cost_aware``) and its
wiring: the sampler draws several untaken TPE proposals and the searcher's chooser picks
one by its exact costs (real Optuna TPE on a real SQLite study)."""

from __future__ import annotations

import warnings

import numpy as np
import optuna
from optuna.trial import TrialState

from nas.search.cost_aware import choose, potential_gain, training_seconds
from nas.search.sampler import LearningSampler, _is_taken

# losses: (-recall, query cost); one trained point: recall 100 at cost 1.0
FRONT = np.array([[-100.0, 1.0], [-60.0, 0.5]])


def test_only_costs_that_can_extend_the_front_gain() -> None:
    best = FRONT[:, 0].min()
    cands = np.array([[best, 0.1],    # cheaper than every point: gains
                      [best, 0.7],    # between the points: gains (beats the 0.5 point?)
                      [best, 1.0],    # the best point's own cost: nothing to gain
                      [best, 2.0]])   # dearer than the best point: nothing to gain
    g = potential_gain(FRONT, cands)
    assert g[0] > g[1] > 0 and g[2] == 0 and g[3] == 0


def test_choice_is_gain_per_training_second() -> None:
    best = FRONT[:, 0].min()
    cands = np.array([[best, 2.0], [best, 0.1], [best, 0.2]])
    # the cheapest-to-query candidate wins when training times are equal ...
    assert choose(FRONT, cands, [1.0, 1.0, 1.0]) == 1
    # ... and loses to one that gains a little less but trains 10x faster
    assert choose(FRONT, cands, [1.0, 10.0, 1.0]) == 2
    # no candidate can gain: the sampler's own first proposal stands
    assert choose(FRONT, np.array([[best, 2.0], [best, 3.0]]), [1.0, 0.1]) == 0
    # nothing trained yet, unknown times: the first proposal / equal times
    assert choose(np.empty((0, 2)), cands, [1.0, 1.0, 1.0]) == 0
    assert choose(FRONT, cands, [float("nan")] * 3) == 1


def test_training_seconds_of_the_nearest_trained_size() -> None:
    trained = np.array([[1e4, 1e-5], [5e4, 3e-1]])  # (params, GFLOPs) of two trained sizes
    per_epoch = np.array([0.2, 1.5])
    q = np.array([[1.1e4, 2e-5], [4e4, 2e-1], [1e4, 1e-5]])
    assert list(training_seconds(trained, per_epoch, q)) == [0.2, 1.5, 0.2]
    assert np.isnan(training_seconds(np.empty((0, 2)), np.empty(0), q)).all()


CHOICES = {"a": [0, 1, 2, 3], "b": ["x", "y", "z"]}  # 12 configurations


def _objective(trial: optuna.Trial) -> tuple[float, float]:
    a = trial.suggest_categorical("a", CHOICES["a"])
    b = trial.suggest_categorical("b", CHOICES["b"])
    trial.set_user_attr("status", "complete")
    return float(a) + (b == "x"), float(a)


def test_sampler_draws_untaken_candidates_and_trains_the_chosen_one(tmp_path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        inner = optuna.samplers.TPESampler(seed=0, n_startup_trials=3, multivariate=True,
                                           group=True)
    sampler = LearningSampler(inner, seed=0, candidates=4)
    calls: list[tuple[list[dict], int]] = []

    def chooser(cands: list[dict], trials: list) -> int:
        taken = [t.params for t in trials if t.params and t.state == TrialState.COMPLETE]
        assert all(not _is_taken(c, taken) for c in cands)  # every candidate is new
        assert len({tuple(sorted(c.items())) for c in cands}) == len(cands)  # distinct
        pick = len(cands) - 1  # not the sampler's own first proposal
        calls.append((cands, pick))
        return pick

    sampler.chooser = chooser
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/ca.db",
                                directions=["maximize", "minimize"], sampler=sampler)
    study.optimize(_objective, n_trials=8)
    assert calls and max(len(c) for c, _ in calls) > 1
    model_based = study.trials[3:3 + len(calls)]
    for t, (cands, pick) in zip(model_based, calls):
        assert t.params == cands[pick]  # the chosen candidate is what was trained


def test_cost_aware_is_opt_in_and_the_searcher_wires_the_chooser(tmp_path) -> None:
    from nas.search.objectives import parse_objectives
    from nas.search.sampler import COST_AWARE_CANDIDATES, make_sampler
    from nas.search.searcher import AskTellSearcher
    from nas.search.space import load_space

    assert make_sampler("tpe", 0).candidates == 1  # the default search is unchanged
    on = make_sampler("tpe", 0, cost_aware=True)
    assert on.candidates == COST_AWARE_CANDIDATES > 1 and on.chooser is None
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/w.db",
                                directions=["maximize", "minimize", "minimize"], sampler=on)
    root = __import__("pathlib").Path(__file__).resolve().parents[2]
    searcher = AskTellSearcher(study, load_space(str(root / "search_spaces" / "quick.yaml")),
                               parse_objectives("recall,query_gflops,index_gflops"),
                               cost_fn=lambda *a, **k: {}, shapes=None, overrides={},
                               limits={}, n_trials=1)
    assert on.chooser == searcher.choose_proposal


def test_expected_gain_under_a_belief() -> None:
    # a candidate believed to reach recall 90 +- 0 at cost 0.1 gains less than one believed
    # at 90 +- 20: with the spread it may beat the 100 point, and losses cannot go below 0
    cands = np.array([[-90.0, 0.1], [-90.0, 0.1], [-40.0, 0.1]])
    sd = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 0.0]])
    g = potential_gain(FRONT, cands, sd)
    assert g[1] > g[0] > g[2] > 0
    # sd zero everywhere is the plain (point) gain
    assert np.allclose(potential_gain(FRONT, cands, np.zeros_like(cands)),
                       potential_gain(FRONT, cands))
    # with a belief the choice works without any full-budget point yet
    assert choose(np.empty((0, 2)), cands[::-1], [1.0, 1.0, 1.0], sd[::-1]) != 0


def test_spread_picks_the_draw_farthest_in_log_cost() -> None:
    from nas.search.cost_aware import spread

    have = np.array([[0.3, 1e-4]])  # one text-conditioned trial so far
    draws = np.array([[0.29, 1e-4], [0.07, 1e-4], [3e-4, 3e-4], [0.2, 1e-4]])
    assert spread(have, draws) == 2  # the text-agnostic one: 1000x cheaper to query
    assert spread(np.empty((0, 2)), draws) == 0  # nothing yet: the first (uniform) draw
    assert spread(np.vstack([have, draws[2]]), draws[[0, 1, 3]]) == 1


def test_quality_model_learns_relevant_parameters_and_the_budget() -> None:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from nas.search.surrogate import QualityModel, encode

    dists = {"lr": FloatDistribution(1e-3, 1e-1, log=True),
             "width": CategoricalDistribution([16, 32]),
             "noise_dim": CategoricalDistribution(["a", "b", "c"])}
    rng = np.random.default_rng(0)

    def truth(p: dict, share: float) -> float:  # the noise_dim does not matter
        return 50 + 30 * (p["width"] == 32) - 20 * abs(np.log10(p["lr"]) + 2) - 25 * (1 - share)

    ps = [{"lr": float(10 ** rng.uniform(-3, -1)), "width": int(rng.choice([16, 32])),
           "noise_dim": str(rng.choice(["a", "b", "c"]))} for _ in range(24)]
    share = rng.choice([0.375, 0.75, 1.0], size=24)
    x, groups = encode(ps, dists)
    y = np.array([truth(p, s) for p, s in zip(ps, share)]) + rng.normal(0, 1, 24)
    model = QualityModel(x, groups, share, y)
    test = [{"lr": 0.01, "width": 32, "noise_dim": "a"}, {"lr": 0.01, "width": 16,
                                                          "noise_dim": "a"},
            {"lr": 0.001, "width": 32, "noise_dim": "c"}, {"lr": 0.01, "width": 32}]
    xt, _ = encode(test, dists)
    mu, sd = model.predict(xt)
    assert abs(mu[0] - 80) < 8 and abs(mu[1] - 50) < 8 and mu[0] > mu[2] + 10
    assert (sd > 0).all()
    # a parameter that does not matter gets the longest length scale of the grid
    names = sorted(dists)
    assert model.theta["ell"][names.index("noise_dim")] >= \
        max(model.theta["ell"][names.index("width")], model.theta["ell"][names.index("lr")])
    # the full-budget prediction of a configuration seen only at an early rung is higher
    early, _ = model.predict(xt[:1], budget=0.375)
    assert mu[0] > early[0] + 10

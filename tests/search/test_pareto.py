"""The one Pareto front (full-budget trials only) and hypervolume (nas.search.pareto)."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from nas.search import hypervolume, pareto_front, study_hypervolume
from nas.search.pareto import (
    hypervolume_contributions,
    hypervolume_history,
    objective_box,
    pareto_mask,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
MO = ["maximize", "minimize"]


def test_hypervolume_exact_in_2d_3d_and_4d() -> None:
    # two boxes of 2x1 and 1x2 overlapping in 1x1: 3
    assert hypervolume(np.array([[1, 2], [2, 1]]), [3, 3]) == pytest.approx(3.0)
    assert hypervolume(np.array([[4, 0]]), [3, 3]) == 0.0  # beyond the reference
    assert hypervolume(np.array([[0, 0, 0]]), [1, 2, 3]) == pytest.approx(6.0)
    # 3D: boxes 1*1*2... overlapping: 1*1*2 + 1*2*1 - 1*1*1 = 3
    assert hypervolume(np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]),
                       [2.0, 2.0, 1.0]) == pytest.approx(3.0)
    # against Monte Carlo in 3D and 4D on random points
    rng = np.random.default_rng(0)
    for k in (3, 4):
        pts = rng.random((8, k))
        samples = rng.random((200_000, k))
        dominated = np.any(np.all(pts[None, :, :] <= samples[:, None, :], axis=2), axis=1)
        assert hypervolume(pts, [1.0] * k) == pytest.approx(dominated.mean(), abs=0.01)


def test_contributions_are_exclusive_volumes() -> None:
    c = hypervolume_contributions(np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]), [2.0, 2.0])
    assert c.tolist() == pytest.approx([1.0, 1.0, 0.0])


def test_pareto_mask_keeps_every_non_dominated_row_duplicates_too() -> None:
    # as Optuna's best_trials and optuna-dashboard count them
    v = np.array([[1, 1], [2, 2], [2, 1], [0, 0], [2, 1], [3, 5]], dtype=float)
    assert pareto_mask(v, MO).tolist() == [False, False, True, True, True, True]
    assert pareto_mask(np.zeros((0, 2)), MO).tolist() == []


def _study(values_and_attrs, directions=("maximize", "minimize", "minimize"),
           names=("recall", "query_gflops", "index_gflops")):
    study = optuna.create_study(directions=list(directions))
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        study.set_metric_names(list(names))
    d = {"x": FloatDistribution(0, 1)}
    for values, state, attrs in values_and_attrs:
        study.add_trial(create_trial(state=state, values=values, params={"x": 0.5},
                                     distributions=d, user_attrs=attrs,
                                     intermediate_values={0: 1.0}))
    return study


def test_front_uses_full_budget_trials_only() -> None:
    C = TrialState.COMPLETE
    study = _study([([50.0, 2.0], C, {"full_budget": True}),
                    ([40.0, 1.0], C, {"full_budget": True}),
                    ([30.0, 3.0], C, {"full_budget": True}),  # dominated
                    ([99.0, 0.1], C, {"full_budget": False}),  # not full budget
                    (None, TrialState.PRUNED, {"full_budget": False,
                                               "costs": {"query_gflops": 8.0}})],
                   directions=MO, names=("recall", "query_gflops"))
    front = pareto_front(study)
    assert [t.values for t in front] == [[50.0, 2.0], [40.0, 1.0]]
    # the box: recall 300..0 (linear), query cost log from 0.1/2 (the cheapest trial,
    # full budget or not) to 8*2 (the stopped trial's cost is known too)
    box = objective_box(study.trials, study.directions, study.metric_names)
    assert box.best == (300.0, 0.05) and box.worst == (0.0, 16.0)

    def u(c):  # normalised log cost
        return math.log(c / 0.05) / math.log(16.0 / 0.05)

    # (1 - 50/300) * (1 - u(2)) + ((50-40)/300) * (1 - u(1)) ... as boxes from the corner
    want = (50 / 300) * (1 - u(2.0)) + (40 / 300) * (u(2.0) - u(1.0))
    assert study_hypervolume(study) == pytest.approx(want)


def test_hypervolume_is_never_zero_for_a_real_front_and_history_is_monotone() -> None:
    # The case: an index cost above twice the reference configuration's made the
    # old fixed reference point swallow the text-agnostic configurations (hv 0).
    C = TrialState.COMPLETE
    recs = [(47.6, 0.0006, 0.00104), (51.8, 0.765, 0.00029), (86.2, 0.0006, 0.00230),
            (30.8, 0.0006, 0.00052)]
    study = _study([(list(r), C, {"full_budget": True}) for r in recs])
    hv = study_hypervolume(study)
    assert 0 < hv < 1
    numbers, hist = hypervolume_history(study)
    assert numbers == [0, 1, 2, 3] and all(h > 0 for h in hist)
    assert np.all(np.diff(hist) >= -1e-12) and hist[-1] == pytest.approx(hv)
    # a --max limit closes the box at the limit
    study.set_user_attr("limits", {"index_gflops": 0.01})
    assert objective_box(study.trials, study.directions, study.metric_names,
                         study.user_attrs["limits"]).worst[2] == 0.01


def test_hypervolume_matches_optunas_wfg_on_random_sets() -> None:
    # Optuna's own WFG implementation as the reference, 2-4 objectives, dominated points
    # and points outside the reference included
    import numpy as np
    from optuna._hypervolume import compute_hypervolume

    from nas.search.pareto import hypervolume

    rng = np.random.default_rng(0)
    for m in (2, 3, 4):
        for n in (1, 3, 10, 30):
            pts = rng.random((n, m)) * 1.2
            ref = np.full(m, 1.1)
            inside = pts[np.all(pts < ref, axis=1)]
            want = compute_hypervolume(inside, ref) if len(inside) else 0.0
            assert abs(hypervolume(pts, ref) - want) < 1e-12

"""Pareto front (full-budget trials only) and hypervolume."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from nas.search import hypervolume, pareto_front, study_hypervolume

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_hypervolume_2d_and_3d() -> None:
    # two boxes of 2x1 and 1x2 overlapping in 1x1: 3
    assert hypervolume(np.array([[1, 2], [2, 1]]), [3, 3]) == pytest.approx(3.0)
    assert hypervolume(np.array([[4, 0]]), [3, 3]) == 0.0  # beyond the reference
    assert hypervolume(np.array([[0, 0, 0]]), [1, 2, 3]) == pytest.approx(6.0)


def test_front_uses_full_budget_trials_only() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    d = {"x": FloatDistribution(0, 1)}

    def add(values, state=TrialState.COMPLETE, full=True):
        study.add_trial(create_trial(state=state, values=values, params={"x": 0.5},
                                     distributions=d, user_attrs={"full_budget": full},
                                     intermediate_values={0: 1.0}))

    add([50.0, 2.0])
    add([40.0, 1.0])
    add([30.0, 3.0])  # dominated
    add([99.0, 0.1], full=False)  # would dominate all, but not full budget
    add(None, state=TrialState.PRUNED, full=False)
    front = pareto_front(study)
    assert [t.values for t in front] == [[50.0, 2.0], [40.0, 1.0]]
    study.set_user_attr("hv_reference", [0.0, 4.0])
    # boxes (-50..0)x(2..4) + (-40..0)x(1..2) = 100 + 40
    assert study_hypervolume(study) == pytest.approx(140.0)

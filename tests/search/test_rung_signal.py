"""What early stopping ranks trials by at each rung (``--rung-signal``): no torch, no Ray."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from nas.errors import UserError
from nas.search.driver import SearchOptions, _data_overrides, run_search
from nas.search.evaluator import EvaluatorSpec
from nas.search.objectives import OBJECTIVES, parse_objectives
from nas.search.sampler import make_sampler
from nas.search.scheduler import MOASHA
from nas.search.searcher import AskTellSearcher
from nas.search.space import load_space
from nas.search.testing import fake_estimate_costs, fake_load_data

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_objective_rung_loss_reads_the_mean_rank_when_reported() -> None:
    recall = OBJECTIVES["recall"]
    m = {"recall": 30.0, "t2v_mnr": 12.5, "v2t_mnr": 40.0}
    assert recall.rung_loss(m, None, "mean_rank") == 12.5
    assert OBJECTIVES["v2t_recall"].rung_loss({"v2t_recall": 3.0, **m}, None,
                                              "mean_rank") == 40.0
    assert recall.rung_loss(m, None, "objective") == -30.0
    # an evaluator without ranks in its metrics: the objective itself
    assert recall.rung_loss({"recall": 30.0}, None, "mean_rank") == -30.0
    # costs are known exactly: never replaced
    q = OBJECTIVES["query_gflops"]
    assert q.rung_loss(m, {"query_gflops": 2.0}, "mean_rank") == 2.0


def _searcher(tmp_path: Path, signal: str) -> AskTellSearcher:
    study = optuna.create_study(study_name="r", storage=f"sqlite:///{tmp_path}/{signal}.db",
                                directions=["maximize", "minimize"],
                                sampler=make_sampler("random", 0))
    shapes = fake_load_data("x").shapes
    return AskTellSearcher(study, load_space("quick"), parse_objectives("recall,query_gflops"),
                           fake_estimate_costs, shapes, _data_overrides(shapes), {}, 4,
                           rung_signal=signal)


@pytest.mark.parametrize("signal", ["mean_rank", "objective"])
def test_rung_vector_uses_the_mean_rank_only_before_half_the_budget(
        tmp_path: Path, signal: str) -> None:
    core = _searcher(tmp_path, signal)
    assert core.rungs == [0.5, 1.0, 2.0]  # the quick space: rung 1 is half the budget
    spec = core.next()
    assert spec is not None
    q = spec.costs["query_gflops"]
    m = {"recall": 30.0, "t2v_mnr": 12.5}
    first = core.rung_vector(spec.number, 0, m)
    assert first == ([12.5, q] if signal == "mean_rank" else [-30.0, q])
    assert core.rung_vector(spec.number, 1, m) == [-30.0, q]
    assert core.rung_vector(spec.number, 2, m) == [-30.0, q]


def test_the_signal_changes_which_trial_continues(tmp_path: Path) -> None:
    """Two trials of one configuration's costs at the first rung: the one with the better
    recall but the worse mean rank continues by recall, the other one by mean rank."""
    for signal, winner in (("mean_rank", "b"), ("objective", "a")):
        core = _searcher(tmp_path, signal)
        spec = core.next()
        assert spec is not None
        asha = MOASHA(3, 2.0, quality=[0])
        a = {"recall": 20.0, "t2v_mnr": 30.0}  # two lucky hits in the top 10
        b = {"recall": 10.0, "t2v_mnr": 8.0}  # every match ranked high
        asha.report("a", 0, core.rung_vector(spec.number, 0, a))
        assert asha.report("b", 0, core.rung_vector(spec.number, 0, b)) is (winner == "b")


def test_an_unknown_signal_is_a_user_error(tmp_path: Path) -> None:
    opts = SearchOptions(space="quick", storage=f"sqlite:///{tmp_path}/s.db", trials=2,
                         evaluator=EvaluatorSpec.fake(), executor="local", quiet=True,
                         rung_signal="loss")
    with pytest.raises(UserError, match="--rung-signal 'loss'"):
        run_search(opts)
    assert not (tmp_path / "s.db").exists()  # nothing written
    r = subprocess.run([sys.executable, "-m", "nas", "search", "--rung-signal", "loss",
                        "--storage", f"sqlite:///{tmp_path}/c.db"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--rung-signal" in r.stderr and "mean_rank" in r.stderr
    assert not (tmp_path / "c.db").exists()

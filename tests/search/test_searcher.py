"""The ask/tell searcher, records and driver with the fake evaluator: no torch, no Ray."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.config import FusionConfig, TrainConfig
from nas.errors import UserError
from nas.search import pareto_front
from nas.search.driver import SearchOptions, run_search
from nas.search.evaluator import EvaluatorSpec
from nas.search.sampler import StudyView, make_sampler
from nas.search.searcher import SearchExhausted
from nas.search.testing import fake_estimate_costs, fake_load_data, fake_quality

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _opts(tmp_path: Path, **kw) -> SearchOptions:
    base = dict(space="quick", storage=f"sqlite:///{tmp_path}/s.db", trials=12,
                evaluator=EvaluatorSpec.fake(), executor="local", quiet=True, seed=1)
    base.update(kw)
    return SearchOptions(**base)


def _load(tmp_path: Path, name: str = "quick") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/s.db")


def _configs(t: optuna.trial.FrozenTrial) -> tuple[FusionConfig, TrainConfig]:
    return (FusionConfig.from_dict(t.user_attrs["fusion"]),
            TrainConfig.from_dict(t.user_attrs["train"]))


def test_records_match_what_the_evaluator_produced(tmp_path: Path) -> None:
    summary = run_search(_opts(tmp_path))
    study = _load(tmp_path)
    assert summary.trained == 12 and study.metric_names == ["recall", "query_gflops",
                                                           "index_gflops"]
    rungs = study.user_attrs["rungs"]
    states = {t.state for t in study.trials}
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    for t in study.trials:
        assert t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        if t.user_attrs.get("status") not in ("complete", "stopped"):
            continue
        f, tr = _configs(t)
        ceiling = fake_quality(f, tr)
        # one intermediate value per rung reached, equal to the fake's recall there
        assert sorted(t.intermediate_values) == list(range(len(t.intermediate_values)))
        for step, v in t.intermediate_values.items():
            assert v == pytest.approx(ceiling * (1 - math.exp(-rungs[step])))
        costs = fake_estimate_costs(f)
        cost = [costs["query_gflops"], costs["index_gflops"]]
        assert t.user_attrs["costs"]["query_gflops"] == pytest.approx(cost[0])
        if t.state == TrialState.COMPLETE:
            assert t.user_attrs["full_budget"] and t.user_attrs["budget"] == rungs[-1]
            assert t.values == pytest.approx([ceiling * (1 - math.exp(-rungs[-1])), *cost])
            assert "gates" in t.user_attrs
        else:  # stopped: no values, budget below full, learning values from its last rung
            assert t.values is None and not t.user_attrs["full_budget"]
            assert t.user_attrs["budget"] == rungs[len(t.intermediate_values) - 1] < rungs[-1]
            last = t.intermediate_values[max(t.intermediate_values)]
            assert t.system_attrs["nas:learn_values"] == pytest.approx([last, *cost])
    front = pareto_front(study)
    assert front and all(t.state == TrialState.COMPLETE and t.user_attrs["full_budget"]
                         for t in front)
    # warm start: the text-agnostic AVIGATE baseline first, then the reference
    assert study.trials[0].user_attrs["warm_start"].startswith("avigate")
    assert study.trials[0].params["gate_inputs"] == "va"
    assert study.trials[0].params["query_fusion"] == "none"
    assert study.trials[1].user_attrs["warm_start"] == "reference"
    assert study.trials[1].params == study.user_attrs["reference_params"]


def test_default_objectives_give_a_front_of_distinct_costs(tmp_path: Path) -> None:
    # recall + query_gflops alone: every text-agnostic configuration of one width costs the
    # same per query; the index cost separates them by their fusion (layers here)
    run_search(_opts(tmp_path, trials=16))
    front = pareto_front(_load(tmp_path))
    costs = {tuple(t.values[1:]) for t in front}
    assert len(front) >= 3 and len(costs) >= 3, [t.values for t in front]
    index = [t.values[2] for t in front]
    assert max(index) / min(index) >= 2


def test_sampler_view_presents_stopped_trials_and_tpe_needs_it(tmp_path: Path) -> None:
    run_search(_opts(tmp_path, trials=10))
    study = _load(tmp_path)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned
    view = StudyView(study)
    shown = {t.number: t for t in view.get_trials(states=(TrialState.COMPLETE,))}
    for t in pruned:
        assert shown[t.number].values == t.system_attrs["nas:learn_values"]
    assert study._storage.get_trial(pruned[0]._trial_id).state == TrialState.PRUNED
    # Optuna's own TPE cannot rank PRUNED trials of a multi-objective study.
    raw = optuna.load_study(study_name="quick", storage=f"sqlite:///{tmp_path}/s.db",
                            sampler=optuna.samplers.TPESampler(n_startup_trials=0, seed=0))
    with pytest.raises(RuntimeError):
        raw.ask().suggest_int("layers", 1, 2)
    wrapped = optuna.load_study(study_name="quick", storage=f"sqlite:///{tmp_path}/s.db",
                                sampler=make_sampler("tpe", 0))
    assert wrapped.ask().suggest_int("layers", 1, 2) in (1, 2)


@pytest.mark.parametrize("sampler", ["nsga2", "random", "gp"])
def test_other_samplers_run(tmp_path: Path, sampler: str) -> None:
    s = run_search(_opts(tmp_path, sampler=sampler, trials=9))
    assert s.trained == 9 and s.front


def test_cost_limit_skips_infeasible_without_training(tmp_path: Path) -> None:
    limit = 0.05
    s = run_search(_opts(tmp_path, limits=[f"query_gflops={limit}"], trials=6))
    study = _load(tmp_path)
    infeasible = [t for t in study.trials if t.user_attrs.get("status") == "infeasible"]
    assert infeasible and s.trained == 6
    for t in infeasible:
        assert t.state == TrialState.FAIL and not t.intermediate_values
        assert "over cost limit" in t.user_attrs["fail_reason"]
        assert t.system_attrs["constraints:query_gflops"] > 0
        assert t.constraints["query_gflops"] > 0
    for t in study.trials:
        if t.user_attrs.get("status") in ("complete", "stopped"):
            assert t.user_attrs["costs"]["query_gflops"] <= limit
            assert t.constraints["query_gflops"] <= 0


def _tiny_space(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(textwrap.dedent("""
        name: tiny
        base: {fusion: {width: 16, heads: 2, layers: 1}, train: {lr: 0.002}}
        dimensions:
          width: {choices: [16, 32]}
        proxy: {min_budget: 1, max_budget: 2, eta: 2}
        """))
    return p


def test_duplicates_are_not_trained_again(tmp_path: Path) -> None:
    s = run_search(_opts(tmp_path, space=str(_tiny_space(tmp_path)), trials=2, sampler="random",
                         max_skips=10))
    assert s.trained == 2
    study = _load(tmp_path, "tiny")
    trained = [t for t in study.trials
               if t.user_attrs["status"] in ("complete", "stopped", "failed")]
    ids = [t.user_attrs["config_id"] for t in trained]
    assert len(ids) == len(set(ids)) == 2
    for t in study.trials:
        if t.user_attrs["status"] == "duplicate":
            assert t.state == TrialState.FAIL and not t.intermediate_values
            assert study.trials[t.user_attrs["duplicate_of"]].user_attrs["config_id"] == \
                t.user_attrs["config_id"]
    # asking for more trials than the space holds ends with a clear error
    with pytest.raises(SearchExhausted, match="exhausted"):
        run_search(_opts(tmp_path, space=str(_tiny_space(tmp_path)), trials=3, sampler="random",
                         max_skips=10))


def test_failures_are_recorded_with_reason(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\nbase: {fusion: {width: 16, heads: 2, layers: 1}}\n"
                 "dimensions: {lr: {choices: [0.001, 0.9]}}\n"
                 "proxy: {min_budget: 1, max_budget: 2}\n")
    run_search(_opts(tmp_path, space=str(p), trials=2))
    study = _load(tmp_path, "bad")
    failed = [t for t in study.trials if t.user_attrs.get("status") == "failed"]
    assert len(failed) == 1 and failed[0].state == TrialState.FAIL
    assert "loss is nan" in failed[0].user_attrs["fail_reason"]


def test_resume_continues_and_requeues_crashed_trials(tmp_path: Path) -> None:
    run_search(_opts(tmp_path, trials=4))
    study = _load(tmp_path)
    # simulate a driver killed while a trial ran
    t = study.ask({"width": optuna.distributions.CategoricalDistribution([16, 32])})
    study._storage.set_trial_user_attr(t._trial_id, "status", "complete")
    before = {x.number: x.values for x in study.trials if x.state == TrialState.COMPLETE}
    s = run_search(_opts(tmp_path, trials=7))
    study = _load(tmp_path)
    assert s.trained == 7
    crashed = study.trials[t.number]
    assert crashed.state == TrialState.FAIL and crashed.user_attrs["status"] == "crashed"
    assert crashed.user_attrs["fail_reason"] == "driver crashed"
    requeued = [x for x in study.trials if x.user_attrs.get("requeued_from") == t.number]
    assert len(requeued) == 1 and requeued[0].params["width"] == crashed.params["width"]
    assert not [x for x in study.trials if x.state == TrialState.RUNNING]
    after = {x.number: x.values for x in study.trials if x.state == TrialState.COMPLETE}
    assert all(after[n] == v for n, v in before.items())


def test_changed_objectives_are_refused(tmp_path: Path) -> None:
    run_search(_opts(tmp_path, trials=2))
    with pytest.raises(UserError, match="objectives"):
        run_search(_opts(tmp_path, trials=3, objectives="recall,params"))
    with pytest.raises(UserError, match="rungs"):
        run_search(_opts(tmp_path, trials=3, eta=3.0))


def test_fake_data_matches_contract() -> None:
    d = fake_load_data("synthetic")
    assert d.shapes.video_dim > 0 and d.val.n_clips > 0


def test_without_warm_start_the_first_trials_spread_over_the_costs(tmp_path: Path) -> None:
    # --no-warm-start: no queue; the sampler's start-up trials are chosen by their exact
    # costs (farthest in log-cost space from the trials so far), then TPE takes over
    run_search(_opts(tmp_path, trials=8, warm_start=False))
    study = _load(tmp_path)
    trials = sorted(study.trials, key=lambda t: t.number)
    assert not any("warm_start" in t.user_attrs for t in trials)
    assert study.user_attrs["warm_start"] is False
    design = [t for t in trials if t.user_attrs.get("design") == "cost spread"]
    assert len(design) == 4 and design == trials[:4]  # TPE's 4 start-up trials
    cost = [[t.user_attrs["costs"]["query_gflops"], t.user_attrs["costs"]["index_gflops"]]
            for t in design]
    # the second trial is 100x+ cheaper or dearer to query than the first: the two ends
    # (a text-agnostic and a text-conditioned configuration; a uniform draw would land on
    # the same side as the first most of the time)
    ratio = cost[1][0] / cost[0][0]
    assert ratio > 100 or ratio < 0.01, cost
    # with the warm start (the default), the queue comes first and no design is made
    run_search(_opts(tmp_path, trials=8, study="warm"))
    warm = _load(tmp_path, "warm")
    assert sorted(warm.trials, key=lambda t: t.number)[0].user_attrs["warm_start"]
    assert not any("design" in t.user_attrs for t in warm.trials)

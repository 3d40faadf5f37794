"""Report plot data on known inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nas.report import data as D

from report_helpers import FRONT, FULL, RUNGS

MO = ["maximize", "minimize"]


def test_pareto_mask_is_the_search_modules():
    # one implementation: the report re-exports nas.search.pareto's
    from nas.search import pareto

    assert D.pareto_mask is pareto.pareto_mask
    assert D.full_budget_trials is pareto.full_budget_trials


def test_pareto_points_use_full_budget_trials_only(study):
    pts = D.pareto_points(study.trials, study.directions, study.metric_names)
    assert pts.numbers == sorted(FULL)  # stopped (4) and failed (5) are not there
    front = {pts.numbers[i] for i in np.flatnonzero(pts.on_front)}
    assert front == FRONT
    assert [pts.numbers[i] for i in pts.front_order] == [6, 0, 1, 3]  # by recall
    h = pts.hover[pts.numbers.index(1)]
    assert "trial 1" in h and "recall=150" in h and "width=64" in h and "layer_decay=fixed" in h


def test_spearman_known_values():
    assert D.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert D.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert D.spearman([10, 30, 20, 40, 50], [100, 150, 120, 200, 90]) == pytest.approx(0.0)
    assert math.isnan(D.spearman([1, 2], [1, 2]))  # too few
    assert math.isnan(D.spearman([1, 1, 1], [1, 2, 3]))  # constant


def test_proxy_fidelity_over_full_budget_trials(study):
    fid = D.proxy_fidelity(study.trials, study.metric_names, RUNGS)
    assert [f.rung for f in fid] == [0, 1]  # the last rung is the budget itself
    assert [f.epochs for f in fid] == [0.5, 1.5]
    assert [f.n for f in fid] == [5, 5]  # the stopped and failed trials are not counted
    assert fid[0].rho == pytest.approx(0.0)  # ranks (1,3,2,4,5) vs (2,4,3,5,1)
    assert fid[1].rho == pytest.approx(1.0)


def test_learning_curves_mark_stopped_trials(study):
    curves = {c.number: c for c in D.learning_curves(study.trials, RUNGS)}
    assert set(curves) == set(range(7))
    assert curves[4].stopped and curves[4].epochs == [0.5, 1.5] and curves[4].values == [5, 20]
    assert curves[1].epochs == RUNGS and not curves[1].stopped
    assert curves[5].status == "failed" and not curves[5].stopped


def test_violin_samples_follow_quantiles_and_histograms():
    q = np.linspace(-1, 1, 21)  # uniform on [-1, 1]
    s = np.array(D.violin_samples(q, n=100))
    assert s.min() > -1 and s.max() < 1 and abs(s.mean()) < 1e-9
    assert np.quantile(s, 0.25) == pytest.approx(-0.5, abs=0.03)
    # histogram: all mass in the second of two bins [0.5, 1]
    s = np.array(D.violin_samples(None, hist=[0, 10], edges=[0.0, 0.5, 1.0], n=50))
    assert s.min() >= 0.5 and s.max() <= 1.0
    # an empty bin in the middle: half the mass in [0, 1], half in [2, 3], none in between
    s = np.array(D.violin_samples(None, hist=[5, 0, 5], edges=[0.0, 1.0, 2.0, 3.0], n=100))
    assert np.sum(s < 1) == 50 and np.sum(s > 2) == 50
    assert np.median(s[s < 1]) == pytest.approx(0.5, abs=0.02)
    assert D.violin_samples(None) == []


def test_gate_summaries_per_layer_and_kind(study):
    t = next(t for t in study.trials if t.number == 1)
    g = D.gate_summaries(t.user_attrs["gates"])
    assert [(x.layer, x.gate, x.kind) for x in g] == [
        (0, "attn", "tanh"), (0, "ffn", "sigmoid"), (1, "attn", "tanh"), (1, "ffn", "sigmoid")]
    st = t.user_attrs["gates"]["layer1/ffn"]
    assert g[3].mean == st["mean"] and g[3].quantiles == st["quantiles"]
    assert min(g[3].samples) >= st["quantiles"][0] and max(g[3].samples) <= st["quantiles"][-1]
    assert D.gate_summaries(None) == [] and D.gate_summaries({"decay": [1.0]}) == []


def test_front_table_rows(study):
    header, rows = D.front_table(study.trials, study.directions, study.metric_names)
    assert header[:4] == ["trial", "config_id", "recall", "query_gflops"]
    assert [r[0] for r in rows] == ["6", "0", "1", "3"]
    assert rows[2][2:4] == ["150", "10"]


def test_front_table_shows_the_trained_configuration_not_the_suggestion():
    """A suggestion the space canonicalised (rerank_k on a text-agnostic configuration)
    shows as trained: the value the trial's fusion attribute and the exported file hold."""
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState, create_trial

    from nas.config import FusionConfig

    fusion = FusionConfig(query_fusion="none", gate_inputs="va", rerank_k=0)
    dists = {"query_fusion": CategoricalDistribution(["none", "scalar"]),
             "rerank_k": CategoricalDistribution([0, 16]),
             "lr": CategoricalDistribution([0.001, 0.002])}
    t = create_trial(state=TrialState.COMPLETE, values=[50.0, 1.0],
                     params={"query_fusion": "none", "rerank_k": 16, "lr": 0.002},
                     distributions=dists,
                     user_attrs={"fusion": fusion.to_dict(), "train": {"lr": 0.002},
                                 "full_budget": True, "status": "complete", "config_id": "c"})
    assert D.canonical_params(t) == {"query_fusion": "none", "rerank_k": 0, "lr": 0.002}
    _, rows = D.front_table([t], MO, ["recall", "query_gflops"])
    assert "rerank_k=0" in rows[0][-1] and "rerank_k=16" not in rows[0][-1]


def test_param_importances_and_too_few_trials(study):
    imps, notes = D.param_importances(study.trials, study.directions, study.metric_names)
    assert set(imps) == {"recall", "query_gflops"} and not notes
    for d in imps.values():
        assert set(d) <= {"width", "layer_decay", "lr"}
        assert all(0 <= x <= 1 for x in d.values()) and sum(d.values()) == pytest.approx(1.0)
    few = [t for t in study.trials if t.number in (0, 1)]
    imps, notes = D.param_importances(few, study.directions, study.metric_names)
    assert imps == {} and "only 2 full-budget trial(s)" in notes["recall"]

"""MO-ASHA promotion logic, without Ray or torch."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nas.search.scheduler import (MOASHA, crowding_distance, non_dominated_ranks, promote,
                                  select_top)


def test_non_dominated_ranks() -> None:
    pts = np.array([[0, 0], [1, 1], [0, 2], [2, 0], [3, 3], [1, 1]])
    # (0,0) dominates all; (1,1) twice, (0,2), (2,0) next; (3,3) last
    assert non_dominated_ranks(pts).tolist() == [0, 1, 1, 1, 2, 1]


def test_crowding_distance_extremes_are_infinite() -> None:
    cd = crowding_distance(np.array([[0, 3], [1, 2], [2, 1], [3, 0]]))
    assert math.isinf(cd[0]) and math.isinf(cd[3]) and np.isfinite(cd[1:3]).all()


def test_promotion_follows_non_dominated_rank() -> None:
    # (-recall, cost): front 0 = {0, 1, 2}; 3 and 4 dominated; 5 dominated by everything
    pts = [[-80, 10], [-60, 2], [-70, 5], [-59, 3], [-50, 9], [-10, 20]]
    top = set(select_top(np.array(pts, float), 3).tolist())
    assert top == {0, 1, 2}
    for i in range(6):
        assert promote(pts, i, eta=2) == (i in {0, 1, 2})  # k = floor(6/2) = 3


def test_cheap_weak_and_expensive_strong_both_promoted() -> None:
    # scalar ASHA on recall would keep only the strong ones; MO-ASHA keeps the cheap one
    strong_expensive = [-90.0, 50.0]
    cheap_weak = [-30.0, 0.5]
    middling = [[-40.0, 40.0], [-50.0, 45.0], [-35.0, 30.0], [-45.0, 48.0]]
    pts = [strong_expensive, cheap_weak, *middling]
    assert promote(pts, 0, eta=3) and promote(pts, 1, eta=3)  # k = 2
    assert not any(promote(pts, i, eta=3) for i in range(2, 6))
    recall_only = sorted(range(6), key=lambda i: pts[i][0])[:2]
    assert 1 not in recall_only  # a single objective would have stopped the cheap one


def test_last_front_tie_broken_by_crowding() -> None:
    # all five on one front; k = 3 keeps both extremes and the most isolated middle point
    pts = np.array([[0, 10], [1, 9], [2, 8.9], [6, 3], [10, 0]], float)
    assert set(select_top(pts, 3).tolist()) == {0, 3, 4}


def test_moasha_records_rungs_asynchronously() -> None:
    a = MOASHA(n_rungs=3, eta=2)
    assert a.report("a", 0, [-10, 1])  # first at a rung always continues
    assert not a.report("b", 0, [-5, 1])  # dominated by a; k = 1 of 2
    # non-dominated but k = floor(3/2) = 1: the one place went to a (tie: arrival order)
    assert not a.report("c", 0, [-20, 5])
    assert a.report("d", 0, [-30, 6])  # k = 2 of 4: front {a, c, d}, extremes a and d
    assert not a.report("a", 2, [-50, 1])  # last rung: nothing to promote to
    assert set(a.records[0]) == {"a", "b", "c", "d"}


def test_top_floor_n_over_eta_not_ceil() -> None:
    # eta 2, three trials on one front: ceil(3/2) = 2 would continue the newcomer too
    pts = [[-10.0, 1.0], [-5.0, 0.5], [-20.0, 5.0]]
    assert promote(pts[:1], 0, eta=2)
    assert sum(promote(pts, i, eta=2) for i in range(3)) == 1  # k = floor(3/2) = 1
    assert sum(promote(pts + [[-1.0, 9.0]], i, eta=2) for i in range(4)) == 2


def test_promoted_share_at_low_trial_counts_stays_within_one_over_eta() -> None:
    # A search of a dozen trials is mostly in ASHA's early phase; each arrival is judged
    # against those seen so far. Over seeded random streams of 12 trials, the share that
    # continues must not exceed 1/eta (the ceil rule let 53% through at eta 2).
    rng = np.random.default_rng(0)
    for eta in (2, 3):
        shares = []
        for _ in range(40):
            a = MOASHA(n_rungs=2, eta=eta)
            pts = rng.random((12, 2))
            shares.append(np.mean([a.report(i, 0, p) for i, p in enumerate(pts)]))
        assert np.mean(shares) <= 1 / eta + 1e-9, (eta, np.mean(shares))


def test_moasha_disabled_always_continues_and_nan_is_worst() -> None:
    a = MOASHA(n_rungs=2, eta=2, enabled=False)
    assert all(a.report(i, 0, [float(i), 1.0]) for i in range(5))
    b = MOASHA(n_rungs=2, eta=2)
    b.report("good", 0, [-10, 1])
    assert not b.report("nan", 0, [float("nan"), 1])


def test_moasha_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        MOASHA(2, eta=1)
    with pytest.raises(ValueError):
        MOASHA(2, eta=2).report("x", 5, [0.0])

"""MO-ASHA promotion logic, without Ray or torch."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nas.search.scheduler import MOASHA, crowding_distance, non_dominated_ranks, promote, select_top

# The first rung of a real-signal search (issue 10), as (recall, query_gflops, index_gflops)
# in arrival order; the last one has by far the best recall.
ISSUE_RUNG = [(47.6, 0.0006, 0.00104), (49.4, 0.7646, 0.00029), (43.8, 0.7646, 0.00029),
              (51.8, 0.765, 0.00029), (49.4, 0.7646, 0.00029), (42.6, 0.7688, 0.00029),
              (49.0, 0.7728, 0.00029), (30.8, 0.0006, 0.00052), (86.2, 0.0006, 0.00138)]


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


def test_last_front_cut_by_crowding_or_by_hypervolume_contribution() -> None:
    # all five on one front (column 0 quality); k = 3
    pts = np.array([[0, 10], [1, 9], [2, 8.9], [6, 3], [10, 0]], float)
    # crowding keeps both extremes and the most isolated middle point
    assert set(select_top(pts, 3, cut="crowding").tolist()) == {0, 3, 4}
    # greedy removal drops (2, 8.9) (adds 0.004 of the scaled box), then the worst-quality
    # extreme (10, 0), which adds 0.03 against 0.05 for (1, 9) and 0.24 for (6, 3)
    assert set(select_top(pts, 3).tolist()) == {0, 1, 3}
    with pytest.raises(ValueError, match="cut"):
        select_top(pts, 3, cut="nsga")


def test_a_weak_cost_extreme_does_not_stop_a_strong_cheap_trial() -> None:
    # Second rung of a tabular replay (synthetic table, seed 0), as (recall, query GFLOPs):
    # two expensive text-conditioned trials, a cheaper one, and two text-agnostic ones
    # (query cost ~1/1000): 26.9 at 0.0002 and 102.0 at 0.0004. k = floor(5/2) = 2. The
    # best recall (103.5) always continues; crowding then keeps the cheapest (26.9, an
    # extreme), stopping the 102.0 trial that went on to 110.7, the best cheap recall.
    rung = [(95.0, 0.2898), (103.5, 0.2929), (78.3, 0.0747), (26.9, 0.0002), (102.0, 0.0004)]
    pts = [[-r, q] for r, q in rung]
    assert [promote(pts, i, eta=2, cut="crowding") for i in range(5)] == \
        [False, True, False, True, False]
    assert [promote(pts, i, eta=2) for i in range(5)] == [False, True, False, False, True]
    a = MOASHA(n_rungs=3, eta=2)
    assert [a.report(i, 1, p) for i, p in enumerate(pts)][-1]
    with pytest.raises(ValueError, match="cut"):
        MOASHA(n_rungs=3, eta=2, cut="nsga")


def test_moasha_records_rungs_asynchronously() -> None:
    a = MOASHA(n_rungs=3, eta=2)
    assert a.report("a", 0, [-10, 1])  # first at a rung always continues
    assert not a.report("b", 0, [-5, 1])  # dominated by a; k = 1 of 2
    # non-dominated, k = floor(3/2) = 1: the one place goes to the best recall (c), not to
    # the earlier arrival
    assert a.report("c", 0, [-20, 5])
    assert a.report("d", 0, [-30, 6])  # k = 2 of 4: front {a, c, d}; d best, then a or c
    assert not a.report("a", 2, [-50, 1])  # last rung: nothing to promote to
    assert set(a.records[0]) == {"a", "b", "c", "d"}


def test_top_floor_n_over_eta_not_ceil() -> None:
    # eta 2, three trials on one front: ceil(3/2) = 2 would continue the newcomer too
    pts = [[-10.0, 1.0], [-5.0, 0.5], [-20.0, 5.0]]
    assert promote(pts[:1], 0, eta=2)
    assert sum(promote(pts, i, eta=2) for i in range(3)) == 1  # k = floor(3/2) = 1
    assert sum(promote(pts + [[-1.0, 9.0]], i, eta=2) for i in range(4)) == 2


def test_promoted_share_at_low_trial_counts_matches_scalar_asha() -> None:
    # A search of a dozen trials is mostly in ASHA's early phase; each arrival is judged
    # against those seen so far. Over seeded random streams of 12 trials, the share that
    # continues is scalar ASHA's own share at those counts, mean_i max(1, floor(i/eta))/i
    # (0.505 at eta 2; the ceil rule gives 0.578 and let 53% through in a benchmark).
    rng = np.random.default_rng(1)
    for eta in (2, 3):
        shares = []
        for _ in range(400):
            a = MOASHA(n_rungs=2, eta=eta)
            pts = rng.random((12, 2))
            shares.append(np.mean([a.report(i, 0, p) for i, p in enumerate(pts)]))
        scalar = np.mean([max(1, math.floor(i / eta + 1e-9)) / i for i in range(1, 13)])
        assert abs(np.mean(shares) - scalar) <= 0.02, (eta, np.mean(shares), scalar)


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
    for hedge in (-1, 1):
        with pytest.raises(ValueError, match="hedge"):
            MOASHA(2, eta=2, hedge=hedge)


def test_the_hedge_spares_every_nth_trial_at_the_first_rung_only() -> None:
    """--hedge 3: the 3rd, 6th, ... trial to reach the first rung continues however it
    ranks there, and is judged like any other at the next rung; the others are not."""
    def run(hedge: int) -> tuple[list[bool], bool]:
        m = MOASHA(3, eta=3, hedge=hedge)
        first = [m.report(i, 0, [-(10.0 - i)]) for i in range(6)]  # each worse than before
        for i in range(6):  # the second rung: trial 5 (spared above) is the worst again
            if i != 5:
                m.report(i, 1, [-(10.0 - i)])
        return first, m.report(5, 1, [-1.0])

    first, second = run(0)
    assert first[2] is False and first[5] is False  # the worst so far: stopped
    first, second = run(3)
    assert first[2] is True and first[5] is True  # spared at the first rung
    assert first[3] is False and first[4] is False  # the others are judged as before
    assert second is False  # and the spared trial is judged at the second rung


@pytest.mark.parametrize("columns", [(0, 1, 2), (0, 1), (0, 2)])
def test_best_recall_at_the_rung_continues_with_two_or_three_objectives(columns) -> None:
    # With three objectives five of the six first-front trials are an extreme of some
    # objective (infinite crowding distance); ties used to be broken by arrival, which
    # stopped the newest trial, the best one by far.
    a = MOASHA(n_rungs=3, eta=2, quality=[0])
    decisions = []
    for i, rec in enumerate(ISSUE_RUNG):
        vec = [-rec[0], *(rec[c] for c in columns[1:])]
        decisions.append(a.report(i, 0, vec))
    assert decisions[-1], decisions


def test_hypervolume_contribution_breaks_ties_among_extremes() -> None:
    # Even told nothing about which column is quality, the cut among infinite crowding
    # distances goes by hypervolume contribution, which keeps the 86.2 trial.
    pts = np.array([[-r, q, x] for r, q, x in ISSUE_RUNG])
    k = math.floor(len(pts) / 2)
    crowd = crowding_distance(pts[non_dominated_ranks(pts) == 0])
    assert np.isinf(crowd).sum() > k  # the tie the old arrival-order rule broke
    assert len(pts) - 1 in select_top(pts, k, quality=())


@pytest.mark.parametrize("n_obj", [2, 3, 4])
def test_best_quality_is_never_stopped_by_a_tie_break(n_obj) -> None:
    # Random rungs with many ties (coarse values): the trial best in recall at a rung is
    # always promoted, whatever the arrival order.
    rng = np.random.default_rng(n_obj)
    for _ in range(200):
        n = int(rng.integers(2, 14))
        pts = np.round(rng.random((n, n_obj)) * 3) / 3
        for eta in (2, 3):
            k = max(1, math.floor(n / eta))
            top = set(select_top(pts, k, quality=(0,)).tolist())
            assert np.flatnonzero(pts[:, 0] == pts[:, 0].min())[0] in top or \
                any(i in top for i in np.flatnonzero(pts[:, 0] == pts[:, 0].min()))


def test_a_large_front_is_cut_quickly() -> None:
    # the exact greedy cut is O(front^4): a long search's rung of 200 mutually
    # non-dominated trials would take minutes; beyond HV_CUT_MAX it is cut by crowding
    import time

    from nas.search.scheduler import HV_CUT_MAX

    rng = np.random.default_rng(0)
    f = rng.random((200, 3))
    pts = f / f.sum(axis=1, keepdims=True)  # all on one front
    assert (non_dominated_ranks(pts) == 0).all()
    t0 = time.process_time()
    top = select_top(pts, 100)
    assert len(top) == 100 and time.process_time() - t0 < 2.0
    assert set(top.tolist()) == set(select_top(pts, 100, cut="crowding").tolist())
    small = pts[:HV_CUT_MAX]
    assert len(select_top(small, HV_CUT_MAX // 2)) == HV_CUT_MAX // 2

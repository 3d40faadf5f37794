"""The verdict rule and its intervals (pure)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nas.verdict.stats import (
    COSTS,
    NONE,
    PAYS,
    UNTESTED,
    Interval,
    paired_interval,
    verdict_word,
    welch_interval,
)


def test_paired_interval_matches_the_t_formula() -> None:
    d = [1.0, 2.0, 4.0]
    iv = paired_interval(d)
    half = 2.919985580 * np.std(d, ddof=1) / math.sqrt(3)  # t(0.95, 2)
    assert iv.n == 3 and iv.mean == pytest.approx(7 / 3)
    assert (iv.lo, iv.hi) == pytest.approx((7 / 3 - half, 7 / 3 + half))
    assert paired_interval([0.5, 0.5]).lo == paired_interval([0.5, 0.5]).hi == 0.5
    one = paired_interval([3.0])
    assert one.n == 1 and math.isnan(one.lo)
    assert paired_interval([1.0, float("nan"), 2.0]).n == 2


def test_paired_interval_covers_the_true_effect_90_percent_of_the_time() -> None:
    """Over many simulated 3-seed verdicts the 90 % interval covers the planted effect in
    about 90 % of them (a wrong t quantile or a z interval would be off by several %)."""
    rng = np.random.default_rng(0)
    n_sim, effect = 4000, 2.5
    cover = 0
    for _ in range(n_sim):
        iv = paired_interval(effect + rng.normal(0, 1.0, 3))
        cover += iv.lo <= effect <= iv.hi
    assert 0.88 < cover / n_sim < 0.92


def test_welch_interval() -> None:
    iv = welch_interval([10.0, 12.0, 11.0], [5.0, 6.0])
    assert iv.mean == pytest.approx(5.5) and iv.lo < 5.5 < iv.hi and iv.n == 2
    assert math.isnan(welch_interval([1.0], [2.0, 3.0]).lo)
    assert math.isnan(welch_interval([], [2.0]).mean)


def _iv(lo: float, hi: float, n: int = 3) -> Interval:
    return Interval((lo + hi) / 2, lo, hi, n)


@pytest.mark.parametrize("q,costs,word", [
    (_iv(1, 3), {"c": _iv(0.5, 0.5)}, PAYS),            # better recall, at a cost
    (_iv(-1, 2), {"c": _iv(-0.4, -0.2)}, PAYS),         # same recall, cheaper
    (_iv(-3, -1), {"c": _iv(-1, -0.5)}, COSTS),         # worse recall, even if cheaper
    (_iv(-1, 2), {"c": _iv(0.1, 0.3)}, COSTS),          # same recall, dearer
    (_iv(-1, 2), {"c": _iv(0.1, 0.3), "d": _iv(-1, -0.5)}, COSTS),  # one cost up is enough
    (_iv(-1, 2), {"c": _iv(0, 0)}, NONE),               # nothing excludes 0
    (_iv(-1, 2), {"c": _iv(-0.1, 0.3)}, NONE),
    (_iv(1, 3, n=1), {}, UNTESTED),                      # one pair: no interval
    (None, {}, UNTESTED),
])
def test_verdict_word(q, costs, word) -> None:
    assert verdict_word(q, True, costs) == word


def test_verdict_word_reads_directions() -> None:
    """A minimised quality objective (median rank): lower is better."""
    assert verdict_word(_iv(-3, -1), False, {}) == PAYS
    assert verdict_word(_iv(1, 3), False, {}) == COSTS
    # a maximised "cost" would be odd, but the rule follows the direction it is given
    assert verdict_word(_iv(-1, 1), True, {"c": _iv(1, 2)}, {"c": True}) == PAYS


def test_a_cost_change_below_the_floor_counts_as_none() -> None:
    """Exact costs have zero-width intervals: +0.5 % of the base cost is no change, +2 % is."""
    same_q = _iv(-1, 2)
    assert verdict_word(same_q, True, {"c": _iv(0.5, 0.5)}, cost_base={"c": 100.0}) == NONE
    assert verdict_word(same_q, True, {"c": _iv(2, 2)}, cost_base={"c": 100.0}) == COSTS
    assert verdict_word(same_q, True, {"c": _iv(-2, -2)}, cost_base={"c": 100.0}) == PAYS
    assert verdict_word(same_q, True, {"c": _iv(-0.5, -0.5)}, cost_base={"c": 100.0}) == NONE
    # no base known: no floor
    assert verdict_word(same_q, True, {"c": _iv(0.5, 0.5)}) == COSTS

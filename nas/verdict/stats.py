"""The verdict rule: paired differences per seed, a t-interval, and one word.

For a variant and one objective, seed i gives the paired difference
``d_i = value(variant on, seed i) - value(variant off, seed i)`` (the variant's run against
the base run of the same seed; when the base has the variant on, the base is the "on"
side). Over the n seeds where both runs finished, the 90 % interval is the Student
t-interval ``mean(d) +- t(0.95, n-1) * sd(d) / sqrt(n)`` (sd with ddof=1); a difference that
is the same for every seed (an exact cost) has a zero-width interval.

"Measurably better" means the interval lies entirely on the objective's good side (above 0
for a maximised objective such as recall, below 0 for a minimised one such as a cost);
"measurably worse" the opposite. With Q the study's first quality objective (recall by
default) and C its cost objectives:

- *not tested*: fewer than 2 seeds with both runs finished (or the variant could not be
  toggled at this point);
- *pays*: Q measurably better, whatever the costs (the cost intervals say at what
  price); or Q not measurably changed, some cost measurably lower and none measurably higher;
- *costs without paying*: Q measurably worse; or Q not measurably changed and some cost
  measurably higher;
- *no measurable effect*: otherwise (every interval covers 0).

A cost changed by less than ``COST_FLOOR`` (1 %) of the base configuration's cost counts
as unchanged: costs are exact, so their intervals have zero width and a 0.1 % FLOP increase
(a gate's few extra multiply-adds) would otherwise be "measurably higher" and turn a
variant with no effect on recall into *costs without paying*.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

__all__ = ["COST_FLOOR", "LEVEL", "WORDS", "Interval", "paired_interval", "welch_interval",
           "verdict_word"]

LEVEL = 0.90
COST_FLOOR = 0.01  # relative to the base cost: smaller cost changes count as none
PAYS = "pays"
COSTS = "costs without paying"
NONE = "no measurable effect"
UNTESTED = "not tested"
WORDS = (PAYS, COSTS, NONE, UNTESTED)


@dataclass(frozen=True)
class Interval:
    """A mean effect and its two-sided interval at ``LEVEL`` over ``n`` observations."""

    mean: float
    lo: float
    hi: float
    n: int

    def side(self, maximize: bool, margin: float = 0.0) -> int:
        """+1 measurably better, -1 measurably worse, 0 neither (the interval reaches into
        ``[-margin, margin]``)."""
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)):
            return 0
        if self.lo > margin:
            return 1 if maximize else -1
        if self.hi < -margin:
            return -1 if maximize else 1
        return 0

    def as_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "lo": self.lo, "hi": self.hi, "n": self.n}


@functools.lru_cache(maxsize=256)
def _t(df: float, level: float) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


def paired_interval(diffs: Sequence[float], level: float = LEVEL) -> Interval:
    """Student t-interval of the mean of paired differences (NaN bounds below 2 values)."""
    d = np.asarray([x for x in diffs if math.isfinite(x)], dtype=float)
    n = len(d)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    m = float(d.mean())
    if n < 2:
        return Interval(m, math.nan, math.nan, 1)
    half = _t(n - 1, level) * float(d.std(ddof=1)) / math.sqrt(n)
    return Interval(m, m - half, m + half, n)


def welch_interval(on: Sequence[float], off: Sequence[float], level: float = LEVEL
                   ) -> Interval:
    """Welch t-interval of mean(on) - mean(off) for two independent groups (the quick
    estimate); NaN bounds when a group has fewer than 2 values. ``n`` = the smaller group."""
    a = np.asarray([x for x in on if math.isfinite(x)], dtype=float)
    b = np.asarray([x for x in off if math.isfinite(x)], dtype=float)
    n = int(min(len(a), len(b)))
    if len(a) == 0 or len(b) == 0:
        return Interval(math.nan, math.nan, math.nan, n)
    m = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return Interval(m, math.nan, math.nan, n)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Interval(m, m, m, n)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = _t(df, level) * se
    return Interval(m, m - half, m + half, n)


def verdict_word(quality: Interval | None, quality_maximize: bool,
                 costs: Mapping[str, Interval], cost_maximize: Mapping[str, bool] | None = None,
                 cost_base: Mapping[str, float] | None = None) -> str:
    """The word of the module docstring's rule. ``costs`` maps each cost objective to its
    interval (minimised unless ``cost_maximize`` says otherwise); ``cost_base`` to the base
    configuration's cost, whose ``COST_FLOOR`` share is the smallest change that counts
    (no floor for a cost without a finite base)."""
    if quality is None or quality.n < 2:
        return UNTESTED
    q = quality.side(quality_maximize)
    if q > 0:
        return PAYS
    if q < 0:
        return COSTS
    def floor(k: str) -> float:
        b = (cost_base or {}).get(k, math.nan)
        return COST_FLOOR * abs(b) if math.isfinite(b) else 0.0

    sides = [iv.side(bool((cost_maximize or {}).get(k, False)), floor(k))
             for k, iv in costs.items() if iv.n >= 2]
    if any(s < 0 for s in sides):
        return COSTS
    if any(s > 0 for s in sides):
        return PAYS
    return NONE

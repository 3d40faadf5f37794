"""Cost-aware choice among model-based proposals: exact costs, optimistic quality.

A search's cost objectives (query and index GFLOPs, parameters) are known exactly before a
configuration is trained, and what a configuration costs to *train* can be estimated from
the trials already trained. A model-based sampler such as TPE uses neither: it proposes
where quality looks good, whatever the proposal costs to train and whether its costs could
extend the front at all.

``choose`` takes a few proposals drawn from the sampler's own model (so every candidate is
still model-based) and picks the one with the largest *potential hypervolume gain per
second of training*: the gain the front would get if the configuration reached the best
quality seen so far (optimistic, so a candidate is judged by what its exact costs allow),
divided by its estimated training seconds. A candidate whose costs are at least those of
a trained point that already has the best quality can gain nothing even then; when no
candidate can gain, the sampler's own first proposal stands. This is expected improvement
per second (Snoek et al. 2012) with the improvement measured in hypervolume and the
quality model replaced by its optimistic bound, so the only thing the rule adds to the
sampler is what is known exactly: costs and training time.

``training_seconds`` estimates the training time of a configuration that was not trained
from the trained ones: seconds per epoch of the trained configuration nearest in log-cost
space (configurations with the same costs are the same size and train as fast).

``spread`` is the start-up design of a study without a warm start: before the sampler
has a model, each new trial is the one of a few uniform draws whose exact costs lie
farthest from every trial so far (maximin in log-cost space: orders of magnitude), so the
first trials span the cost axes of the front instead of landing where most of the space
is (on the tabular benchmark three quarters of the configurations are text-conditioned,
and four uniform draws miss the cheap, text-agnostic end a third of the time). It uses no quality
information: no prior, only what is known exactly before training.

Pure functions of arrays: no Optuna, no Ray, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

from nas.search.pareto import hypervolume

__all__ = ["choose", "potential_gain", "spread", "training_seconds"]


def potential_gain(losses: np.ndarray, candidates: np.ndarray,
                   sd: np.ndarray | None = None, samples: int = 8) -> np.ndarray:
    """Hypervolume each candidate row adds to the points ``losses`` (both minimisation-
    oriented, same columns), in the box of all rows scaled to [0, 1] per column with the
    reference point at 1.1.

    ``sd`` (same shape as ``candidates``, optional): the standard deviation of each entry
    (0 where it is known exactly: the costs). The gain is then the *expected* gain under
    a normal belief, averaged over ``samples`` quantiles (the uncertain columns of a row
    move together, quantile by quantile). Without ``sd`` the candidates are taken at
    their values (the optimistic bound when those are the best quality seen)."""
    cands = np.asarray(candidates, dtype=float)
    pts = np.asarray(losses, dtype=float).reshape(-1, cands.shape[1])
    both = np.vstack([pts, cands])
    lo, hi = both.min(axis=0), both.max(axis=0)
    scale = np.where(hi > lo, hi - lo, 1.0)
    ref = [1.1] * both.shape[1]
    norm_pts = (pts - lo) / scale
    base = hypervolume(norm_pts, ref) if len(pts) else 0.0
    if sd is None:
        z = np.zeros(1)
        spread_ = np.zeros_like(cands)
    else:
        z = np.array([NormalDist().inv_cdf((k + 0.5) / samples) for k in range(samples)])
        spread_ = np.asarray(sd, dtype=float) / scale
    out = np.zeros(len(cands))
    for i, c in enumerate((cands - lo) / scale):
        draws = c[None, :] + z[:, None] * spread_[i][None, :]
        out[i] = float(np.mean([max(0.0, hypervolume(np.vstack([norm_pts, d[None, :]]), ref)
                                    - base) for d in draws]))
    return out


def choose(losses: np.ndarray, candidates: np.ndarray, seconds: Sequence[float],
           sd: np.ndarray | None = None) -> int:
    """Index of the candidate with the largest (expected, with ``sd``) gain per training
    second; 0 (the sampler's own first proposal) when there are no points yet or no
    candidate can gain."""
    if len(candidates) <= 1 or (sd is None and not len(losses)):
        return 0
    gain = potential_gain(losses, candidates, sd)
    if not (gain > 0).any():
        return 0
    sec = np.array([s if (s is not None and math.isfinite(s) and s > 0) else np.nan
                    for s in seconds], dtype=float)
    if np.isnan(sec).all():
        sec[:] = 1.0
    sec = np.where(np.isnan(sec), np.nanmedian(sec), sec)
    return int(np.argmax(gain / sec))


def training_seconds(costs: np.ndarray, per_epoch: np.ndarray, query: np.ndarray
                     ) -> np.ndarray:
    """Estimated seconds per epoch of each ``query`` cost row: that of the trained row of
    ``costs`` nearest in log space (``per_epoch``: seconds per epoch of each trained row).
    NaN for every query when nothing is trained yet."""
    q = np.asarray(query, dtype=float)
    c = np.asarray(costs, dtype=float).reshape(-1, q.shape[1])
    if not len(c):
        return np.full(len(q), np.nan)
    lc, lq = np.log(np.maximum(np.abs(c), 1e-12)), np.log(np.maximum(np.abs(q), 1e-12))
    span = np.where(np.ptp(lc, axis=0) > 0, np.ptp(lc, axis=0), 1.0)
    d = (((lq[:, None, :] - lc[None, :, :]) / span) ** 2).sum(axis=2)
    return np.asarray(per_epoch, dtype=float)[np.argmin(d, axis=1)]


def spread(existing: np.ndarray, candidates: np.ndarray) -> int:
    """Index of the candidate cost row farthest (the smallest distance to any existing
    row, maximised) from the ``existing`` rows, in log space: a factor counts the same on
    every cost axis, so a cost that varies by orders of magnitude (query GFLOPs of
    text-conditioned against text-agnostic fusion) spreads the design more than one that
    varies by a few times. 0 (the first, a uniform draw) when nothing exists yet. Costs
    must be positive (a zero counts as 1e-12)."""
    cands = np.log(np.maximum(np.asarray(candidates, dtype=float), 1e-12))
    if not len(existing) or len(cands) <= 1:
        return 0
    have = np.log(np.maximum(np.asarray(existing, dtype=float), 1e-12)
                  ).reshape(-1, cands.shape[1])
    d = ((cands[:, None, :] - have[None, :, :]) ** 2).sum(axis=2).min(axis=1)
    return int(np.argmax(d))

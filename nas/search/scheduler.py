"""Multi-objective asynchronous successive halving (MO-ASHA), without Ray or torch.

Schmucker et al. 2021 ("Multi-objective asynchronous successive halving"): ASHA's rule
"continue a trial at rung r if it is in the top floor(n/eta) of the n trials seen at rung r" with
the scalar ranking replaced by a multi-objective one. Here the ranking is NSGA-II's:
non-dominated sorting of the objective vectors (all oriented for minimisation), the last
front that does not fit cut by quality first, then crowding distance, then hypervolume
contribution (``select_top``). The vector of a
trial at a rung holds its quality objectives at that rung (recall, ...) and its cost
objectives, which are known exactly before training. So a cheap weak configuration and an
expensive strong one are both on the first front and both continue, where scalar ASHA on
recall would stop the cheap one.

``promote`` is the pure decision; ``MOASHA`` keeps the per-rung records. The Ray Tune
scheduler in ``ray_adapter`` and the in-process loop of the tests both call ``MOASHA``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np

from nas.search.pareto import hypervolume_contributions, non_dominated_ranks

__all__ = ["MOASHA", "crowding_distance", "non_dominated_ranks", "promote", "select_top"]
# non_dominated_ranks lives in nas.search.pareto (the one implementation); re-exported.


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each row (larger = more isolated; extremes = inf)."""
    pts = np.asarray(points, dtype=float)
    n, m = pts.shape if pts.ndim == 2 else (len(pts), 0)
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, math.inf)
    for k in range(m):
        order = np.argsort(pts[:, k], kind="stable")
        lo, hi = pts[order[0], k], pts[order[-1], k]
        dist[order[0]] = dist[order[-1]] = math.inf
        if hi == lo:
            continue
        gaps = (pts[order[2:], k] - pts[order[:-2], k]) / (hi - lo)
        dist[order[1:-1]] += gaps
    return dist


def select_top(points: np.ndarray, k: int, quality: Sequence[int] = (0,)) -> np.ndarray:
    """Indices of the best ``k`` rows: whole fronts in order; the last one that does not
    fit is cut in this order:

    1. the rows best in a quality column (``quality``: the columns of recall and the like;
       costs are the others) come first, so the trial with the best recall at a rung is
       never stopped because of a tie-break;
    2. then larger crowding distance (NSGA-II: the extremes of every objective, infinite,
       then the isolated);
    3. ties (with three or more objectives most of a small front is an extreme of some
       cost) by larger exclusive hypervolume contribution, in the rung's own box (each
       column scaled to [0, 1] over the rung, reference point 1.1);
    4. then arrival order, so decisions are reproducible.
    """
    pts = np.asarray(points, dtype=float)
    ranks = non_dominated_ranks(pts)
    chosen: list[int] = []
    for r in range(int(ranks.max(initial=-1)) + 1):
        front = np.flatnonzero(ranks == r)
        if len(chosen) + len(front) <= k:
            chosen.extend(front.tolist())
            continue
        need = k - len(chosen)
        if need <= 0:
            break
        sub = pts[front]
        best_q = np.zeros(len(front), dtype=bool)
        for j in quality:
            if 0 <= j < sub.shape[1]:
                best_q |= sub[:, j] == sub[:, j].min()
        cd = crowding_distance(sub)
        key = [(not best_q[i], -cd[i]) for i in range(len(front))]
        contrib = np.zeros(len(front))
        ordered = sorted(key)
        if need < len(front) and ordered[need - 1] == ordered[need]:  # a tie at the cut
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            norm = (sub - lo) / np.where(hi > lo, hi - lo, 1.0)
            contrib = hypervolume_contributions(norm, [1.1] * sub.shape[1])
        order = sorted(range(len(front)), key=lambda i: (*key[i], -contrib[i], front[i]))
        chosen.extend(int(front[i]) for i in order[:need])
        break
    return np.array(sorted(chosen), dtype=int)


def promote(points: np.ndarray | Sequence[Sequence[float]], index: int, eta: float,
            quality: Sequence[int] = (0,)) -> bool:
    """Whether trial ``index`` continues: it is in the top ``max(1, floor(n / eta))`` of
    the ``n`` trials seen at this rung (n includes it), ranked as in ``select_top``.

    ``floor``, as in ASHA (Li et al. 2020): with ``ceil`` the second trial at a rung of
    eta 2 shares the top with the first and the third takes one of two places, so a
    run of a few dozen trials let most of them through (44% reached the full budget in
    the benchmark where 1/eta^2 = 25% was meant). A single trial seen still continues.
    A cheap weak and an expensive strong configuration are both on the first front; both
    continue once the rung holds ``2 * eta`` trials (and one of them before: the one with
    the better quality).
    """
    pts = np.asarray(points, dtype=float)
    n = len(pts)
    k = max(1, math.floor(n / eta + 1e-9))
    return index in set(select_top(pts, k, quality).tolist())


class MOASHA:
    """Per-rung records and the continue/stop decision of asynchronous MO successive halving.

    ``report(key, rung, vector)`` records a trial's vector (minimisation-oriented) at a rung
    and returns True when the trial should continue to the next rung. Rungs are evaluated in
    order; the last rung (the full budget) has no decision: the trial finishes.
    ``quality``: the indices of the quality objectives (recall, ...) in the vectors.
    """

    def __init__(self, n_rungs: int, eta: float, enabled: bool = True,
                 quality: Sequence[int] = (0,)) -> None:
        if eta <= 1:
            raise ValueError(f"eta must be > 1, got {eta}")
        self.n_rungs = n_rungs
        self.eta = eta
        self.enabled = enabled
        self.quality = tuple(quality)
        self.records: list[dict[Hashable, tuple[float, ...]]] = [{} for _ in range(n_rungs)]

    def report(self, key: Hashable, rung: int, vector: Sequence[float]) -> bool:
        """Record and decide. NaN entries count as the worst value seen."""
        if not 0 <= rung < self.n_rungs:
            raise ValueError(f"rung {rung} out of range 0..{self.n_rungs - 1}")
        vec = tuple(math.inf if (v is None or math.isnan(v)) else float(v) for v in vector)
        self.records[rung][key] = vec
        if rung == self.n_rungs - 1:
            return False  # full budget reached: nothing left to promote to
        if not self.enabled:
            return True
        keys = list(self.records[rung])
        pts = np.array([self.records[rung][k] for k in keys], dtype=float)
        pts = np.where(np.isinf(pts), np.nan, pts)
        # replace inf (failed metric) by a value worse than any finite one, per column
        col_max = np.nanmax(np.where(np.isnan(pts), -np.inf, pts), axis=0)
        col_max = np.where(np.isfinite(col_max), col_max, 0.0)
        pts = np.where(np.isnan(pts), col_max + 1.0 + np.abs(col_max), pts)
        return promote(pts, keys.index(key), self.eta, self.quality)

"""Multi-objective asynchronous successive halving (MO-ASHA), without Ray or torch.

Schmucker et al. 2021 ("Multi-objective asynchronous successive halving"): ASHA's rule
"continue a trial at rung r if it is in the top floor(n/eta) of the n trials seen at rung r" with
the scalar ranking replaced by a multi-objective one. Here: non-dominated sorting of the
objective vectors (all oriented for minimisation), the last front that does not fit cut
by quality first, then by hypervolume contribution (greedy removal of the least
contributor, SMS-EMOA; NSGA-II's crowding distance on request; ``select_top``). The vector of a
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

__all__ = ["MOASHA", "PROMOTIONS", "crowding_distance", "non_dominated_ranks", "promote",
           "select_top"]
# non_dominated_ranks lives in nas.search.pareto (the one implementation); re-exported.

# How the last front at a rung is cut (``select_top``; the search's ``--promotion``).
PROMOTIONS = ("hypervolume", "crowding")
# The greedy hypervolume cut recomputes every exclusive contribution after each removal:
# exact, but its cost grows with about the fourth power of the front (3 objectives: 0.02 s
# at 16 points, 1.9 s at 50, 26 s at 100). Larger fronts (long searches) are cut by
# crowding distance, as NSGA-II does.
HV_CUT_MAX = 24


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


def select_top(points: np.ndarray, k: int, quality: Sequence[int] = (0,),
               cut: str = "hypervolume") -> np.ndarray:
    """Indices of the best ``k`` rows: whole fronts in order; the last one that does not
    fit is cut.

    The rows best in a quality column (``quality``: the columns of recall and the like;
    costs are the others) always come first, so the trial with the best recall at a rung
    is never stopped by the cut. The rest of the cut depends on ``cut`` (``PROMOTIONS``):

    - ``"hypervolume"`` (the default; fronts of at most ``HV_CUT_MAX`` rows, larger ones
      as ``"crowding"``): the row that adds least to the front's hypervolume
      (its exclusive contribution, in the rung's own box: each column scaled to [0, 1]
      over the rung, reference point 1.1) is dropped, the contributions are computed
      again, and so on until ``k`` are left (SMS-EMOA's greedy removal, Beume et al.
      2007). An extreme of a cost column that is weak in quality adds almost nothing, so it
      goes before a strong trial that costs a little more. Ties by crowding, then arrival.
    - ``"crowding"``: NSGA-II's rule, larger crowding distance first (the extremes of
      every objective, infinite, then the isolated); ties (with three or more objectives
      most of a small front is an extreme of some cost) by larger exclusive hypervolume
      contribution, then arrival order. It keeps a weak extreme over a strong middle:
      on the tabular benchmark it stopped the best cheap configuration at a rung in
      favour of one three times worse (BENCHMARKS.md section 8).
    """
    if cut not in PROMOTIONS:
        raise ValueError(f"cut must be one of {PROMOTIONS}, got {cut!r}")
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
        chosen.extend(int(front[i]) for i in _cut_front(pts, front, need, quality, cut))
        break
    return np.array(sorted(chosen), dtype=int)


def _cut_front(pts: np.ndarray, front: np.ndarray, need: int, quality: Sequence[int],
               cut: str) -> list[int]:
    """Positions (in ``front``) of the ``need`` rows of one front that continue."""
    sub = pts[front]
    best_q = np.zeros(len(front), dtype=bool)
    for j in quality:
        if 0 <= j < sub.shape[1]:
            best_q |= sub[:, j] == sub[:, j].min()
    cd = crowding_distance(sub)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    norm = (sub - lo) / np.where(hi > lo, hi - lo, 1.0)
    ref = [1.1] * sub.shape[1]
    if cut == "crowding" or best_q.sum() >= need or len(front) > HV_CUT_MAX:
        key = [(not best_q[i], -cd[i]) for i in range(len(front))]
        contrib = np.zeros(len(front))
        ordered = sorted(key)
        if need < len(front) and ordered[need - 1] == ordered[need]:  # a tie at the cut
            contrib = hypervolume_contributions(norm, ref)
        order = sorted(range(len(front)), key=lambda i: (*key[i], -contrib[i], front[i]))
        return order[:need]
    keep = list(range(len(front)))
    while len(keep) > need:
        contrib = hypervolume_contributions(norm[keep], ref)
        drop = min((j for j in range(len(keep)) if not best_q[keep[j]]),
                   key=lambda j: (contrib[j], cd[keep[j]], -front[keep[j]]))
        keep.pop(drop)
    return keep


def promote(points: np.ndarray | Sequence[Sequence[float]], index: int, eta: float,
            quality: Sequence[int] = (0,), cut: str = "hypervolume") -> bool:
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
    return index in set(select_top(pts, k, quality, cut).tolist())


def check_hedge(hedge: int) -> None:
    """``MOASHA``'s ``hedge`` (the search's ``--hedge``): 0 (none) or N >= 2."""
    if hedge < 0 or hedge == 1:
        raise ValueError(f"hedge must be 0 or >= 2, got {hedge}")


class MOASHA:
    """Per-rung records and the continue/stop decision of asynchronous MO successive halving.

    ``report(key, rung, vector)`` records a trial's vector (minimisation-oriented) at a rung
    and returns True when the trial should continue to the next rung. Rungs are evaluated in
    order; the last rung (the full budget) has no decision: the trial finishes.
    ``quality``: the indices of the quality objectives (recall, ...) in the vectors;
    ``cut``: how the last front that does not fit is cut (``PROMOTIONS``, ``select_top``).
    """

    def __init__(self, n_rungs: int, eta: float, enabled: bool = True,
                 quality: Sequence[int] = (0,), cut: str = "hypervolume",
                 hedge: int = 0) -> None:
        if eta <= 1:
            raise ValueError(f"eta must be > 1, got {eta}")
        if cut not in PROMOTIONS:
            raise ValueError(f"cut must be one of {PROMOTIONS}, got {cut!r}")
        check_hedge(hedge)
        self.cut = cut
        self.n_rungs = n_rungs
        self.eta = eta
        self.enabled = enabled
        self.quality = tuple(quality)
        self.records: list[dict[Hashable, tuple[float, ...]]] = [{} for _ in range(n_rungs)]
        # a hedge against a bad first-rung ranking (Hyperband's second bracket): every
        # ``hedge``-th trial to reach the first rung is not stopped there (0: none)
        self.hedge = hedge
        self._first_seen = 0
        self._hedged: set[Hashable] = set()

    def report(self, key: Hashable, rung: int, vector: Sequence[float]) -> bool:
        """Record and decide. NaN entries count as the worst value seen."""
        if not 0 <= rung < self.n_rungs:
            raise ValueError(f"rung {rung} out of range 0..{self.n_rungs - 1}")
        vec = tuple(math.inf if (v is None or math.isnan(v)) else float(v) for v in vector)
        if rung == 0 and key not in self.records[0]:
            self._first_seen += 1
            if self.hedge and self._first_seen % self.hedge == 0:
                self._hedged.add(key)
        self.records[rung][key] = vec
        if rung == self.n_rungs - 1:
            return False  # full budget reached: nothing left to promote to
        if not self.enabled or (rung == 0 and key in self._hedged):
            return True
        keys = list(self.records[rung])
        pts = np.array([self.records[rung][k] for k in keys], dtype=float)
        pts = np.where(np.isinf(pts), np.nan, pts)
        # replace inf (failed metric) by a value worse than any finite one, per column
        col_max = np.nanmax(np.where(np.isnan(pts), -np.inf, pts), axis=0)
        col_max = np.where(np.isfinite(col_max), col_max, 0.0)
        pts = np.where(np.isnan(pts), col_max + 1.0 + np.abs(col_max), pts)
        return promote(pts, keys.index(key), self.eta, self.quality, self.cut)

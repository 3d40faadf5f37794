"""A small Gaussian-process model of a quality objective, for the cost-aware choice.

The cost-aware choice (``nas.search.cost_aware``) weighs proposals by the hypervolume
they can be expected to add per training second. Their costs are known exactly; their
quality is not. ``QualityModel`` predicts it (a mean and a standard deviation at the full
budget) from the trials so far, stopped ones included:

- **Inputs.** A trial's parameters, encoded against the space's distributions
  (``encode``: a categorical as one-hot, a number scaled to [0, 1] on its own scale, log
  where the distribution is; a parameter the trial does not have, because a condition
  switched it off, as its own column), and the share of the full budget it reached.
- **Multi-fidelity.** A stopped trial is seen at the rung where it stopped. The model's
  mean is linear in the budget share (fitted by least squares: after a short first rung
  recall is lower everywhere), and the kernel is a product of a squared-exponential over
  the parameters and one over the budget share, so a configuration's early rung informs
  its full-budget prediction, and configurations near it, with the budget's discount.
  Prediction is at the full budget.
- **Hyper-parameters** (parameter length scale, budget length scale, noise) are chosen
  from a small grid by the marginal likelihood; the targets are standardised.

Pure numpy; no Optuna, Ray or torch (the searcher encodes trials with ``encode``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["QualityModel", "encode"]

_LENGTHS = (0.5, 1.0, 2.0, 4.0, 16.0)  # per parameter, in one-hot units (16: irrelevant)
_BUDGET_LENGTHS = (0.3, 1.0)  # over the budget share [0, 1]
_NOISES = (1e-3, 0.03, 0.1, 0.3)  # noise variance, as a share of the signal's


def encode(params: Sequence[Mapping[str, Any]], distributions: Mapping[str, Any]
           ) -> tuple[np.ndarray, np.ndarray]:
    """One row per parameter dict over ``distributions`` (name -> an Optuna-style
    distribution: ``choices`` for categoricals, else ``low``/``high``/``log``), and for
    each column the index of the parameter it encodes (the model gives each parameter
    its own length scale). A missing parameter sets its "absent" column; values outside a
    distribution are clipped."""
    cols: list[np.ndarray] = []
    groups: list[int] = []
    n = len(params)
    for g, name in enumerate(sorted(distributions)):
        width = sum(c.shape[1] for c in cols)
        d = distributions[name]
        absent = np.array([name not in p for p in params], dtype=float)
        choices = getattr(d, "choices", None)
        if choices is not None:
            block = np.zeros((n, len(choices)))
            for i, p in enumerate(params):
                if name in p and p[name] in choices:
                    block[i, list(choices).index(p[name])] = 1.0
            cols.append(block)
        else:
            lo, hi, log = float(d.low), float(d.high), bool(getattr(d, "log", False))
            def scale(v: float) -> float:
                v = min(max(float(v), lo), hi)
                if hi <= lo:
                    return 0.0
                if log:
                    return math.log(v / lo) / math.log(hi / lo)
                return (v - lo) / (hi - lo)
            cols.append(np.array([[scale(p[name]) if name in p else 0.0] for p in params]))
        cols.append(absent[:, None])  # always: rows encoded apart must share columns
        groups += [g] * (sum(c.shape[1] for c in cols) - width)
    return (np.hstack(cols) if cols else np.zeros((n, 0))), np.array(groups, dtype=int)


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2), 0.0)


class QualityModel:
    """GP regression of one quality value on (encoded parameters, budget share).

    ``groups`` (from ``encode``): the parameter of each column; each parameter gets its
    own length scale (automatic relevance determination: a parameter that does not move
    the quality gets a long one and stops separating configurations)."""

    def __init__(self, x: np.ndarray, groups: np.ndarray, budget: np.ndarray,
                 y: np.ndarray) -> None:
        x = np.asarray(x, dtype=float)
        b = np.asarray(budget, dtype=float).reshape(-1)
        y = np.asarray(y, dtype=float).reshape(-1)
        if not (len(x) == len(b) == len(y)) or len(y) < 2:
            raise ValueError("QualityModel needs >= 2 rows of equal length")
        self.x, self.b, self.groups = x, b, np.asarray(groups, dtype=int)
        # linear mean in the budget share (a single budget: a constant)
        design = np.column_stack([np.ones_like(b), b]) if np.ptp(b) > 0 else np.ones((len(b), 1))
        self.beta = np.linalg.lstsq(design, y, rcond=None)[0]
        r = y - design @ self.beta
        self.scale = float(r.std()) or 1.0
        self.r = r / self.scale
        n_groups = int(self.groups.max(initial=-1)) + 1
        # per parameter: its squared distances between the rows
        self._d = self._distances(x)
        self._db = (b[:, None] - b[None, :]) ** 2
        # coordinate ascent of the marginal likelihood over a grid per hyper-parameter
        theta: dict[str, Any] = {"ell": np.full(n_groups, 1.0), "ell_b": 1.0, "noise": 0.03}
        coords: list[tuple[str, int, Sequence[float]]] = [
            ("noise", -1, _NOISES), ("ell_b", -1, _BUDGET_LENGTHS),
            *[("ell", g, _LENGTHS) for g in range(n_groups)]]
        best = self._fit(theta)
        for _ in range(2):
            for key, g, grid in coords:
                for v in grid:
                    trial = {**theta, "ell": theta["ell"].copy()}
                    if g >= 0:
                        trial["ell"][g] = v
                    else:
                        trial[key] = v
                    fit = self._fit(trial)
                    if fit is not None and (best is None or fit[0] > best[0] + 1e-9):
                        best, theta = fit, trial
        if best is None:
            raise ValueError("QualityModel: no kernel could be fitted")
        self.theta = theta
        self._chol, self._alpha = best[1], best[2]

    def _distances(self, x: np.ndarray) -> np.ndarray:
        """[parameter, row of x, row of the data]: squared distances per parameter."""
        n_groups = int(self.groups.max(initial=-1)) + 1
        if not n_groups:
            return np.zeros((0, len(x), len(self.x)))
        return np.stack([_sqdist(x[:, self.groups == g], self.x[:, self.groups == g])
                         for g in range(n_groups)])

    def _kernel(self, d: np.ndarray, db: np.ndarray, theta: Mapping[str, Any]) -> np.ndarray:
        ell = np.asarray(theta["ell"], dtype=float)
        return np.exp(-np.tensordot(1.0 / (2 * ell ** 2), d, axes=1)
                      - db / (2 * theta["ell_b"] ** 2))

    def _fit(self, theta: Mapping[str, Any]) -> tuple[float, np.ndarray, np.ndarray] | None:
        k = self._kernel(self._d, self._db, theta)
        try:
            chol = np.linalg.cholesky(k + (theta["noise"] + 1e-9) * np.eye(len(self.r)))
        except np.linalg.LinAlgError:
            return None
        alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, self.r))
        return float(-0.5 * self.r @ alpha - np.log(np.diag(chol)).sum()), chol, alpha

    def _mean(self, b: np.ndarray) -> np.ndarray:
        return self.beta[0] + (self.beta[1] * b if len(self.beta) > 1 else 0.0)

    def predict(self, x: np.ndarray, budget: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of the quality at ``budget`` (share of the full
        budget) for each encoded row of ``x`` (the noise-free latent value)."""
        x = np.asarray(x, dtype=float)
        b = np.full(len(x), float(budget))
        d = self._distances(x)
        ks = self._kernel(d, (b[:, None] - self.b[None, :]) ** 2, self.theta)
        mu = ks @ self._alpha
        v = np.linalg.solve(self._chol, ks.T)
        var = np.maximum(1.0 - (v ** 2).sum(axis=0), 1e-12)
        return self._mean(b) + self.scale * mu, self.scale * np.sqrt(var)

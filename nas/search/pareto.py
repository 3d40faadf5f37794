"""The one Pareto front, hypervolume and full-budget filter of the project.

Used by the progress line and the end-of-search summary (``driver``), the early-stopping
scheduler (``scheduler``: non-dominated sorting), the report (``nas.report``), ``nas
export`` and anything else that asks "which trials are on the front, and how good is it".
It imports neither Optuna nor Ray: trials are read through their ``state``, ``values``,
``user_attrs`` and ``number`` attributes, directions may be Optuna enums or strings.

Definitions:

- **full-budget trial**: a COMPLETE trial with values whose user attribute ``full_budget``
  is true (a COMPLETE record without it counts, since only full-budget trials are
  COMPLETE by contract). Stopped trials' low-budget values never enter the front.
- **front**: every full-budget trial that no other full-budget trial dominates (no worse
  in every objective, strictly better in one). Trials with identical values are all on
  it, as in Optuna's ``study.best_trials`` and optuna-dashboard.
- **hypervolume**: the share of the study's *objective box* that the front dominates, a
  number in [0, 1] (``study_hypervolume``; the progress line's ``hypervolume``, the summary's and
  the report's hypervolume are this one number). The box runs, per objective, from a best
  to a worst bound, and its worst corner is the reference point:

  - recall-like objectives (``v2t_recall`` too): linear from 300 (R@1+R@5+R@10 all 100)
    down to 0, their natural bounds;
  - every minimised objective (costs, ranks): log scale (costs span orders of
    magnitude; a linear axis would give the whole cheap end of the front a sliver), from
    half the smallest to twice the largest value of any configuration the study has
    tried, trained or not (costs are known before training), or to the ``--max`` limit.

  So the reference point lies beyond every configuration the study contains, and a real
  front never has hypervolume 0. When a later trial is more extreme than all before it the
  box widens and the hypervolume is recomputed in the new box (the report's history uses
  the final box for every point, so the curve is comparable along the run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = ["ObjectiveBox", "direction_signs", "full_budget_trials", "hypervolume",
           "hypervolume_contributions", "hypervolume_history", "is_full_budget",
           "non_dominated_ranks", "objective_box", "pareto_front", "pareto_mask",
           "study_hypervolume", "to_losses"]

# Maximised objectives with a natural scale: R@1 + R@5 + R@10, each at most 100.
NATURAL_BOUNDS: dict[str, tuple[float, float]] = {"recall": (300.0, 0.0),
                                                  "v2t_recall": (300.0, 0.0)}
MARGIN = 2.0  # the box reaches this factor beyond the most extreme values seen


# ----------------------------------------------------------------------------- trials

def _state_name(trial: Any) -> str:
    state = getattr(trial, "state", None)
    return getattr(state, "name", str(state))


def is_full_budget(trial: Any) -> bool:
    """True for COMPLETE trials with values that reached the full budget."""
    if _state_name(trial) != "COMPLETE" or trial.values is None:
        return False
    return bool(trial.user_attrs.get("full_budget", True))


def _trials_of(source: Any) -> list[Any]:
    if hasattr(source, "get_trials"):
        return list(source.get_trials(deepcopy=False))
    return list(source)


def full_budget_trials(source: Any) -> list[Any]:
    """The full-budget trials of a study (or of a list of trials), by trial number."""
    return sorted((t for t in _trials_of(source) if is_full_budget(t)), key=lambda t: t.number)


# ----------------------------------------------------------------------------- dominance

def direction_signs(directions: Sequence[Any]) -> np.ndarray:
    """+1 for minimised objectives, -1 for maximised ones (Optuna enums or strings)."""
    signs = []
    for d in directions:
        name = getattr(d, "name", str(d)).lower()
        if name not in ("minimize", "maximize"):
            raise ValueError(f"unknown direction {d!r}; expected minimize or maximize")
        signs.append(1.0 if name == "minimize" else -1.0)
    return np.asarray(signs)


def to_losses(values: Any, directions: Sequence[Any]) -> np.ndarray:
    """Objective values [n, k] as losses (maximised objectives negated)."""
    v = np.asarray(values, dtype=float).reshape(-1, len(directions))
    return v * direction_signs(directions)


def non_dominated_ranks(losses: Any) -> np.ndarray:
    """Front index (0 = non-dominated) of each row of ``losses`` (minimisation)."""
    pts = np.asarray(losses, dtype=float)
    n = len(pts)
    if n == 0:
        return np.zeros(0, dtype=int)
    # dominated[i, j]: j dominates i (no worse everywhere, better somewhere).
    le = np.all(pts[None, :, :] <= pts[:, None, :], axis=2)
    lt = np.any(pts[None, :, :] < pts[:, None, :], axis=2)
    dominated = le & lt
    ranks = np.full(n, -1, dtype=int)
    remaining = np.ones(n, dtype=bool)
    r = 0
    while remaining.any():
        front = remaining & ~np.any(dominated & remaining[None, :], axis=1)
        ranks[front] = r
        remaining &= ~front
        r += 1
    return ranks


def pareto_mask(values: Any, directions: Sequence[Any]) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``values`` [n, k] (duplicates all kept)."""
    v = np.asarray(values, dtype=float).reshape(-1, len(directions))
    if len(v) == 0:
        return np.zeros(0, dtype=bool)
    return non_dominated_ranks(to_losses(v, directions)) == 0


def pareto_front(source: Any, directions: Sequence[Any] | None = None) -> list[Any]:
    """The front of a study (or of ``trials`` with ``directions``), best first in the
    first objective (ties: trial number)."""
    if directions is None:
        directions = source.directions
    full = full_budget_trials(source)
    if not full:
        return []
    mask = pareto_mask([t.values for t in full], directions)
    sign = direction_signs(directions)[0]
    return sorted((t for t, m in zip(full, mask) if m),
                  key=lambda t: (sign * t.values[0], t.number))


# ----------------------------------------------------------------------------- hypervolume

def hypervolume(losses: Any, reference: Sequence[float]) -> float:
    """Exact hypervolume dominated by ``losses`` [n, k] (minimisation) up to ``reference``.

    Points that do not strictly dominate the reference add nothing. Two objectives: a
    sweep; more: slices along the first objective, each a (k-1)-objective hypervolume.
    """
    ref = np.asarray(reference, dtype=float)
    pts = np.asarray(losses, dtype=float).reshape(-1, len(ref))
    pts = pts[np.all(pts < ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    if pts.shape[1] == 1:
        return float(ref[0] - pts[:, 0].min())
    if len(pts) > 1:
        pts = pts[non_dominated_ranks(pts) == 0]
    return _hv_below(pts, ref)


def _hv_below(pts: np.ndarray, ref: np.ndarray) -> float:
    """``hypervolume`` of points that all lie below ``ref`` (dominated ones may be among
    them: the sweep skips them, so the slices need no filtering of their own)."""
    pts = pts[np.lexsort(pts.T[::-1])]  # by the first objective, then the next ...
    if pts.shape[1] == 2:
        hv, best_y = 0.0, ref[1]
        for x, y in pts:
            if y < best_y:
                hv += (ref[0] - x) * (best_y - y)
                best_y = y
        return float(hv)
    total = 0.0
    for i in range(len(pts)):
        x_next = pts[i + 1, 0] if i + 1 < len(pts) else ref[0]
        if x_next > pts[i, 0]:
            total += (x_next - pts[i, 0]) * _hv_below(pts[: i + 1, 1:], ref[1:])
    return float(total)


def hypervolume_contributions(losses: Any, reference: Sequence[float]) -> np.ndarray:
    """Exclusive hypervolume of each row: what the set loses without it."""
    pts = np.asarray(losses, dtype=float)
    total = hypervolume(pts, reference)
    return np.array([total - hypervolume(np.delete(pts, i, axis=0), reference)
                     for i in range(len(pts))])


@dataclass(frozen=True)
class ObjectiveBox:
    """Per objective: best and worst bound and whether the axis is logarithmic.

    ``normalise`` maps objective values into the box: best -> 0, worst -> 1 (minimisation
    form); the reference point of the hypervolume is (1, ..., 1).
    """

    best: tuple[float, ...]
    worst: tuple[float, ...]
    log: tuple[bool, ...]

    def normalise(self, values: Any) -> np.ndarray:
        v = np.asarray(values, dtype=float).reshape(-1, len(self.best))
        out = np.empty_like(v)
        for j, (b, w, lg) in enumerate(zip(self.best, self.worst, self.log)):
            if lg:  # a value of 0 (below every positive bound) counts as the best
                out[:, j] = np.maximum(np.log(np.maximum(v[:, j], 1e-300) / b), 0.0) / \
                    math.log(w / b)
            else:
                out[:, j] = (v[:, j] - b) / (w - b)
        return out

    def hypervolume(self, values: Any) -> float:
        """Share of the box dominated by the points ``values`` [n, k] (in [0, 1])."""
        return hypervolume(self.normalise(values), [1.0] * len(self.best))


def _trial_value(trial: Any, name: str, index: int) -> float | None:
    """An objective's value for any trial: its recorded values, else its costs."""
    if trial.values is not None and index < len(trial.values):
        return float(trial.values[index])
    costs = trial.user_attrs.get("costs") or {}
    v = costs.get(name)
    return float(v) if isinstance(v, (int, float)) else None


def objective_box(trials: Iterable[Any], directions: Sequence[Any],
                  names: Sequence[str] | None, limits: Mapping[str, float] | None = None
                  ) -> ObjectiveBox | None:
    """The objective box of a study's trials (see the module docstring); None when an
    objective has no value yet."""
    names = list(names or [f"objective{i}" for i in range(len(directions))])
    signs = direction_signs(directions)
    trials = list(trials)
    best: list[float] = []
    worst: list[float] = []
    log: list[bool] = []
    for j, (name, sign) in enumerate(zip(names, signs)):
        if name in NATURAL_BOUNDS and sign < 0:
            b, w = NATURAL_BOUNDS[name]
            best.append(b)
            worst.append(w)
            log.append(False)
            continue
        seen = [v for v in (_trial_value(t, name, j) for t in trials)
                if v is not None and math.isfinite(v)]
        if sign < 0:  # a maximised objective without natural bounds: linear, from 0
            if not seen:
                return None
            best.append(MARGIN * max(max(seen), 1e-12))
            worst.append(0.0)
            log.append(False)
            continue
        seen = [v for v in seen if v > 0]
        if not seen:
            return None
        lo, hi = min(seen) / MARGIN, max(seen) * MARGIN
        if limits and name in limits and limits[name] > lo:
            hi = float(limits[name])
        best.append(lo)
        worst.append(hi)
        log.append(True)
    return ObjectiveBox(tuple(best), tuple(worst), tuple(log))


def _study_box(study: Any, trials: Sequence[Any]) -> ObjectiveBox | None:
    limits = (getattr(study, "user_attrs", None) or {}).get("limits") or {}
    return objective_box(trials, study.directions, study.metric_names, limits)


def study_hypervolume(study: Any, front: Sequence[Any] | None = None) -> float:
    """The study's hypervolume: share of its objective box dominated by the front."""
    trials = _trials_of(study)
    front = pareto_front(study) if front is None else list(front)
    box = _study_box(study, trials)
    if not front or box is None:
        return 0.0
    return box.hypervolume([t.values for t in front])


def hypervolume_history(study: Any) -> tuple[list[int], list[float]]:
    """(trial numbers, hypervolume) after each full-budget trial, in the final box."""
    trials = _trials_of(study)
    full = full_budget_trials(trials)
    box = _study_box(study, trials)
    if not full or box is None:
        return [], []
    norm = box.normalise([t.values for t in full])
    ref = [1.0] * norm.shape[1]
    return [t.number for t in full], [hypervolume(norm[: i + 1], ref) for i in range(len(full))]

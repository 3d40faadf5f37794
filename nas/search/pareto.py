"""The Pareto front of full-budget trials and its hypervolume.

Everything downstream (progress, summary, report, export) uses ``pareto_front``, which
only considers COMPLETE trials that reached the full budget: stopped trials' low-budget
values never enter the front.

Hypervolume reference point. It is fixed per study when the study is created and stored
in the study user attribute ``hv_reference`` (objective values in their own orientation):
quality objectives use their natural bound (recall 0, ranks the gallery size + 1), cost
objectives the user's ``--max`` limit when given, else twice the cost of the reference
configuration. A fixed point keeps hypervolumes comparable across the study's life; points
beyond it contribute nothing.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from nas.search.scheduler import non_dominated_ranks

__all__ = ["full_budget_trials", "pareto_front", "hypervolume", "study_hypervolume"]


def full_budget_trials(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials that reached the full budget (``full_budget`` user attr)."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("full_budget", True) and t.values is not None]


def _losses(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]) -> np.ndarray:
    sign = np.array([-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in directions])
    return np.array([t.values for t in trials], dtype=float).reshape(len(trials), -1) * sign


def pareto_front(study: optuna.Study) -> list[FrozenTrial]:
    """Non-dominated full-budget trials, sorted by the first objective (best first)."""
    trials = full_budget_trials(study)
    if not trials:
        return []
    losses = _losses(trials, study.directions)
    front = [t for t, r in zip(trials, non_dominated_ranks(losses)) if r == 0]
    # identical points: keep one per value vector (the earliest), as best_trials would not
    seen: set[tuple[float, ...]] = set()
    out = []
    for t in sorted(front, key=lambda t: t.number):
        key = tuple(t.values)
        if key not in seen:
            seen.add(key)
            out.append(t)
    first_max = study.directions[0] == StudyDirection.MAXIMIZE
    return sorted(out, key=lambda t: -t.values[0] if first_max else t.values[0])


def hypervolume(losses: np.ndarray, reference: Sequence[float]) -> float:
    """Hypervolume dominated by ``losses`` (minimisation) up to ``reference``."""
    ref = np.asarray(reference, dtype=float)
    pts = np.asarray(losses, dtype=float).reshape(-1, len(ref))
    pts = pts[np.all(pts < ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    if pts.shape[1] == 1:
        return float(ref[0] - pts[:, 0].min())
    if pts.shape[1] == 2:  # exact sweep
        pts = pts[np.argsort(pts[:, 0])]
        hv, best_y = 0.0, ref[1]
        for x, y in pts:
            if y < best_y:
                hv += (ref[0] - x) * (best_y - y)
                best_y = y
        return float(hv)
    from optuna._hypervolume import compute_hypervolume  # exact WFG for 3+ objectives
    pts = pts[non_dominated_ranks(pts) == 0]
    return float(compute_hypervolume(pts, ref))


def study_hypervolume(study: optuna.Study, trials: Sequence[FrozenTrial] | None = None) -> float:
    """Hypervolume of the study's full-budget front w.r.t. its stored reference point."""
    ref = study.user_attrs.get("hv_reference")
    if ref is None:
        return float("nan")
    trials = pareto_front(study) if trials is None else list(trials)
    if not trials:
        return 0.0
    sign = np.array([-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in study.directions])
    return hypervolume(_losses(trials, study.directions), np.asarray(ref, dtype=float) * sign)

"""Pick one configuration from a study's Pareto front and write it as a config file.

Pick policies (``--pick``):

- ``knee``: the front point farthest from the straight line between the front's two
  extremes, on the side of the utopia point, in normalised objective space (each objective
  scaled linearly to [0, 1] over the front, best -> 0). With one front point that point;
  with two, the one closer to the utopia point; on a concave front (no point on the utopia
  side) an extreme. With more than two objectives there is no single line between extremes,
  so the knee is the point closest (Euclidean) to the utopia point (0, ..., 0) after the
  same normalisation.
- ``best:OBJECTIVE``: the front trial best in that objective (ties: lowest trial number).
- ``under:OBJECTIVE<=VALUE`` (or ``>=``): among front trials that satisfy the bound, the
  one with the best value of the first maximised objective (recall by default).
- ``trial:N``: trial N, which must have reached the full budget (it need not be on the front).

Only full-budget trials can be exported: a stopped, failed or running trial is refused with
the reason. The file is written with ``nas.config.save_config_file`` (the format
``nas train --config`` reads), with a ``meta`` section naming the study, trial and values.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nas.config import FusionConfig, TrainConfig, config_key, save_config_file
from nas.errors import UserError
from nas.report.data import normalise
from nas.search.pareto import direction_signs, is_full_budget, pareto_front, to_losses
from nas.search.records import TrialStatus

__all__ = ["ExportError", "Pick", "choose_trial", "export_trial", "knee_index", "parse_pick",
           "refuse_reason"]


class ExportError(UserError):
    """A pick that cannot be satisfied, or a trial that cannot be exported."""


@dataclass(frozen=True)
class Pick:
    """A parsed ``--pick`` value."""

    kind: str  # knee | best | under | trial
    text: str  # as the user wrote it (for messages)
    objective: str | None = None
    op: str | None = None  # "<=" | ">=" (under)
    value: float | None = None
    number: int | None = None


_UNDER = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(<=|>=)\s*(.+?)\s*$")


def parse_pick(text: str) -> Pick:
    """Parse ``knee``, ``best:OBJ``, ``under:OBJ<=VALUE`` or ``trial:N``."""
    t = text.strip()
    kind, _, rest = t.partition(":")
    kind = kind.strip().lower()
    usage = "expected knee, best:OBJECTIVE, under:OBJECTIVE<=VALUE or trial:N"
    if kind == "knee" and not rest:
        return Pick("knee", t)
    if kind == "best" and rest.strip():
        return Pick("best", t, objective=rest.strip())
    if kind == "under":
        m = _UNDER.match(rest)
        if not m:
            raise ExportError(f"--pick {text!r}: {usage} (under needs OBJECTIVE<=VALUE)")
        try:
            value = float(m.group(3))
        except ValueError:
            raise ExportError(f"--pick {text!r}: {m.group(3)!r} is not a number") from None
        if not math.isfinite(value):
            raise ExportError(f"--pick {text!r}: the bound must be finite")
        return Pick("under", t, objective=m.group(1), op=m.group(2), value=value)
    if kind == "trial":
        try:
            n = int(rest.strip())
        except ValueError:
            raise ExportError(f"--pick {text!r}: {rest.strip()!r} is not a trial number") \
                from None
        return Pick("trial", t, number=n)
    raise ExportError(f"--pick {text!r}: {usage}")


# ---------------------------------------------------------------------------------
# pure selection on objective values
# ---------------------------------------------------------------------------------

def knee_index(values: np.ndarray, directions: Sequence[Any]) -> int:
    """Index of the knee among front points ``values`` [n, k] (see module docstring)."""
    loss = to_losses(values, directions)
    n, k = loss.shape
    if n == 0:
        raise ValueError("empty front")
    norm = normalise(loss, loss.min(axis=0), loss.max(axis=0))
    if n <= 2 or k != 2:
        return int(np.argmin(np.linalg.norm(norm, axis=1)))
    a = norm[np.argmin(norm[:, 0])]  # best in objective 0
    b = norm[np.argmin(norm[:, 1])]  # best in objective 1
    d = b - a
    length = float(np.hypot(*d))
    if length == 0:
        return int(np.argmin(np.linalg.norm(norm, axis=1)))
    # signed distance to the line through a and b, positive on the utopia (origin) side: a
    # convex front bulges towards utopia and its knee is the deepest bulge; on a concave
    # front every inner point is on the far side and an extreme (distance 0) wins
    cross = d[0] * (norm[:, 1] - a[1]) - d[1] * (norm[:, 0] - a[0])
    side = np.sign(d[0] * (0.0 - a[1]) - d[1] * (0.0 - a[0])) or 1.0
    return int(np.argmax(side * cross / length))


# ---------------------------------------------------------------------------------
# study-level selection
# ---------------------------------------------------------------------------------

def refuse_reason(trial: Any, full_budget: Any = None) -> str | None:
    """Why ``trial`` cannot be exported, or None when it reached the full budget."""
    if is_full_budget(trial):
        return None
    ua = trial.user_attrs
    status = str(ua.get("status", trial.state.name.lower()))
    budget = ua.get("budget")
    full = full_budget if full_budget is not None else ua.get("full_budget_epochs")
    if status == TrialStatus.STOPPED or trial.state.name == "PRUNED":
        where = (f" at {budget:g} of {float(full):g} epochs" if budget is not None and full
                 is not None else (f" at {budget:g} epochs" if budget is not None else ""))
        why = f"was stopped{where} (status {status})"
    elif status in (TrialStatus.FAILED, TrialStatus.INFEASIBLE, TrialStatus.DUPLICATE) or \
            trial.state.name == "FAIL":
        reason = ua.get("fail_reason")
        why = f"did not complete (status {status}{': ' + str(reason) if reason else ''})"
    else:
        why = f"has not finished (state {trial.state.name.lower()}, status {status})"
    return f"trial {trial.number} {why}; only full-budget trials can be exported"


def _objective_index(study: Any, name: str, pick: Pick) -> int:
    names = list(study.metric_names or [])
    if name not in names:
        raise ExportError(f"--pick {pick.text!r}: unknown objective {name!r}; this study's "
                          f"objectives are {names}")
    return names.index(name)


def _front(study: Any) -> list[Any]:
    front = pareto_front(study)
    if not front:
        raise ExportError(f"study {study.study_name!r} has no trial that reached the full "
                          "budget; nothing can be exported yet")
    return front


def choose_trial(study: Any, pick: Pick | str) -> Any:
    """The FrozenTrial selected by ``pick`` (raises ExportError when none qualifies)."""
    if isinstance(pick, str):
        pick = parse_pick(pick)
    if pick.kind == "trial":
        match = [t for t in study.get_trials(deepcopy=False) if t.number == pick.number]
        if not match:
            raise ExportError(f"--pick {pick.text!r}: study {study.study_name!r} has no trial "
                              f"{pick.number}")
        reason = refuse_reason(match[0], study.user_attrs.get("full_budget"))
        if reason:
            raise ExportError(reason)
        return match[0]
    front = _front(study)
    vals = np.asarray([t.values for t in front], dtype=float)
    signs = direction_signs(study.directions)
    if pick.kind == "knee":
        return front[knee_index(vals, study.directions)]
    assert pick.objective is not None
    i = _objective_index(study, pick.objective, pick)
    if pick.kind == "best":
        return min(front, key=lambda t: (signs[i] * t.values[i], t.number))
    # under: the bound, then the best of the first maximised objective
    ok = [t for t in front
          if (t.values[i] <= pick.value if pick.op == "<=" else t.values[i] >= pick.value)]
    if not ok:
        rng = f"{vals[:, i].min():g}..{vals[:, i].max():g}"
        raise ExportError(f"--pick {pick.text!r}: no Pareto-front trial has {pick.objective} "
                          f"{pick.op} {pick.value:g} (front values of {pick.objective}: {rng})")
    target = next((j for j, s in enumerate(signs) if s < 0), 0)
    return min(ok, key=lambda t: (signs[target] * t.values[target], t.number))


def export_trial(study: Any, trial: Any, out: str | Path) -> Path:
    """Write the trial's FusionConfig and TrainConfig (and a meta section) to ``out``."""
    reason = refuse_reason(trial, study.user_attrs.get("full_budget"))
    if reason:
        raise ExportError(reason)
    ua = trial.user_attrs
    if "fusion" not in ua:
        raise ExportError(f"trial {trial.number} has no 'fusion' user attribute; was the "
                          "study written by nas search?")
    src = f"study {study.study_name!r} trial {trial.number}"
    fusion = FusionConfig.from_dict(ua["fusion"], source=f"{src} [fusion]")
    train = TrainConfig.from_dict(ua.get("train") or study.user_attrs.get("train_config"),
                                  source=f"{src} [train]")
    names = list(study.metric_names or [f"objective_{i}" for i in range(len(trial.values))])
    meta = {
        "study": study.study_name,
        "trial": trial.number,
        # the configuration's id (architecture + training; what the front table shows and
        # `nas train` names runs/ after) and the architecture's own
        "config_id": config_key(fusion, train),
        "fusion_id": fusion.fusion_id,
        "values": {n: float(v) for n, v in zip(names, trial.values)},
    }
    if study.user_attrs.get("data") is not None:
        meta["data"] = study.user_attrs["data"]
    return save_config_file(out, fusion, train, meta)

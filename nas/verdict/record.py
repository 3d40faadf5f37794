"""Where verdict runs are recorded: a companion Optuna study ``<study>:verdict``.

One trial per finished run, written in one transaction (``Study.add_trial``: a COMPLETE
trial with its values and attributes, or a FAIL trial with ``fail_reason``), so a crash
never leaves half a record and optuna-dashboard shows every run beside the search. The
companion has the study's objectives (names and directions). Trial user attributes:

- ``verdict_key`` (the run's key: config, seed, data, rungs), ``role`` (base | variant),
  ``variant``, ``action`` (add | remove), ``seed``, ``point`` (the front trial it was
  planned around), ``fusion_id`` (FusionConfig id), ``fusion``, ``train``,
  ``metrics``, ``costs``, ``wall_s``, ``status`` (complete | failed), ``fail_reason``.

A rerun reads the keys already recorded and trains only the others; runs whose worker was
lost (not a training error) are not recorded and so are retried.
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping

import optuna
from optuna.trial import FrozenTrial, TrialState, create_trial

from nas._io import json_safe
from nas.search.records import TrialStatus
from nas.verdict.jobs import Job

__all__ = ["SUFFIX", "companion_name", "open_companion", "recorded", "record"]

SUFFIX = ":verdict"


def companion_name(study_name: str) -> str:
    return study_name + SUFFIX


def open_companion(study: optuna.Study, storage: Any) -> optuna.Study:
    """Load or create ``<study>:verdict`` in the same storage, with the study's objectives."""
    name = companion_name(study.study_name)
    directions = list(study.directions)
    try:
        comp = optuna.create_study(study_name=name, storage=storage, directions=directions)
    except optuna.exceptions.DuplicatedStudyError:
        comp = optuna.load_study(study_name=name, storage=storage)
    if study.metric_names and comp.metric_names != study.metric_names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            comp.set_metric_names(list(study.metric_names))
    if comp.user_attrs.get("verdict_of") != study.study_name:
        comp.set_user_attr("verdict_of", study.study_name)
    return comp


def recorded(comp: optuna.Study) -> dict[str, FrozenTrial]:
    """Finished runs by key (the first record of a key wins)."""
    out: dict[str, FrozenTrial] = {}
    for t in comp.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        key = t.user_attrs.get("verdict_key")
        if key and key not in out:
            out[key] = t
    return out


def record(comp: optuna.Study, job: Job, outcome: Mapping[str, Any], point: int,
           objectives: list[str]) -> FrozenTrial:
    """Record one finished run as one trial (one transaction)."""
    attrs = {"verdict_key": job.key, "role": job.role, "variant": job.variant,
             "action": job.action, "seed": job.seed, "point": point,
             "fusion_id": _fusion_id(job.fusion), "fusion": job.fusion, "train": job.train,
             "metrics": outcome.get("metrics", {}), "costs": outcome.get("costs", {}),
             "wall_s": float(outcome.get("wall_s", 0.0))}
    if outcome.get("error"):
        attrs.update(status=TrialStatus.FAILED.value, fail_reason=str(outcome["error"]))
        trial = create_trial(state=TrialState.FAIL, user_attrs=json_safe(attrs))
    else:
        attrs["status"] = TrialStatus.COMPLETE.value
        trial = create_trial(state=TrialState.COMPLETE,
                             values=[float(outcome["values"][o]) for o in objectives],
                             user_attrs=json_safe(attrs))
    comp.add_trial(trial)
    return trial


def _fusion_id(fusion: Mapping[str, Any]) -> str:
    from nas.config import FusionConfig

    return FusionConfig.from_dict(fusion).fusion_id

"""Claims and orphan recovery: how several drivers share one study's ``--trials``.

A sampled configuration is *claimed* by writing ``status=running`` on its trial, and only
then are the other trials read (``check_claim``): a claimed trial that sees another
trained-or-claimed trial with its config id yields (``duplicate``), and one that sees
more than ``--trials`` trained-or-claimed trials yields (``surplus``: FAIL, not counted;
an enqueued configuration is re-enqueued). Since every driver writes its claim before it
reads, of two racing claims at least one sees the other: the total never exceeds
``--trials`` and no configuration is trained twice (at worst both yield and ask again).

A trial that did not finish (its driver crashed, Ctrl-C, the time budget) is re-queued
(``requeue``): its configuration is enqueued again, then the trial is marked FAIL.
"""

from __future__ import annotations

from typing import Any, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.search import _optuna, records
from nas.search.faults import faultpoint
from nas.search.records import TrialStatus

__all__ = ["check_claim", "enqueue_again", "requeue"]


def check_claim(study: optuna.Study, trial_id: int, number: int, config_id: str,
                n_trials: int, trials: Sequence[FrozenTrial]) -> TrialStatus | None:
    """After claiming trial ``number`` (``trials``: the study read after the claim): None
    when it may train; otherwise the status it was recorded FAIL with here (duplicate or
    surplus)."""
    dup_of = min((t.number for t in trials if t.number != number
                  and t.user_attrs.get("config_id") == config_id and records.is_claimed(t)),
                 default=None)
    if dup_of is not None:
        # Not trained again. Recorded as FAIL/duplicate pointing at the original (whose
        # results stand); not shown to the sampler (no learning values), not counted.
        records.write_final(study, trial_id, TrialState.FAIL, attrs={
            "status": TrialStatus.DUPLICATE, "duplicate_of": dup_of,
            "fail_reason": f"same configuration as trial {dup_of}"})
        return TrialStatus.DUPLICATE
    if records.claimed(trials) > n_trials:
        # Another driver took the last slot at the same time: yield it. An enqueued
        # configuration (warm start, re-queued crash) goes back into the queue.
        frozen = _optuna.storage_of(study).get_trial(trial_id)
        if "fixed_params" in frozen.system_attrs:
            enqueue_again(study, frozen)
        records.write_final(study, trial_id, TrialState.FAIL, attrs={
            "status": TrialStatus.SURPLUS,
            "fail_reason": f"--trials {n_trials} reached by other drivers"})
        return TrialStatus.SURPLUS
    return None


def _requeue_params(t: FrozenTrial) -> dict[str, Any] | None:
    """The parameters to train again for an unfinished trial, or None (nothing to redo).

    An enqueued trial keeps its full parameters in ``fixed_params``; a sampled one has
    complete ``params`` once its config id (or any status) is written. A sampled trial
    killed before that (mid-sampling) trained nothing and its partial parameters mean
    nothing.
    """
    if "fixed_params" in t.system_attrs:
        return dict(t.system_attrs["fixed_params"])
    if t.user_attrs.get("config_id") or t.user_attrs.get("status"):
        return dict(t.params)
    return None


def enqueue_again(study: optuna.Study, t: FrozenTrial) -> bool:
    """Enqueue ``t``'s parameters once (idempotent: a crash-and-retry re-queues once)."""
    params = _requeue_params(t)
    if params is None:
        return False
    if any(x.user_attrs.get("requeued_from") == t.number
           for x in study.get_trials(deepcopy=False)):
        return True
    attrs: dict[str, Any] = {"requeued_from": t.number}
    if "warm_start" in t.user_attrs:
        attrs["warm_start"] = t.user_attrs["warm_start"]
    study.enqueue_trial(params, user_attrs=attrs)
    return True


def requeue(study: optuna.Study, t: FrozenTrial, reason: str, status: TrialStatus) -> None:
    """Enqueue the trial's configuration again, then mark the trial FAIL with ``reason``.

    In this order so that a crash in between leaves the trial RUNNING (recovered again
    next time; the enqueue is idempotent), never a FAIL trial whose configuration was
    not re-queued.
    """
    if t.state != TrialState.RUNNING:
        return  # finished meanwhile: another driver recovered (and re-queued) it
    requeued = enqueue_again(study, t)
    faultpoint("during_requeue")
    if not requeued:
        reason = f"{reason} (before its configuration was sampled; nothing to re-queue)"
    try:
        records.write_final(study, _optuna.trial_id(study, t), TrialState.FAIL,
                            attrs={"status": status, "fail_reason": reason})
    except optuna.exceptions.UpdateFinishedTrialError:
        pass  # another driver recovered it at the same moment; the enqueue is idempotent

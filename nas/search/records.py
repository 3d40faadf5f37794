"""How trial results are written into the study (docs/ARCHITECTURE.md "Study records").

Only the driver calls these. States: COMPLETE only for full-budget trials; stopped trials
are PRUNED; failed, infeasible and duplicate trials are FAIL with ``status`` and
``fail_reason`` saying which. Intermediate values (step = rung index, value = recall) go
through the storage API, because ``Trial.report`` refuses multi-objective studies while
the storage itself accepts them.

What the sampler learns from (see ``sampler.LearningSampler``) is kept apart in system
attributes: ``nas:learn_values`` (objective values to present for a stopped or infeasible
trial) and Optuna's own ``constraints`` key (cost-limit violations).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.search.faults import faultpoint
from nas.search.storage import retrying

__all__ = ["LEARN_KEY", "CONSTRAINTS_KEY", "STATUS", "set_attrs", "record_rung",
           "set_learning", "tell", "trained_config_ids", "counted", "TRAINED_STATUSES",
           "RUNNING_STATUS", "claimed", "is_claimed", "write_final", "learning_attrs"]

LEARN_KEY = "nas:learn_values"
CONSTRAINTS_KEY = "constraints"  # optuna.study._constrained_optimization._CONSTRAINTS_KEY
STATUS = ("complete", "stopped", "failed", "infeasible", "duplicate", "crashed",
          "interrupted", "surplus")
# Trials that consumed training: they count toward --trials and block re-training the
# same config id. ("crashed"/"interrupted" trials are re-queued, so they do not.)
TRAINED_STATUSES = ("complete", "stopped", "failed")
# A trial claimed for training and still RUNNING (see ``AskTellSearcher``): it counts
# toward --trials and blocks its config id, for every driver of the study.
RUNNING_STATUS = "running"


def _jsonable(v: Any) -> Any:
    """Replace non-finite floats (which JSON cannot hold) by None, recursively."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "item") and callable(v.item):  # numpy scalar
        return _jsonable(v.item())
    return v


def _rdb(study: optuna.Study) -> Any:
    """The study's RDB storage when it offers the ``*_without_commit`` helpers, else None."""
    backend = getattr(study._storage, "_backend", study._storage)
    if isinstance(backend, optuna.storages.RDBStorage) and hasattr(
            backend, "_set_trial_attr_without_commit") and hasattr(
            backend, "_set_trial_intermediate_value_without_commit"):
        return backend
    return None


def set_attrs(study: optuna.Study, trial_id: int, **attrs: Any) -> None:
    """Set user attributes of a trial through the storage (JSON-safe values), in one
    transaction: one commit (an fsync on SQLite) per call, not one per attribute, since
    the driver writes several per trial and rung on the critical path between trials."""
    _write(study, trial_id, None, {k: _jsonable(v) for k, v in attrs.items()})


def record_rung(study: optuna.Study, trial_id: int, rung: int, recall: float,
                **attrs: Any) -> None:
    """Store the intermediate value of one rung (step = rung index, value = recall) and,
    in the same transaction, user attributes ``attrs``."""
    value = float(recall)
    if not math.isfinite(value):
        value = float("nan")  # the storage keeps NaN; inf would be clipped
    _write(study, trial_id, (rung, value), {k: _jsonable(v) for k, v in attrs.items()})


def _write(study: optuna.Study, trial_id: int, step_value: tuple[int, float] | None,
           attrs: Mapping[str, Any]) -> None:
    backend = _rdb(study)
    if backend is None:  # other storages: one call each, in order
        if step_value is not None:
            study._storage.set_trial_intermediate_value(trial_id, *step_value)
        for k, v in attrs.items():
            study._storage.set_trial_user_attr(trial_id, k, v)
        return
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    def transaction() -> None:  # retried as a whole through a database restart
        with _create_scoped_session(backend.scoped_session, True) as session:
            if step_value is not None:
                backend._set_trial_intermediate_value_without_commit(session, trial_id,
                                                                     *step_value)
            for k, v in attrs.items():
                backend._set_trial_attr_without_commit(
                    session, models.TrialUserAttributeModel, trial_id, k, v)

    retrying(study, transaction)


def set_learning(study: optuna.Study, trial_id: int, values: Sequence[float] | None,
                 constraints: Mapping[str, float] | None) -> None:
    """Store what the sampler learns from a trial that is not COMPLETE, and its constraints.

    Constraints use Optuna 5's per-name format (``constraints:<name>``, what
    ``Trial.set_constraint`` writes): value > 0 = violated. TPE, NSGA-II and GP read them
    from every trial without a ``constraints_func``.
    """
    if values is not None:
        study._storage.set_trial_system_attr(trial_id, LEARN_KEY, [float(v) for v in values])
    for name, c in (constraints or {}).items():
        study._storage.set_trial_system_attr(trial_id, f"{CONSTRAINTS_KEY}:{name}", float(c))


def learning_attrs(values: Sequence[float] | None,
                   constraints: Mapping[str, float] | None) -> dict[str, Any]:
    """The system attrs ``set_learning`` writes, as a dict (for ``write_final``)."""
    out: dict[str, Any] = {}
    if values is not None:
        out[LEARN_KEY] = [float(v) for v in values]
    for name, c in (constraints or {}).items():
        out[f"{CONSTRAINTS_KEY}:{name}"] = float(c)
    return out


def tell(study: optuna.Study, number: int, state: TrialState,
         values: Sequence[float] | None = None) -> None:
    """Finish a trial. ``study.tell`` calls the sampler's ``after_trial`` as it should."""
    if state == TrialState.COMPLETE:
        study.tell(number, list(values or []), state=state)
    else:
        study.tell(number, state=state)


def counted(trials: Sequence[FrozenTrial]) -> int:
    """Trials that count toward --trials: those that trained (complete/stopped/failed)."""
    return sum(t.user_attrs.get("status") in TRAINED_STATUSES for t in trials)


def is_claimed(t: FrozenTrial) -> bool:
    """Trained, or claimed for training and still running (by any driver)."""
    status = t.user_attrs.get("status")
    return status in TRAINED_STATUSES or (status == RUNNING_STATUS
                                          and t.state == TrialState.RUNNING)


def claimed(trials: Sequence[FrozenTrial]) -> int:
    """Trials that hold a slot of --trials: trained ones plus running claimed ones."""
    return sum(is_claimed(t) for t in trials)


def trained_config_ids(trials: Sequence[FrozenTrial]) -> dict[str, int]:
    """config id -> number of the first trial that trained it."""
    out: dict[str, int] = {}
    for t in trials:
        cid = t.user_attrs.get("config_id")
        if cid and t.user_attrs.get("status") in TRAINED_STATUSES and cid not in out:
            out[cid] = t.number
    return out


def write_final(study: optuna.Study, trial_id: int, state: TrialState,
                values: Sequence[float] | None = None,
                attrs: Mapping[str, Any] | None = None,
                system_attrs: Mapping[str, Any] | None = None) -> None:
    """Finish a trial: its user attrs, system attrs, values and state in ONE transaction.

    A crash anywhere before the commit leaves the trial RUNNING without any of these
    writes (the next driver recovers and re-queues it); a crash after it leaves the full
    record. Never a COMPLETE trial without its attributes. Uses the RDB storage's own
    ``*_without_commit`` helpers inside one session (the same ones its public methods
    use); other storages get the ordered fallback: attributes first, state last, so a
    crash in between still leaves a RUNNING trial. The sampler's ``after_trial`` is called
    first, as ``Study.tell`` does. Through a database outage the transaction is retried
    as a whole (``storage.retrying``): written once or not at all.
    """
    attrs = {k: _jsonable(v) for k, v in (attrs or {}).items()}
    system_attrs = {k: _jsonable(v) for k, v in (system_attrs or {}).items()}
    vals = None if values is None else [float(v) for v in values]
    frozen = study._storage.get_trial(trial_id)
    study.sampler.after_trial(study, frozen, state, vals)
    backend = getattr(study._storage, "_backend", study._storage)
    if isinstance(backend, optuna.storages.RDBStorage) and hasattr(
            backend, "_set_trial_attr_without_commit"):
        from datetime import datetime

        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        def transaction() -> None:  # all or nothing, so it is safe to retry as a whole
            with _create_scoped_session(backend.scoped_session) as session:
                row = models.TrialModel.find_or_raise_by_id(trial_id, session,
                                                            for_update=True)
                backend.check_trial_is_updatable(trial_id, row.state)
                for k, v in attrs.items():
                    backend._set_trial_attr_without_commit(
                        session, models.TrialUserAttributeModel, trial_id, k, v)
                for k, v in system_attrs.items():
                    backend._set_trial_attr_without_commit(
                        session, models.TrialSystemAttributeModel, trial_id, k, v)
                faultpoint("mid_record")  # test hook: a crash here must roll all back
                for i, v in enumerate(vals or []):
                    backend._set_trial_value_without_commit(session, row, i, v)
                row.state = state
                row.datetime_complete = datetime.now()

        retrying(study, transaction)
        return
    for k, v in attrs.items():
        study._storage.set_trial_user_attr(trial_id, k, v)
    for k, v in system_attrs.items():
        study._storage.set_trial_system_attr(trial_id, k, v)
    faultpoint("mid_record")
    study._storage.set_trial_state_values(trial_id, state, vals)

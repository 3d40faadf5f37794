"""The study's trial records, typed, read and written in this one module
(docs/ARCHITECTURE.md "Study records").

A trial's record is its Optuna state and values plus user attributes; ``TrialRecord``
is that record as one typed object (``TrialRecord.of(frozen_trial)``), ``TrialStatus``
the ``status`` attribute (the stored strings are the enum's values, unchanged, so older
studies, the report and optuna-dashboard read them as before). Writes go through
``set_attrs``/``record_rung``/``write_final``, which accept only the attribute names
``TrialRecord`` declares.

Only the driver writes. States: COMPLETE only for full-budget trials; stopped trials are
PRUNED; failed, infeasible and duplicate trials are FAIL with ``status`` and
``fail_reason`` saying which. Intermediate values (step = rung index, value = recall) go
through the storage API, because ``Trial.report`` refuses multi-objective studies while
the storage itself accepts them.

What the sampler learns from (see ``sampler.LearningSampler``) is kept apart in system
attributes: ``nas:learn_values`` (objective values to present for a stopped or infeasible
trial) and Optuna's own constraint keys (cost-limit violations).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.search import _optuna
from nas.search.faults import faultpoint
from nas.search.storage import retrying

__all__ = ["LEARN_KEY", "STATUS", "TrialRecord", "TrialStatus", "USER_ATTRS",
           "set_attrs", "record_rung", "set_learning", "tell", "trained_config_ids",
           "counted", "TRAINED_STATUSES", "RUNNING_STATUS", "claimed", "is_claimed",
           "status_of", "write_final", "learning_attrs"]

LEARN_KEY = "nas:learn_values"


class TrialStatus(str, Enum):
    """A trial's ``status`` user attribute (the value is what is stored)."""

    COMPLETE = "complete"  # full budget: COMPLETE with objective values
    STOPPED = "stopped"  # stopped early by MO-ASHA: PRUNED
    FAILED = "failed"  # training raised or the worker was lost: FAIL
    INFEASIBLE = "infeasible"  # invalid or over a cost limit, never trained: FAIL
    DUPLICATE = "duplicate"  # its config id was already trained or claimed: FAIL
    CRASHED = "crashed"  # its driver died while it ran: FAIL, re-queued
    INTERRUPTED = "interrupted"  # Ctrl-C, the time budget or a fault ended it: FAIL, re-queued
    SURPLUS = "surplus"  # other drivers filled --trials first: FAIL, not counted
    RUNNING = "running"  # claimed for training and still RUNNING

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def trained(self) -> bool:
        """It consumed training: counts toward --trials and blocks its config id."""
        return self in TRAINED_STATUSES

    @classmethod
    def parse(cls, value: Any) -> "TrialStatus | None":
        """The status of a stored string; None for a missing or unknown one."""
        return _BY_VALUE.get(value) if isinstance(value, str) else None


_BY_VALUE = {s.value: s for s in TrialStatus}
# The statuses of finished trials (the progress line counts them).
STATUS = (TrialStatus.COMPLETE, TrialStatus.STOPPED, TrialStatus.FAILED,
          TrialStatus.INFEASIBLE, TrialStatus.DUPLICATE, TrialStatus.CRASHED,
          TrialStatus.INTERRUPTED, TrialStatus.SURPLUS)
# Trials that consumed training: they count toward --trials and block re-training the
# same config id. ("crashed"/"interrupted" trials are re-queued, so they do not.)
TRAINED_STATUSES = (TrialStatus.COMPLETE, TrialStatus.STOPPED, TrialStatus.FAILED)
# A trial claimed for training and still RUNNING (see ``AskTellSearcher``): it counts
# toward --trials and blocks its config id, for every driver of the study.
RUNNING_STATUS = TrialStatus.RUNNING


@dataclass(frozen=True)
class TrialRecord:
    """Everything the search records about one trial, typed.

    ``number``, ``state``, ``values`` and ``params`` are Optuna's; every other field is a
    user attribute of the same name (None/empty when not written). ``learn_values`` is the
    ``nas:learn_values`` system attribute.
    """

    number: int
    state: TrialState
    values: tuple[float, ...] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    status: TrialStatus | None = None
    config_id: str | None = None  # nas.config.config_key(fusion, train): the dedupe unit
    fusion_id: str | None = None  # FusionConfig.fusion_id: the architecture
    fusion: Mapping[str, Any] | None = None  # FusionConfig.to_dict()
    train: Mapping[str, Any] | None = None  # TrainConfig.to_dict()
    costs: Mapping[str, float] | None = None
    metrics: Mapping[str, float] | None = None  # at the budget reached
    rung_epochs: Sequence[float] | None = None
    budget: float | None = None  # epochs reached
    full_budget: bool | None = None
    gates: Mapping[str, Any] | None = None  # gate statistics (full-budget trials)
    fail_reason: str | None = None
    warm_start: str | None = None  # label of an enqueued warm-start configuration
    design: str | None = None  # "cost spread": a start-up trial chosen by its exact costs
    duplicate_of: int | None = None  # trial number
    requeued_from: int | None = None  # trial number
    node_id: str | None = None
    wall_s: float | None = None
    retries: int | None = None  # worker restarts used
    learn_values: tuple[float, ...] | None = None

    @classmethod
    def of(cls, t: FrozenTrial) -> "TrialRecord":
        """The record of a stored trial."""
        ua = t.user_attrs
        kw = {k: ua[k] for k in USER_ATTRS if k in ua and k != "status"}
        learn = t.system_attrs.get(LEARN_KEY)
        return cls(number=t.number, state=t.state,
                   values=None if t.values is None else tuple(t.values),
                   params=dict(t.params), status=status_of(t),
                   learn_values=None if learn is None else tuple(learn), **kw)

    @property
    def trained(self) -> bool:
        """It consumed training (complete, stopped or failed)."""
        return self.status is not None and self.status.trained

    @property
    def claimed(self) -> bool:
        """Trained, or claimed for training and still running (by any driver)."""
        return self.trained or (self.status == TrialStatus.RUNNING
                                and self.state == TrialState.RUNNING)


# The user attributes a trial record holds (TrialRecord's fields minus Optuna's own).
USER_ATTRS = frozenset(f.name for f in dataclasses.fields(TrialRecord)) - {
    "number", "state", "values", "params", "learn_values"}


def status_of(t: FrozenTrial) -> TrialStatus | None:
    """A stored trial's status (None: not written, or unknown to this version)."""
    return TrialStatus.parse(t.user_attrs.get("status"))


def _checked(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """``attrs`` JSON-safe, after checking each is a ``TrialRecord`` user attribute."""
    unknown = sorted(set(attrs) - USER_ATTRS)
    if unknown:
        raise TypeError(f"not a trial record attribute: {', '.join(unknown)} "
                        "(add it to nas.search.records.TrialRecord)")
    return {k: _jsonable(v) for k, v in attrs.items()}


def _jsonable(v: Any) -> Any:
    """Replace non-finite floats (which JSON cannot hold) by None, recursively."""
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "item") and callable(v.item):  # numpy scalar
        return _jsonable(v.item())
    return v


def set_attrs(study: optuna.Study, trial_id: int, **attrs: Any) -> None:
    """Set user attributes of a trial through the storage (JSON-safe values), in one
    transaction: one commit (an fsync on SQLite) per call, not one per attribute, since
    the driver writes several per trial and rung on the critical path between trials."""
    _write(study, trial_id, None, _checked(attrs))


def record_rung(study: optuna.Study, trial_id: int, rung: int, recall: float,
                **attrs: Any) -> None:
    """Store the intermediate value of one rung (step = rung index, value = recall) and,
    in the same transaction, user attributes ``attrs``."""
    value = float(recall)
    if not math.isfinite(value):
        value = float("nan")  # the storage keeps NaN; inf would be clipped
    _write(study, trial_id, (rung, value), _checked(attrs))


def _write(study: optuna.Study, trial_id: int, step_value: tuple[int, float] | None,
           attrs: Mapping[str, Any]) -> None:
    storage = _optuna.storage_of(study)
    backend = _optuna.rdb_backend(storage)
    if backend is None:  # other storages: one call each, in order
        if step_value is not None:
            storage.set_trial_intermediate_value(trial_id, *step_value)
        for k, v in attrs.items():
            storage.set_trial_user_attr(trial_id, k, v)
        return
    # retried as a whole through a database restart
    retrying(study, _optuna.rung_transaction(backend, trial_id, step_value, attrs))


def set_learning(study: optuna.Study, trial_id: int, values: Sequence[float] | None,
                 constraints: Mapping[str, float] | None) -> None:
    """Store what the sampler learns from a trial that is not COMPLETE, and its constraints.

    Constraints use Optuna 5's per-name format (``constraints:<name>``, what
    ``Trial.set_constraint`` writes): value > 0 = violated. TPE, NSGA-II and GP read them
    from every trial without a ``constraints_func``.
    """
    storage = _optuna.storage_of(study)
    for k, v in learning_attrs(values, constraints).items():
        storage.set_trial_system_attr(trial_id, k, v)


def learning_attrs(values: Sequence[float] | None,
                   constraints: Mapping[str, float] | None) -> dict[str, Any]:
    """The system attrs ``set_learning`` writes, as a dict (for ``write_final``)."""
    out: dict[str, Any] = {}
    if values is not None:
        out[LEARN_KEY] = [float(v) for v in values]
    for name, c in (constraints or {}).items():
        out[_optuna.constraint_key(name)] = float(c)
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
    # The stored string against the enum (str-equal): as fast as before the enum.
    return sum(t.user_attrs.get("status") in TRAINED_STATUSES for t in trials)


def is_claimed(t: FrozenTrial) -> bool:
    """Trained, or claimed for training and still running (by any driver)."""
    status = t.user_attrs.get("status")
    return status in TRAINED_STATUSES or (status == TrialStatus.RUNNING
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
    helpers inside one session (``_optuna.final_record_transaction``); other storages
    get the ordered fallback: attributes first, state last, so a crash in between
    still leaves a RUNNING trial. The sampler's ``after_trial`` is called first, as
    ``Study.tell`` does. Through a database outage the transaction is retried as a
    whole (``storage.retrying``): written once or not at all.
    """
    attrs = _checked(attrs or {})
    system_attrs = {k: _jsonable(v) for k, v in (system_attrs or {}).items()}
    vals = None if values is None else [float(v) for v in values]
    storage = _optuna.storage_of(study)
    frozen = storage.get_trial(trial_id)
    study.sampler.after_trial(study, frozen, state, vals)
    backend = _optuna.rdb_backend(storage)
    if backend is not None:  # all or nothing, so it is safe to retry as a whole
        retrying(study, _optuna.final_record_transaction(
            backend, trial_id, state, vals, attrs, system_attrs,
            before_state=lambda: faultpoint("mid_record")))  # a crash there rolls all back
        return
    for k, v in attrs.items():
        storage.set_trial_user_attr(trial_id, k, v)
    for k, v in system_attrs.items():
        storage.set_trial_system_attr(trial_id, k, v)
    faultpoint("mid_record")
    storage.set_trial_state_values(trial_id, state, vals)

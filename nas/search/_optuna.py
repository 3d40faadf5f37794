"""Every use of Optuna's private internals in ``nas``, in one place.

Optuna's public API cannot do a few things the search needs: write a trial's final
record (attributes, values, state) in ONE database transaction; reach a study's storage
and id; hand a sampler a trial presented with other values; cache an RDB storage. Each is
done here and nowhere else (``tests/search/test_optuna_compat.py`` checks that no other
file under ``nas/`` names them, and exercises every function below against the installed
Optuna with a real SQLite storage, so an Optuna release that renames or changes one fails
that test loudly rather than a search at run time).

Each function says which Optuna version it was written for and what it falls back to
when the private name is gone: the fallback uses the public API only, is tested as well,
and is what runs (silently, with the same result) on an Optuna without the private name.
Where the fallback is weaker (the one-transaction writes become ordered writes), the
docstring says so.
"""

from __future__ import annotations

import copy
import functools
import weakref
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Callable, Container, Iterator, Mapping, Sequence

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

__all__ = ["WRITTEN_FOR", "cached_storage", "constraint_key", "final_record_transaction",
           "load_study", "create_study", "rdb_backend", "rung_transaction", "storage_of",
           "study_id", "study_trials", "trial_id", "with_values"]

WRITTEN_FOR = "5.0.0"  # the Optuna release every function below was written and tested for

# Studies opened through ``load_study``/``create_study`` here -> their storage: the public
# route to a study's storage (``Study`` has no public attribute for it).
_STORAGES: "weakref.WeakKeyDictionary[optuna.Study, BaseStorage]" = weakref.WeakKeyDictionary()


# ----------------------------------------------------------------------------- studies

def load_study(study_name: str, storage: Any, **kwargs: Any) -> optuna.Study:
    """``optuna.load_study`` that remembers the storage (for ``storage_of``'s fallback)."""
    study = optuna.load_study(study_name=study_name, storage=storage, **kwargs)
    _STORAGES[study] = storage
    return study


def create_study(study_name: str, storage: Any, **kwargs: Any) -> optuna.Study:
    """``optuna.create_study`` that remembers the storage (for ``storage_of``'s fallback)."""
    study = optuna.create_study(study_name=study_name, storage=storage, **kwargs)
    _STORAGES[study] = storage
    return study


def storage_of(study: optuna.Study) -> Any:
    """The study's storage object (the retrying proxy when the driver opened it).

    Optuna 5.0: ``Study._storage``. Fallback: the storage ``load_study``/``create_study``
    above were given (studies opened elsewhere have no public route to it).
    """
    st = getattr(study, "_storage", None)
    if st is not None:
        return st
    try:
        return _STORAGES[study]
    except KeyError:
        raise RuntimeError(f"Optuna {optuna.__version__}: Study has no _storage (nas was "
                           f"written for {WRITTEN_FOR}); open the study through "
                           "nas.search._optuna.load_study") from None


def study_id(study: optuna.Study) -> int:
    """The study's id in its storage.

    Optuna 5.0: ``Study._study_id``. Fallback: ``storage.get_study_id_from_name`` (public).
    """
    sid = getattr(study, "_study_id", None)
    if isinstance(sid, int):
        return sid
    return int(storage_of(study).get_study_id_from_name(study.study_name))


def trial_id(study: optuna.Study, trial: optuna.Trial | FrozenTrial) -> int:
    """The storage id of a trial (``Trial`` or ``FrozenTrial``) of ``study``.

    Optuna 5.0: ``Trial._trial_id`` / ``FrozenTrial._trial_id``. Fallback:
    ``storage.get_trial_id_from_study_id_trial_number`` (public; one query).
    """
    tid = getattr(trial, "_trial_id", None)
    if isinstance(tid, int):
        return tid
    return int(storage_of(study).get_trial_id_from_study_id_trial_number(
        study_id(study), trial.number))


def study_trials(study: Any, deepcopy: bool = True,
                 states: Container[TrialState] | None = None,
                 use_cache: bool = False) -> list[FrozenTrial]:
    """The study's trials as Optuna's samplers read them.

    Optuna 5.0: samplers call ``Study._get_trials(deepcopy, states, use_cache)`` (cached
    per thread while a trial is sampled); ``sampler.StudyView`` overrides that method and
    reads the real study through this function. Fallback: ``Study.get_trials`` (public,
    uncached: the same trials, read once more).
    """
    get = getattr(study, "_get_trials", None)
    if get is not None:
        return list(get(deepcopy=deepcopy, states=states, use_cache=use_cache))
    return list(study.get_trials(deepcopy=deepcopy, states=states))


# ----------------------------------------------------------------------------- trials

def with_values(trial: FrozenTrial, values: Sequence[float]) -> FrozenTrial:
    """A shallow copy of ``trial`` whose ``values`` are ``values`` (state, params, attrs
    and id unchanged); the stored trial is not touched.

    Optuna 5.0: ``copy.copy`` and set ``FrozenTrial._values`` (multi-objective values have
    no public setter). Fallback: the public ``FrozenTrial(...)`` constructor.
    """
    vals = [float(v) for v in values]
    if hasattr(trial, "_values"):
        out = copy.copy(trial)
        out._values = vals
        return out
    return _constructed(trial, vals)


def _constructed(t: FrozenTrial, values: list[float]) -> FrozenTrial:
    """``with_values`` through the public constructor only."""
    return FrozenTrial(number=t.number, state=t.state, value=None, values=values,
                       datetime_start=t.datetime_start,
                       datetime_complete=t.datetime_complete, params=t.params,
                       distributions=t.distributions, user_attrs=t.user_attrs,
                       system_attrs=t.system_attrs, intermediate_values=t.intermediate_values,
                       trial_id=t._trial_id)


@functools.lru_cache(maxsize=None)
def constraint_key(name: str) -> str:
    """The trial system attribute under which Optuna stores constraint ``name`` (value
    > 0 = violated), the one ``Trial.set_constraint`` writes and every sampler reads.

    Derived through the public API (``FrozenTrial.set_constraint`` on a scratch trial),
    so it follows Optuna; in 5.0 it is ``constraints:<name>``.
    """
    t = optuna.trial.create_trial(value=0.0)
    t.set_constraint(name, 0.0)
    (key,) = [k for k in t.system_attrs if k.endswith(name)]
    return key


# ----------------------------------------------------------------------------- storage

def cached_storage(rdb: RDBStorage) -> BaseStorage:
    """The RDB storage behind Optuna's trial cache, as ``optuna.load_study(url)`` builds it.

    Optuna 5.0: ``optuna.storages._CachedStorage`` (what ``get_storage`` wraps an
    ``RDBStorage`` in; our retrying proxy hides the type, so we wrap it ourselves).
    Fallback: the RDB storage itself (the same results; every read goes to the database).
    """
    cls = getattr(optuna.storages, "_CachedStorage", None)
    return rdb if cls is None else cls(rdb)


_RDB_HELPERS = ("_set_trial_attr_without_commit", "_set_trial_value_without_commit",
                "_set_trial_intermediate_value_without_commit")


def rdb_backend(storage: Any) -> RDBStorage | None:
    """The ``RDBStorage`` under ``storage`` (a cache or our retrying proxy around it) when
    it offers the ``*_without_commit`` helpers the one-transaction writes need, else None
    (then ``records`` writes in order through the public storage API).

    Optuna 5.0: ``_CachedStorage._backend`` and ``RDBStorage._set_trial_*_without_commit``.
    """
    storage = getattr(storage, "inner", storage)  # our retrying proxy (nas.search.storage)
    backend = getattr(storage, "_backend", storage)
    if isinstance(backend, RDBStorage) and all(hasattr(backend, h) for h in _RDB_HELPERS):
        try:
            from optuna.storages._rdb import models  # noqa: F401
            from optuna.storages._rdb.storage import _create_scoped_session  # noqa: F401
        except ImportError:
            return None
        return backend
    return None


@contextmanager
def _session(backend: RDBStorage, ignore_integrity_error: bool = False) -> Iterator[Any]:
    """One SQLAlchemy session committed at the end, rolled back on any exception.

    Optuna 5.0: ``optuna.storages._rdb.storage._create_scoped_session``.
    """
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(backend.scoped_session, ignore_integrity_error) as session:
        yield session


def rung_transaction(backend: RDBStorage, trial_id: int,
                     step_value: tuple[int, float] | None,
                     attrs: Mapping[str, Any]) -> Callable[[], None]:
    """A function that writes one intermediate value (step, value) and user attributes of
    a trial in ONE transaction (safe to retry as a whole).

    Optuna 5.0: ``RDBStorage._set_trial_intermediate_value_without_commit`` and
    ``_set_trial_attr_without_commit`` with ``_rdb.models.TrialUserAttributeModel``, the
    helpers its public ``set_trial_*`` methods use. Fallback (``rdb_backend`` None):
    ``records`` calls the public ``set_trial_intermediate_value``/``set_trial_user_attr``.
    """
    from optuna.storages._rdb import models

    def transaction() -> None:
        with _session(backend, True) as session:
            if step_value is not None:
                backend._set_trial_intermediate_value_without_commit(session, trial_id,
                                                                     *step_value)
            for k, v in attrs.items():
                backend._set_trial_attr_without_commit(
                    session, models.TrialUserAttributeModel, trial_id, k, v)

    return transaction


def final_record_transaction(backend: RDBStorage, trial_id: int, state: TrialState,
                             values: Sequence[float] | None, attrs: Mapping[str, Any],
                             system_attrs: Mapping[str, Any],
                             before_state: Callable[[], None] = lambda: None
                             ) -> Callable[[], None]:
    """A function that finishes a trial in ONE transaction: user attrs, system attrs,
    values, state and completion time, all or nothing (safe to retry as a whole).
    ``before_state`` runs inside the transaction after the attributes (a test hook: a
    crash there must roll everything back). Raises ``UpdateFinishedTrialError`` when the
    trial is already finished.

    Optuna 5.0: ``_rdb.models.TrialModel.find_or_raise_by_id(for_update=True)``, the
    ``_set_trial_attr_without_commit``/``_set_trial_value_without_commit`` helpers, and
    ``row.state``/``row.datetime_complete`` set on the row, as
    ``RDBStorage.set_trial_state_values`` does. Fallback (``rdb_backend`` None):
    ``records`` writes attributes first and state last through the public API, so a crash
    between leaves a RUNNING trial (recovered), never a COMPLETE one without attributes.
    """
    from optuna.storages._rdb import models

    def transaction() -> None:
        with _session(backend) as session:
            row = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
            backend.check_trial_is_updatable(trial_id, row.state)  # type: ignore[arg-type]
            for k, v in attrs.items():
                backend._set_trial_attr_without_commit(
                    session, models.TrialUserAttributeModel, trial_id, k, v)
            for k, v in system_attrs.items():
                backend._set_trial_attr_without_commit(
                    session, models.TrialSystemAttributeModel, trial_id, k, v)
            before_state()
            for i, v in enumerate(values or []):
                backend._set_trial_value_without_commit(session, row, i, v)
            row.state = state
            row.datetime_complete = datetime.now()

    return transaction

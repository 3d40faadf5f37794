"""Optuna's private internals, used only in ``nas/search/_optuna.py``, against the installed
Optuna with a real SQLite storage: each private route, and each public fallback, gives the
right result. A release that renames or changes one of them fails here, loudly, by name.
"""

from __future__ import annotations

import inspect
import io
import re
import tokenize
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState

import nas
from nas.search import _optuna, records
from nas.search.storage import StorageGuard

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture()
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'studies.db'}"


def _study(url: str, via_nas: bool = True, n: int = 3) -> optuna.Study:
    """A two-objective study with ``n`` COMPLETE trials and one RUNNING one."""
    storage = optuna.storages.RDBStorage(url)
    make = _optuna.create_study if via_nas else (
        lambda name, st, **kw: optuna.create_study(study_name=name, storage=st, **kw))
    study = make("s", storage, directions=["maximize", "minimize"])
    for i in range(n):
        t = study.ask({"x": FloatDistribution(0, 1)})
        study.tell(t, [float(i), 1.0 / (i + 1)])
    study.ask({"x": FloatDistribution(0, 1)})
    return study


def _running(study: optuna.Study) -> FrozenTrial:
    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))[0]


# ----------------------------------------------------------------------------- the versions

def test_written_for_is_a_version_and_every_function_names_it() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", _optuna.WRITTEN_FOR)
    for name in _optuna.__all__:
        obj = getattr(_optuna, name)
        if callable(obj) and name not in ("load_study", "create_study"):
            assert "Optuna 5.0" in (obj.__doc__ or "") or "5.0" in (obj.__doc__ or ""), name


def test_private_signatures_are_the_ones_written_for() -> None:
    """The signatures the transactions call, by parameter name (a rename fails here)."""
    from optuna.storages import RDBStorage
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    def params(f: object) -> list[str]:
        return list(inspect.signature(f).parameters)  # type: ignore[arg-type]

    assert params(_create_scoped_session) == ["scoped_session", "ignore_integrity_error"]
    assert params(RDBStorage._set_trial_attr_without_commit) == [
        "self", "session", "model_cls", "trial_id", "key", "value"]
    assert params(RDBStorage._set_trial_value_without_commit) == [
        "self", "session", "trial", "objective", "value"]
    assert params(RDBStorage._set_trial_intermediate_value_without_commit) == [
        "self", "session", "trial_id", "step", "intermediate_value"]
    assert params(models.TrialModel.find_or_raise_by_id) == ["trial_id", "session",
                                                             "for_update"]
    assert {"state", "datetime_complete"} <= set(models.TrialModel.__table__.columns.keys())
    assert params(optuna.Study._get_trials) == ["self", "deepcopy", "states", "use_cache"]


# ----------------------------------------------------------------------------- studies

def test_storage_and_study_id_private_and_fallback(url: str) -> None:
    study = _study(url)
    storage, sid = _optuna.storage_of(study), _optuna.study_id(study)
    assert storage is study._storage and sid == study._study_id  # the private route
    # The fallback: no _storage/_study_id on the study (a future Optuna).
    del study.__dict__["_storage"], study.__dict__["_study_id"]
    public = _optuna.storage_of(study)  # the RDBStorage the study was created with
    assert isinstance(public, optuna.storages.RDBStorage)
    assert _optuna.study_id(study) == sid
    assert len(public.get_all_trials(sid)) == len(storage.get_all_trials(sid)) == 4
    # A study opened elsewhere, without either: a clear error naming the version.
    other = _study(url.replace("studies.db", "other.db"), via_nas=False)
    del other.__dict__["_storage"], other.__dict__["_study_id"]
    with pytest.raises(RuntimeError, match="written for 5"):
        _optuna.storage_of(other)


def test_trial_id_private_and_fallback(url: str) -> None:
    study = _study(url)
    for t in study.get_trials():
        assert _optuna.trial_id(study, t) == t._trial_id
        bare = FrozenTrial(number=t.number, state=t.state, value=None, values=t.values,
                           datetime_start=t.datetime_start,
                           datetime_complete=t.datetime_complete, params=t.params,
                           distributions=t.distributions, user_attrs={}, system_attrs={},
                           intermediate_values={}, trial_id=-1)
        del bare.__dict__["_trial_id"]  # the fallback: ask the storage by number
        assert _optuna.trial_id(study, bare) == t._trial_id
    live = study.ask()
    assert _optuna.trial_id(study, live) == live._trial_id


def test_study_trials_private_and_fallback(url: str) -> None:
    study = _study(url)
    want = [t.number for t in study.get_trials()]
    assert [t.number for t in _optuna.study_trials(study, use_cache=False)] == want

    class Public:  # a study without _get_trials
        def get_trials(self, deepcopy: bool = True, states=None):  # noqa: ANN001
            return study.get_trials(deepcopy=deepcopy, states=states)

    assert [t.number for t in _optuna.study_trials(Public())] == want
    assert [t.number for t in _optuna.study_trials(
        study, states=(TrialState.RUNNING,))] == [want[-1]]


@pytest.mark.parametrize("make", [
    lambda: optuna.samplers.TPESampler(seed=0, n_startup_trials=0, multivariate=True),
    lambda: optuna.samplers.NSGAIISampler(seed=0, population_size=2),
], ids=["tpe", "nsga2"])
def test_samplers_read_trials_through_get_trials(url: str, make) -> None:  # noqa: ANN001
    """``sampler.StudyView`` overrides ``Study._get_trials``: the samplers must call it."""
    study = _study(url, n=4)
    calls: list[dict] = []

    class Recorder:
        def __getattr__(self, name: str):  # noqa: ANN204
            return getattr(study, name)

        def _get_trials(self, deepcopy=True, states=None, use_cache=False):  # noqa: ANN001
            calls.append({"states": states, "use_cache": use_cache})
            return _optuna.study_trials(study, deepcopy, states, use_cache)

    sampler = make()
    trial = _running(study)
    rec = Recorder()
    space = sampler.infer_relative_search_space(rec, trial)
    sampler.sample_relative(rec, trial, space)
    sampler.sample_independent(rec, trial, "x", FloatDistribution(0, 1))
    assert calls, f"{type(sampler).__name__} no longer reads trials via Study._get_trials"


# ----------------------------------------------------------------------------- trials

def test_with_values_private_and_fallback(url: str) -> None:
    study = _study(url)
    t = study.get_trials()[1]
    t.user_attrs["k"] = 1
    a = _optuna.with_values(t, [7, 8])
    b = _optuna._constructed(t, [7.0, 8.0])  # the public constructor
    for x in (a, b):
        assert x.values == [7.0, 8.0] and x is not t
        assert (x.number, x.state, x.params, x.user_attrs, x.system_attrs,
                x.intermediate_values, x.datetime_start) == (
            t.number, t.state, t.params, t.user_attrs, t.system_attrs,
            t.intermediate_values, t.datetime_start)
        assert _optuna.trial_id(study, x) == t._trial_id
    assert t.values == [1.0, 0.5]  # the original is untouched
    assert study.get_trials()[1].values == [1.0, 0.5]  # and so is the storage


def test_constraint_key_is_what_optuna_reads(url: str) -> None:
    key = _optuna.constraint_key("query_gflops")
    assert key == "constraints:query_gflops"
    t = optuna.trial.create_trial(values=[1.0, 2.0], system_attrs={key: 2.5})
    assert t.constraints == {"query_gflops": 2.5}  # Optuna's own reader


# ----------------------------------------------------------------------------- storage

def test_cached_storage_private_and_fallback(url: str, monkeypatch) -> None:  # noqa: ANN001
    rdb = optuna.storages.RDBStorage(url)
    cached = _optuna.cached_storage(rdb)
    assert type(cached).__name__ == "_CachedStorage"
    assert cached._backend is rdb  # type: ignore[attr-defined]
    assert _optuna.rdb_backend(cached) is rdb
    assert _optuna.rdb_backend(StorageGuard(url).wrap(rdb)) is rdb  # through our proxy
    assert _optuna.rdb_backend(optuna.storages.InMemoryStorage()) is None
    monkeypatch.delattr(optuna.storages, "_CachedStorage")
    assert _optuna.cached_storage(rdb) is rdb  # the fallback: uncached, same results
    wrapped = StorageGuard(url).wrap(rdb)  # what the driver opens studies with
    assert wrapped.inner is rdb and _optuna.rdb_backend(wrapped) is rdb
    study = _optuna.create_study("c", wrapped, directions=["minimize"])
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(_optuna.load_study("c", StorageGuard(url).wrap(rdb)).trials) == 2


def test_rung_transaction(url: str) -> None:
    study = _study(url)
    t = _running(study)
    backend = _optuna.rdb_backend(_optuna.storage_of(study))
    assert backend is not None
    _optuna.rung_transaction(backend, t._trial_id, (0, 12.5), {"budget": 1.0})()
    got = study.get_trials()[-1]
    assert got.intermediate_values == {0: 12.5} and got.user_attrs == {"budget": 1.0}
    done = study.get_trials()[0]
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        _optuna.rung_transaction(backend, done._trial_id, (0, 1.0), {})()


def test_final_record_transaction_is_all_or_nothing(url: str) -> None:
    study = _study(url)
    t = _running(study)
    backend = _optuna.rdb_backend(_optuna.storage_of(study))
    assert backend is not None

    def crash() -> None:
        raise RuntimeError("killed mid-record")

    with pytest.raises(RuntimeError):
        _optuna.final_record_transaction(backend, t._trial_id, TrialState.COMPLETE, [1, 2],
                                         {"status": "complete"}, {"nas:x": 1},
                                         before_state=crash)()
    after = study.get_trials()[-1]
    assert after.state == TrialState.RUNNING and after.user_attrs == {}
    assert "nas:x" not in after.system_attrs
    _optuna.final_record_transaction(backend, t._trial_id, TrialState.COMPLETE, [1.0, 2.0],
                                     {"status": "complete"}, {"nas:x": 1})()
    after = study.get_trials()[-1]
    assert after.state == TrialState.COMPLETE and after.values == [1.0, 2.0]
    assert after.user_attrs == {"status": "complete"} and after.system_attrs["nas:x"] == 1
    assert after.datetime_complete is not None
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        _optuna.final_record_transaction(backend, t._trial_id, TrialState.FAIL, None, {}, {})()


@pytest.mark.parametrize("path", ["transaction", "ordered fallback"])
def test_write_final_both_paths_write_the_same_record(url: str, path: str,
                                                       monkeypatch) -> None:  # noqa: ANN001
    if path != "transaction":
        monkeypatch.setattr(_optuna, "rdb_backend", lambda storage: None)
    study = _study(url)
    t = _running(study)
    records.record_rung(study, t._trial_id, 0, 50.0, budget=1.0)
    records.write_final(study, t._trial_id, TrialState.PRUNED,
                        attrs={"status": records.TrialStatus.STOPPED, "budget": 1.0},
                        system_attrs=records.learning_attrs([50.0, 0.5], {"q": 1.0}))
    rec = records.TrialRecord.of(study.get_trials()[-1])
    assert rec.state == TrialState.PRUNED and rec.status == records.TrialStatus.STOPPED
    assert rec.budget == 1.0 and rec.learn_values == (50.0, 0.5)
    assert study.get_trials()[-1].intermediate_values == {0: 50.0}
    assert study.get_trials()[-1].system_attrs[_optuna.constraint_key("q")] == 1.0


# ----------------------------------------------------------------------------- one file

# Private Optuna names (attribute, module or function) that only _optuna.py may use.
PRIVATE = re.compile(r"\._(storage|study_id|trial_id|values|backend|get_trials|thread_local)"
                     r"\b|_without_commit|_create_scoped_session|_CachedStorage|"
                     r"optuna\.[\w.]*\._\w|from optuna[\w.]*\._\w|\brow\.state\b|"
                     r"_CONSTRAINTS_KEY|_constrained_optimization")
# sampler.StudyView *overrides* Study._get_trials (what Optuna's samplers call; checked by
# test_samplers_read_trials_through_get_trials): the method's own name, nothing else.
ALLOWED = {("nas/search/sampler.py", "def _get_trials("),
           ("nas/search/sampler.py", "return self._get_trials(")}


def _code(path: Path) -> list[tuple[int, str]]:
    """(line, text) of the code of a file without comments and strings."""
    lines: dict[int, str] = {}
    toks = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    for tok in toks:
        if tok.type in (tokenize.COMMENT, tokenize.STRING, tokenize.NL, tokenize.NEWLINE,
                        tokenize.INDENT, tokenize.DEDENT) or tok.type == getattr(
                            tokenize, "FSTRING_MIDDLE", -1):
            continue
        lines[tok.start[0]] = lines.get(tok.start[0], "") + tok.string
    return sorted(lines.items())


def test_no_other_file_uses_optuna_private_names() -> None:
    root = Path(nas.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        rel = f"nas/{path.relative_to(root).as_posix()}"
        if rel == "nas/search/_optuna.py":
            continue
        src = path.read_text().splitlines()
        for n, code in _code(path):
            if PRIVATE.search(code) and not any(
                    rel == f and a in src[n - 1] for f, a in ALLOWED):
                offenders.append(f"{rel}:{n}: {src[n - 1].strip()}")
    assert not offenders, "Optuna internals outside nas/search/_optuna.py:\n" + \
        "\n".join(offenders)


def test_the_scan_finds_a_private_name(tmp_path: Path) -> None:
    """The scanner itself: it sees a private name in code, not in a comment or string."""
    f = tmp_path / "x.py"
    f.write_text('s = study._storage  # ok\nt = "study._storage"\n# study._study_id\n')
    hits = [n for n, code in _code(f) if PRIVATE.search(code)]
    assert hits == [1]

"""Typed study records (nas.search.records): TrialStatus and TrialRecord on a real study."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from nas.search import records
from nas.search.driver import SearchOptions, run_search
from nas.search.evaluator import EvaluatorSpec
from nas.search.records import TrialRecord, TrialStatus

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_stored_strings_are_unchanged() -> None:
    """Older studies, the report, export and the dashboard read these exact strings."""
    assert {s.value for s in TrialStatus} == {
        "complete", "stopped", "failed", "infeasible", "duplicate", "crashed", "interrupted",
        "surplus", "running"}
    assert [s.value for s in records.TRAINED_STATUSES] == ["complete", "stopped", "failed"]
    assert TrialStatus.STOPPED == "stopped" and f"{TrialStatus.STOPPED}" == "stopped"
    assert TrialStatus.parse("stopped") is TrialStatus.STOPPED
    assert TrialStatus.parse("from-a-later-version") is None and TrialStatus.parse(None) is None


def _study(tmp_path: Path) -> optuna.Study:
    study = optuna.create_study(study_name="r", storage=f"sqlite:///{tmp_path}/r.db",
                                directions=["maximize", "minimize"])
    study.ask({"x": FloatDistribution(0, 1)})
    return study


def test_a_record_round_trips_typed_and_is_stored_as_plain_json(tmp_path: Path) -> None:
    study = _study(tmp_path)
    tid = study.trials[0]._trial_id
    records.set_attrs(study, tid, config_id="abc", costs={"query_gflops": 2.0},
                      status=TrialStatus.RUNNING)
    records.record_rung(study, tid, 0, 41.0)
    records.write_final(study, tid, TrialState.PRUNED,
                        attrs={"status": TrialStatus.STOPPED, "budget": 0.5,
                               "full_budget": False, "metrics": {"recall": 41.0},
                               "retries": 1},
                        system_attrs=records.learning_attrs([41.0, 2.0], None))
    rec = TrialRecord.of(study.trials[0])
    assert rec.status is TrialStatus.STOPPED and rec.state == TrialState.PRUNED
    assert (rec.config_id, rec.budget, rec.full_budget, rec.retries) == ("abc", 0.5, False, 1)
    assert rec.costs == {"query_gflops": 2.0} and rec.metrics == {"recall": 41.0}
    assert rec.learn_values == (41.0, 2.0) and rec.values is None
    assert rec.trained and rec.claimed
    # What the database holds is the plain string, as before the enum.
    db = sqlite3.connect(f"{tmp_path}/r.db")
    (raw,) = db.execute("select value_json from trial_user_attributes where key='status'"
                        ).fetchone()
    assert json.loads(raw) == "stopped"


def test_an_unknown_attribute_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    study = _study(tmp_path)
    tid = study.trials[0]._trial_id
    with pytest.raises(TypeError, match="not a trial record attribute: budgte"):
        records.set_attrs(study, tid, budget=1.0, budgte=2.0)
    with pytest.raises(TypeError, match="statsu"):
        records.write_final(study, tid, TrialState.FAIL, attrs={"statsu": "failed"})
    t = study.trials[0]
    assert t.user_attrs == {} and t.state == TrialState.RUNNING


def test_an_unknown_status_counts_as_neither_trained_nor_claimed(tmp_path: Path) -> None:
    study = _study(tmp_path)
    study._storage.set_trial_user_attr(study.trials[0]._trial_id, "status", "someday")
    rec = TrialRecord.of(study.trials[0])
    assert rec.status is None and not rec.trained and not rec.claimed
    assert records.counted(study.trials) == 0


def test_every_attribute_a_search_writes_is_a_record_field(tmp_path: Path) -> None:
    run_search(SearchOptions(space="quick", storage=f"sqlite:///{tmp_path}/s.db", trials=6,
                             evaluator=EvaluatorSpec.fake(), executor="local", quiet=True,
                             seed=3, limits=["query_gflops=0.5"]))
    study = optuna.load_study(study_name="quick", storage=f"sqlite:///{tmp_path}/s.db")
    seen: set[str] = set()
    for t in study.trials:
        assert set(t.user_attrs) <= records.USER_ATTRS, t.user_attrs.keys()
        seen |= set(t.user_attrs)
        rec = TrialRecord.of(t)
        assert rec.status is not None
        assert rec.trained == (t.user_attrs["status"] in ("complete", "stopped", "failed"))
    assert {"status", "config_id", "fusion", "costs", "budget"} <= seen
    assert records.counted(study.trials) == 6

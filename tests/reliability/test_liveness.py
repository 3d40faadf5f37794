"""Which RUNNING trials a driver may recover: only those of dead drivers (several drivers
may share a study). Real SQLite storage, the searcher with the fake evaluator, no Ray."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from nas.search.driver import _data_overrides
from nas.search.liveness import DRIVER_KEY, DriverRegistry
from nas.search.objectives import parse_objectives
from nas.search.sampler import make_sampler
from nas.search.searcher import AskTellSearcher
from nas.search.space import load_space
from nas.search.testing import fake_estimate_costs, fake_load_data


def _study(tmp_path: Path) -> optuna.Study:
    return optuna.create_study(study_name="l", storage=f"sqlite:///{tmp_path}/s.db",
                               directions=["maximize", "minimize"],
                               sampler=make_sampler("random", 0))


def _searcher(study: optuna.Study, registry: DriverRegistry, n: int = 5) -> AskTellSearcher:
    shapes = fake_load_data("x").shapes
    return AskTellSearcher(study, load_space("quick"), parse_objectives("recall,query_gflops"),
                           fake_estimate_costs, shapes, _data_overrides(shapes), {}, n,
                           registry=registry)


def test_a_live_drivers_trials_are_left_alone(tmp_path: Path) -> None:
    study = _study(tmp_path)
    a = DriverRegistry(study)
    a.start()
    core_a = _searcher(study, a)
    spec = core_a.next()
    b = DriverRegistry(study)  # a second driver (same process: alive by pid + start time)
    b.start()
    core_b = _searcher(study, b)
    assert core_b.recovered == 0
    assert study._storage.get_trial(spec.trial_id).state == TrialState.RUNNING
    assert core_b.others == 1 and core_b.remaining == 5 - 1  # A's claim counts for B
    a.stop()  # A ends without finishing its trial: now B recovers it
    core_b.refresh()
    t = study._storage.get_trial(spec.trial_id)
    assert core_b.recovered == 1 and t.state == TrialState.FAIL
    assert t.user_attrs["fail_reason"] == "driver crashed"
    # A comes back to finish the trial B recovered: its result is dropped, no crash
    assert core_a.finish(spec.number, metrics={"recall": 50.0, "epochs": 2.0}) == \
        TrialState.FAIL
    assert study._storage.get_trial(spec.trial_id).user_attrs["status"] == "crashed"
    b.stop()


def test_remote_drivers_are_judged_by_heartbeat(tmp_path: Path) -> None:
    study = _study(tmp_path)
    me = DriverRegistry(study, grace_s=30)
    now = time.time()
    entries = {"far:1": {"host": "elsewhere/1", "pid": 1, "beat": now - 5, "ended": False},
               "gone:1": {"host": "elsewhere/1", "pid": 1, "beat": now - 100, "ended": False},
               "done:1": {"host": me.host, "pid": me.pid, "start": "x", "ended": True},
               "reused:1": {"host": me.host, "pid": me.pid, "start": "not-mine",
                            "ended": False}}
    assert me.alive("far:1", entries) and not me.alive("gone:1", entries)
    assert not me.alive("done:1", entries)
    assert not me.alive("reused:1", entries)  # same pid, other process (pid reused)
    assert not me.alive("unknown", entries)


def test_unstamped_trial_waits_while_another_driver_lives(tmp_path: Path) -> None:
    study = _study(tmp_path)
    other = DriverRegistry(study)
    other.start()
    t = study.ask()  # RUNNING, no owner stamp yet (as between ask and stamp)
    me = DriverRegistry(study)
    frozen = study._storage.get_trial(t._trial_id)
    assert DRIVER_KEY not in frozen.system_attrs
    assert me.orphaned([frozen]) == []  # young, and another driver is alive
    other.stop()
    assert [x.number for x in me.orphaned([frozen])] == [t.number]

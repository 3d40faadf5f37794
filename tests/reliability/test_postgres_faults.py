"""Issue 16, case 1: PostgreSQL restarts or stops in the middle of a search.

Each test runs `nas search` against a PostgreSQL cluster of this module's own
(``pg_cluster.PgCluster``: created with ``pg_createcluster`` on a free port, dropped at
the end; never the shared `main` cluster) and restarts or stops it while trials run:

- a restart (``pg_ctlcluster restart``): the search goes on and finishes its total;
- a 30-second stop: the driver waits (``--db-retry``), the trials that were running
  finish meanwhile and are recorded once the database is back, none failed or lost;
- a stop past ``--db-retry``: exit 75 with one line saying how to continue (no
  traceback, not Optuna's "exceeding max length" text); the same command resumes.

Every test checks the study afterwards: the total reached exactly, counts by state,
nothing RUNNING, no configuration trained twice. Recovery times are printed (-rP) for
docs/reliability.md.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from tests.faulty_evaluator import FAULTY

from pg_cluster import PgCluster
from reliability_helpers import (
    LiveDriver,
    assert_study_sound,
    fault_while_running,
    load,
    run_nas,
    status_counts,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture(scope="module")
def pg():
    cluster = PgCluster()
    try:
        yield cluster
    finally:
        cluster.drop()


def _cmd(url: str, name: str, trials: int, *extra: str) -> list[str]:
    return ["search", "--space", "quick", "--study", name, "--storage", url, "--trials",
            str(trials), "--evaluator", FAULTY, "--quiet", *extra]


def _trained(c) -> int:
    return c["complete"] + c["stopped"] + c["failed"]


def _no_traceback(err: str) -> None:
    assert "Traceback" not in err and "exceeding max length" not in err, err[-3000:]


def test_restart_while_trials_run(pg: PgCluster, tmp_path: Path) -> None:
    name = f"r_{uuid.uuid4().hex[:6]}"
    at: dict[str, float] = {}

    def restart(_) -> None:
        at["restart"] = time.monotonic()
        pg.restart()

    d, rc, _, _ = fault_while_running(
        _cmd(pg.url, name, 8, "--executor", "local"), tmp_path,
        lambda: (lambda c: _trained(c) >= 2 and c["running"] >= 1)(status_counts(pg.url, name)),
        "2 trained trials and 1 running", restart, timeout=240, NAS_FAKE_SLEEP="0.3")
    assert rc == 0, d.stderr[-3000:]
    _no_traceback(d.stderr)
    study = load(pg.url, name)
    states = assert_study_sound(study, 8)
    assert {t.user_attrs["status"] for t in study.trials} <= {"complete", "stopped"}, states
    back = d.first("database is back after")
    seen = (f"the driver waited and was back {back - at['restart']:.1f} s after `pg_ctlcluster "
            "restart` was issued" if back else "the driver did not need the database "
            "during the restart")
    print(f"restart: {dict(states)}; {seen}")


def test_thirty_second_stop_waits_and_records_what_finished(pg: PgCluster,
                                                            tmp_path: Path) -> None:
    name = f"s_{uuid.uuid4().hex[:6]}"
    at: dict[str, float] = {}
    running_before: set[int] = set()

    def stop_30s(_) -> None:
        running_before.update(t.number for t in load(pg.url, name).trials
                              if t.user_attrs.get("status") == "running")
        pg.stop()
        time.sleep(30)
        at["start"] = time.monotonic()  # `pg_ctlcluster start` issued (returns once up)
        pg.start()

    d, rc, _, c = fault_while_running(
        _cmd(pg.url, name, 8, "--concurrency", "2", "--db-retry", "90s", "--data",
             "synthetic|sleep:1"), tmp_path,
        lambda: (lambda c: c if _trained(c) >= 2 and c["running"] >= 2 else None)(
            status_counts(pg.url, name)), "2 trained trials and 2 running", stop_30s,
        timeout=240)
    assert rc == 0, d.stderr[-3000:]
    _no_traceback(d.stderr)
    assert d.first("database is unreachable") is not None, d.stderr[-2000:]
    t_back = d.first("database is back after")
    assert t_back is not None, d.stderr[-2000:]
    study = load(pg.url, name)
    states = assert_study_sound(study, 8)
    # Nothing failed or was re-run for the outage: the trials that were running when the
    # database stopped finished on their workers and were recorded once it was back.
    assert {t.user_attrs["status"] for t in study.trials} <= {"complete", "stopped"}, states
    for n in running_before:
        assert study.trials[n].user_attrs["status"] in ("complete", "stopped"), n
    print(f"30 s stop: {dict(states)} (was {dict(c)}); running at the stop and recorded "
          f"after: {sorted(running_before)}; driver back {t_back - at['start']:.1f} s after "
          "`pg_ctlcluster start` was issued")


def test_outage_past_db_retry_stops_with_one_line_and_resumes(pg: PgCluster,
                                                             tmp_path: Path) -> None:
    name = f"b_{uuid.uuid4().hex[:6]}"
    cmd = _cmd(pg.url, name, 6, "--executor", "local", "--db-retry", "5s")
    d = LiveDriver(cmd, tmp_path, NAS_FAKE_SLEEP="0.3")
    try:
        wait_for(lambda: _trained(status_counts(pg.url, name)) >= 2, 120, "2 trained trials")
        pg.stop()
        t_stop = time.monotonic()
        rc = d.wait(timeout=60)
        took = time.monotonic() - t_stop
    finally:
        d.close()
        pg.start()
    err = d.stderr
    assert rc == 75, err[-3000:]
    _no_traceback(err)
    last = err.strip().splitlines()[-1]
    assert last.startswith("nas search: error: --storage postgresql://nas:***@"), last
    for needle in ("unreachable for", "gave up after --db-retry 5s",
                   "run the same command again"):
        assert needle in last, (needle, last)
    assert took < 30, took
    left = status_counts(pg.url, name)["RUNNING"]
    r = run_nas(cmd, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    study = load(pg.url, name)
    states = assert_study_sound(study, 6)
    crashed = [t for t in study.trials if t.user_attrs.get("status") == "crashed"]
    assert len(crashed) == left, (left, states)
    print(f"past --db-retry 5s: exit 75 {took:.1f} s after the stop; {left} trial(s) left "
          f"RUNNING, recovered by the rerun; {dict(states)}\n  {last}")

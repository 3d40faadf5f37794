"""Issue 6.1: SIGKILL the `nas search` driver at many moments; the same command resumes.

The crash moments are made deterministic by the driver's test hook ``NAS_FAULTPOINT``
(``nas/search/faults.py``): the driver SIGKILLs itself the n-th time it reaches a named
point. After each crash the study must hold only complete records, and re-running the same
command must reach the trial count with no finished trial lost or changed, none RUNNING,
no configuration trained twice, and the crashed trial re-queued (once).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from optuna.trial import TrialState

from reliability_helpers import (
    TINY,
    assert_kept,
    check_finished,
    check_records,
    load,
    run_nas,
    snapshot,
)

KILLED = -signal.SIGKILL
N = 7


def _cmd(url: str, *extra: str, trials: int = N) -> list[str]:
    return ["search", "--space", "quick", "--study", "c", "--storage", url, "--trials",
            str(trials), "--quiet", *extra]


FAKE_LOCAL = ("--evaluator", "fake", "--executor", "local")

# (fault point, n-th time): one per moment of a trial's life, on the fake evaluator.
POINTS = [
    ("after_create", 1),   # study created, not initialised (no attrs, no warm start)
    ("before_ask", 3),     # between trials
    ("after_ask", 4),      # trial RUNNING, nothing in it, not even its owner
    ("mid_sample", 5),     # some params written
    ("after_claim", 3),    # sampled and claimed (counts as running), not trained
    ("after_report", 4),   # an intermediate value written, training goes on
    ("mid_record", 3),     # final attrs written in the open transaction, no commit
    ("after_tell", 2),     # a trial just finished
]


@pytest.mark.parametrize("point,n", POINTS, ids=[p for p, _ in POINTS])
def test_crash_at_point_then_resume(point: str, n: int, tmp_path: Path, sqlite_url: str) -> None:
    r = run_nas(_cmd(sqlite_url, *FAKE_LOCAL), tmp_path, NAS_FAULTPOINT=f"{point}:{n}")
    assert r.returncode == KILLED, (r.returncode, r.stderr[-2000:])
    before = snapshot(sqlite_url, "c")
    study = load(sqlite_url, "c")
    check_records(study)  # a crash never leaves a half-written finished trial
    running = [t for t in study.trials if t.state == TrialState.RUNNING]
    if point == "mid_record":
        # the transaction was rolled back: the trial is RUNNING without its final attrs
        assert len(running) == 1 and running[0].user_attrs["status"] == "running"
        assert "gates" not in running[0].user_attrs

    r = run_nas(_cmd(sqlite_url, *FAKE_LOCAL), tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert_kept(before, sqlite_url, "c")
    study = load(sqlite_url, "c")
    check_finished(study, N)
    # the warm start survived the crash: the reference configuration was trained
    assert [t for t in study.trials if t.user_attrs.get("warm_start") == "reference"
            and t.user_attrs["status"] in ("complete", "stopped")]
    for t in running:  # each trial the crash left RUNNING: FAIL "driver crashed"
        after = study.trials[t.number]
        assert after.state == TrialState.FAIL and after.user_attrs["status"] == "crashed"
        assert after.user_attrs["fail_reason"].startswith("driver crashed")


def test_crash_during_recovery_requeues_once(tmp_path: Path, sqlite_url: str) -> None:
    """Killed while re-queueing a crashed trial: the next run re-queues it exactly once."""
    r = run_nas(_cmd(sqlite_url, *FAKE_LOCAL), tmp_path, NAS_FAULTPOINT="after_claim:4")
    assert r.returncode == KILLED
    orphan = [t.number for t in load(sqlite_url, "c").trials if t.state == TrialState.RUNNING]
    r = run_nas(_cmd(sqlite_url, *FAKE_LOCAL), tmp_path, NAS_FAULTPOINT="during_requeue:1")
    assert r.returncode == KILLED
    study = load(sqlite_url, "c")
    check_records(study)
    # enqueued again, but the trial itself not yet failed: still RUNNING
    assert [t.state for t in study.trials if t.number in orphan] == [TrialState.RUNNING]
    assert len([t for t in study.trials if t.user_attrs.get("requeued_from") == orphan[0]]) == 1
    before = snapshot(sqlite_url, "c")
    r = run_nas(_cmd(sqlite_url, *FAKE_LOCAL), tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert_kept(before, sqlite_url, "c")
    check_finished(load(sqlite_url, "c"), N)  # (checks: re-queued exactly once)


@pytest.mark.slow
def test_many_crashes_in_a_row_on_one_study(tmp_path: Path, sqlite_url: str) -> None:
    """Crash after crash on the same study (a flaky machine), then finish: nothing lost."""
    seq = ["after_claim:2", "mid_record:2", "after_ask:2", "after_report:3", "mid_sample:2",
           "after_tell:1", "mid_record:1"]
    n = 10
    for point in seq:
        before = snapshot(sqlite_url, "c")
        r = run_nas(_cmd(sqlite_url, *FAKE_LOCAL, trials=n), tmp_path, NAS_FAULTPOINT=point)
        assert r.returncode == KILLED, (point, r.returncode, r.stderr[-2000:])
        assert_kept(before, sqlite_url, "c")
        check_records(load(sqlite_url, "c"))
    before = snapshot(sqlite_url, "c")
    r = run_nas(_cmd(sqlite_url, *FAKE_LOCAL, trials=n), tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert_kept(before, sqlite_url, "c")
    study = load(sqlite_url, "c")
    check_finished(study, n)
    assert sum(t.user_attrs.get("status") == "crashed" for t in study.trials) >= 5


@pytest.mark.slow
def test_crash_with_ray_trials_in_flight(tmp_path: Path, sqlite_url: str) -> None:
    """On Ray (the driver starts its own): killed while recording with a trial still
    running on a worker; the resumed run re-queues the lost ones and finishes."""
    args = _cmd(sqlite_url, "--evaluator", "fake", "--concurrency", "2", trials=6)
    r = run_nas(args, tmp_path, NAS_FAULTPOINT="mid_record:3", NAS_FAKE_SLEEP="0.3")
    assert r.returncode == KILLED, (r.returncode, r.stderr[-2000:])
    before = snapshot(sqlite_url, "c")
    study = load(sqlite_url, "c")
    check_records(study)
    assert [t for t in study.trials if t.state == TrialState.RUNNING]
    r = run_nas(args, tmp_path, NAS_FAKE_SLEEP="0.3")
    assert r.returncode == 0, r.stderr[-3000:]
    assert_kept(before, sqlite_url, "c")
    check_finished(load(sqlite_url, "c"), 6)


@pytest.mark.slow
def test_crash_during_real_training(tmp_path: Path, sqlite_url: str) -> None:
    """Real proxy training (tiny): killed right after a rung was written; resume."""
    args = _cmd(sqlite_url, "--executor", "local", "--data", TINY, trials=4)
    r = run_nas(args, tmp_path, NAS_FAULTPOINT="after_report:3", timeout=300)
    assert r.returncode == KILLED, (r.returncode, r.stderr[-2000:])
    before = snapshot(sqlite_url, "c")
    check_records(load(sqlite_url, "c"))
    r = run_nas(args, tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert_kept(before, sqlite_url, "c")
    study = load(sqlite_url, "c")
    check_finished(study, 4)
    assert any(t.state == TrialState.COMPLETE and t.user_attrs["gates"] for t in study.trials)


def test_ctrl_c_stops_cleanly_then_resumes(tmp_path: Path, sqlite_url: str) -> None:
    """SIGINT mid-trial: exit 130, the running trial recorded FAIL "interrupted" and
    re-queued, nothing left RUNNING; the same command then finishes the study."""
    import subprocess
    import sys
    import time

    from reliability_helpers import nas_env

    p = subprocess.Popen([sys.executable, "-m", "nas", *_cmd(sqlite_url, *FAKE_LOCAL)],
                         cwd=tmp_path, env=nas_env(NAS_FAKE_SLEEP="0.3"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        s = snapshot(sqlite_url, "c")
        if sum(v[3] in ("complete", "stopped") for v in s.values()) >= 2:
            break
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err[-2000:]
    study = load(sqlite_url, "c")
    check_records(study)
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    stopped = [t for t in study.trials if t.user_attrs.get("status") == "interrupted"]
    # (one trial runs nearly all the time; the signal may land in the microseconds between)
    assert len(stopped) <= 1 and all(t.user_attrs["fail_reason"] == "interrupted"
                                     for t in stopped)
    before = snapshot(sqlite_url, "c")
    r = run_nas(_cmd(sqlite_url, *FAKE_LOCAL), tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert_kept(before, sqlite_url, "c")
    check_finished(load(sqlite_url, "c"), N)

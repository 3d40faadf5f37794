"""SIGKILL during a verdict: the rerun continues, nothing is trained twice or half-written.

The verdict records each run as one trial of ``<study>:verdict`` the moment it finishes
(one transaction). A real SIGKILL (the driver hook ``NAS_FAULTPOINT=verdict_after_record:N``
kills the process right after the N-th record; the Ray test kills the process group from
outside while runs are in flight) must leave only whole records, and the same command must
then train exactly the runs that are missing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.faulty_evaluator import FAULTY

from verdict_helpers import PLANTED_VARIANTS, fake_study

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))
from reliability_helpers import _kill_group, nas_env, run_nas  # noqa: E402

KILLED = -signal.SIGKILL
PLANNED = 3 * (1 + 4)  # 3 seeds x (base + 4 variants)


def _args(url: str, out: Path, *extra: str) -> list[str]:
    return ["verdict", "--study", "p", "--storage", url, "--seeds", "3", "--variants",
            PLANTED_VARIANTS, "--out", str(out), "--evaluator", FAULTY, *extra]


def _records(url: str) -> dict[int, tuple]:
    try:
        comp = optuna.load_study(study_name="p:verdict", storage=url)
    except KeyError:
        return {}
    return {t.number: (t.state, t.values, t.user_attrs.get("verdict_key"),
                       t.user_attrs.get("status")) for t in comp.get_trials(deepcopy=False)}


def _check_whole(url: str) -> None:
    """Every record is whole: COMPLETE with values and its key, nothing RUNNING."""
    comp = optuna.load_study(study_name="p:verdict", storage=url)
    for t in comp.get_trials(deepcopy=False):
        assert t.state == TrialState.COMPLETE, (t.number, t.state)
        assert len(t.values) == 2 and t.user_attrs["verdict_key"] and t.user_attrs["role"]


def _check_resumed(url: str, before: dict[int, tuple], out: Path, r) -> None:
    assert r.returncode == 0, r.stderr[-3000:]
    after = _records(url)
    for n, rec in before.items():  # nothing lost or changed
        assert after[n] == rec
    keys = [rec[2] for rec in after.values()]
    assert len(keys) == PLANNED == len(set(keys))  # each run trained (recorded) once
    assert f"{len(before)} already recorded in 'p:verdict', {PLANNED - len(before)} to " \
           "train" in r.stderr
    assert f"{PLANNED - len(before)} run(s) trained now, {len(before)} reused" in r.stderr
    assert (out / "verdict.json").is_file() and (out / "verdict.csv").is_file()


def test_sigkill_after_a_record_then_resume(tmp_path: Path) -> None:
    url = fake_study(tmp_path)
    out = tmp_path / "out"
    r = run_nas(_args(url, out, "--executor", "local"), tmp_path,
                NAS_FAULTPOINT="verdict_after_record:6")
    assert r.returncode == KILLED, (r.returncode, r.stderr[-2000:])
    before = _records(url)
    assert len(before) == 6
    _check_whole(url)
    # nothing half-written: no output yet, no temp file, no verdict on the study
    assert not out.exists() or not list(out.iterdir())
    assert "verdict" not in optuna.load_study(study_name="p", storage=url).user_attrs
    r = run_nas(_args(url, out, "--executor", "local"), tmp_path)
    _check_resumed(url, before, out, r)
    assert sorted(p.name for p in out.iterdir()) == ["quick_estimate.csv", "verdict.csv",
                                                     "verdict.json"]


@pytest.mark.slow
def test_sigkill_from_outside_with_ray_runs_in_flight(tmp_path: Path) -> None:
    """On Ray (the verdict starts its own): SIGKILL to the whole process group once a few
    runs are recorded, while others are running on workers; the rerun finishes the rest."""
    url = fake_study(tmp_path)
    out = tmp_path / "out"
    args = _args(url, out, "--concurrency", "2")
    p = subprocess.Popen([sys.executable, "-m", "nas", *args], cwd=tmp_path,
                         env=nas_env(NAS_FAKE_SLEEP="0.4"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and len(_records(url)) < 3 and p.poll() is None:
            time.sleep(0.05)
        assert p.poll() is None, "the verdict ended before it could be killed"
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        _kill_group(p.pid)
    before = _records(url)
    assert 3 <= len(before) < PLANNED
    _check_whole(url)
    r = run_nas(args, tmp_path)
    _check_resumed(url, before, out, r)

"""End to end on a real local Ray and a real SQLite file, with real proxy training."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.artifacts import get_all_artifact_meta
from optuna.trial import TrialState

from nas.search import pareto_front
from nas.search.driver import SearchOptions, run_search
from nas.search.evaluator import RayOptions

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
TINY = ("synthetic:clips=64,val_clips=32,test_clips=0,frames=4,audio_tokens=4,text_tokens=3,"
        "video_dim=16,audio_dim=16,text_dim=16,min_captions=1,max_captions=2")


def test_tiny_search_on_ray_writes_honest_records(ray_session, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/studies.db"
    opts = SearchOptions(space="quick", study="e2e", storage=url, data=TINY, trials=8, seed=0,
                         ray=RayOptions(concurrency=2), quiet=True)
    summary = run_search(opts)
    assert summary.trained == 8 and not summary.interrupted

    study = optuna.load_study(study_name="e2e", storage=url)  # plain Optuna
    assert study.metric_names == ["recall", "query_gflops", "index_gflops"]
    rungs = study.user_attrs["rungs"]
    assert len(rungs) >= 2
    trained = []
    for t in study.trials:
        assert t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL), t.state
        status = t.user_attrs["status"]
        if status in ("complete", "stopped", "failed"):
            trained.append(t)
        if t.state == TrialState.COMPLETE:
            assert status == "complete" and t.user_attrs["full_budget"]
            assert sorted(t.intermediate_values) == list(range(len(rungs)))
            assert t.values[0] == pytest.approx(t.intermediate_values[len(rungs) - 1])
            assert t.user_attrs["gates"] and t.user_attrs["node_id"]
            assert set(t.user_attrs["costs"]) >= {"params", "index_gflops", "query_gflops"}
            # its gate plot is an artifact on the trial's own page, in the folder beside the db
            metas = get_all_artifact_meta(t, storage=study._storage)
            assert [m.filename for m in metas] == [f"gates-trial-{t.number}.svg"]
            assert (tmp_path / "studies.db.artifacts" / metas[0].artifact_id).is_file()
        elif t.state == TrialState.PRUNED:
            assert status == "stopped" and not t.user_attrs["full_budget"]
            assert 1 <= len(t.intermediate_values) < len(rungs)
        else:
            assert t.user_attrs["fail_reason"]
    assert len(trained) == 8
    assert any(t.state == TrialState.PRUNED for t in study.trials)  # pruning happened
    ids = [t.user_attrs["config_id"] for t in trained]
    assert len(ids) == len(set(ids))
    front = pareto_front(study)
    assert front and all(t.state == TrialState.COMPLETE and t.user_attrs["full_budget"]
                         for t in front)
    ref = [t for t in study.trials if t.user_attrs.get("warm_start") == "reference"]
    assert ref and ref[0].params == study.user_attrs["reference_params"]


def _count(url: str, study: str) -> tuple[int, int]:
    try:
        s = optuna.load_study(study_name=study, storage=url)
    except KeyError:
        return 0, 0
    trials = s.get_trials(deepcopy=False)
    done = sum(t.user_attrs.get("status") in ("complete", "stopped", "failed") for t in trials)
    return done, sum(t.state == TrialState.RUNNING for t in trials)


def test_resume_after_sigkill(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/studies.db"
    cmd = [sys.executable, "-m", "nas", "search", "--space", "quick", "--study", "r",
           "--storage", url, "--trials", "8", "--evaluator", "fake", "--concurrency", "2",
           "--quiet"]
    env = dict(os.environ, NAS_FAKE_SLEEP="0.7", PYTHONPATH=str(REPO))
    p = subprocess.Popen(cmd, cwd=tmp_path, env=env, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            done, running = _count(url, "r")
            if done >= 2 and running >= 1:
                break
            assert p.poll() is None, p.stderr.read().decode()
            time.sleep(0.3)
        else:
            pytest.fail("the first run never got two trials done")
    finally:
        os.killpg(p.pid, signal.SIGKILL)  # the driver and the Ray it started
        p.wait()
    study = optuna.load_study(study_name="r", storage=url)
    before = {t.number: (t.state, t.values) for t in study.trials
              if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}
    left_running = [t.number for t in study.trials if t.state == TrialState.RUNNING]
    assert before and left_running

    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, timeout=240)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    study = optuna.load_study(study_name="r", storage=url)
    after = {t.number: (t.state, t.values) for t in study.trials}
    assert all(after[n] == v for n, v in before.items())  # nothing completed was lost
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    for n in left_running:
        t = study.trials[n]
        assert t.state == TrialState.FAIL
        reason = t.user_attrs["fail_reason"]
        requeued = any(x.user_attrs.get("requeued_from") == n for x in study.trials)
        if reason == "driver crashed":  # sampled before the kill: it runs again
            assert requeued
        else:  # killed between create_trial and the end of sampling: nothing to redo
            assert reason.startswith("driver crashed (before its configuration was sampled")
            assert not requeued
    done, _ = _count(url, "r")
    assert done == 8

"""Issue 16, cases 2 and 3: a Ray node leaves, and the Ray head goes away.

Clusters of the test's own, started with `ray start` on this machine
(``ray_cluster.RayCluster``); a node "leaves" when its whole process group (raylet and
workers) is SIGKILLed while it runs a trial.

- A worker node leaves (head + worker, 1 CPU each, 2 trials at once): the trial it ran is
  restarted (``--trial-retries 2``) and trained on the remaining node, or, when Ray
  still placed the restarts on the dead node (it takes Ray some seconds to declare a
  node dead), recorded as failed with the reason; the search reaches its total.
- The head leaves under a driver connected with ``--address``: the driver stops within
  seconds with one line (exit 75), records the running trials as interrupted and
  re-queues them (nothing RUNNING); the same command against a new head resumes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.faulty_evaluator import FAULTY

from ray_cluster import RayCluster
from reliability_helpers import (
    TRAINED,
    assert_kept,
    assert_study_sound,
    check_records,
    fault_while_running,
    load,
    run_nas,
    snapshot,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster():
    c = RayCluster()
    try:
        yield c
    finally:
        c.close()


def _cmd(url: str, address: str, *extra: str) -> list[str]:
    return ["search", "--space", "quick", "--study", "n", "--storage", url, "--trials", "6",
            "--evaluator", FAULTY, "--address", address, "--concurrency", "2",
            "--data", "synthetic|sleep:1.5", "--quiet", *extra]


def _mid_trial(url: str, n: int):
    """Trials running that have reported a rung (so their worker is busy training)."""
    try:
        study = load(url, "n")
    except KeyError:
        return None
    busy = [t.number for t in study.get_trials(deepcopy=False)
            if t.state == TrialState.RUNNING and t.intermediate_values]
    return busy if len(busy) >= n else None


def test_a_node_leaves_and_its_trial_is_retried_on_the_other(cluster: RayCluster,
                                                             tmp_path: Path) -> None:
    cluster.head()
    node = cluster.worker()
    url = f"sqlite:///{tmp_path}/s.db"
    d, rc, took, busy = fault_while_running(
        _cmd(url, cluster.address, "--trial-retries", "2"), tmp_path,
        lambda: _mid_trial(url, 2), "2 trials training at once",
        lambda _: cluster.kill(node), timeout=300)
    assert rc == 0, d.stderr[-3000:]
    assert "Traceback" not in d.stderr, d.stderr[-3000:]
    study = load(url, "n")
    states = assert_study_sound(study, 6)
    trained = [t for t in study.trials if t.user_attrs.get("status") in TRAINED]
    hit = [t for t in trained if t.user_attrs.get("retries") or t.state == TrialState.FAIL]
    assert hit, "the node left between trials: no trial was running on it"
    for t in hit:  # rescued by a retry on the remaining node, or failed with the reason
        if t.state == TrialState.FAIL:
            assert "Ray worker" in t.user_attrs["fail_reason"], t.user_attrs["fail_reason"]
        else:
            assert t.user_attrs["retries"] >= 1, t.user_attrs
    rescued = [t.number for t in hit if t.state != TrialState.FAIL]
    failed = [(t.number, t.user_attrs['fail_reason'][:90]) for t in hit if t.number not in rescued]
    print(f"node left: trials hit {[t.number for t in hit]}, rescued by a retry {rescued}, "
          f"failed {failed}; "
          f"{dict(states)}; the search finished {took:.1f} s after the node left")


def test_the_head_leaves_a_clear_error_then_a_new_head_resumes(cluster: RayCluster,
                                                               tmp_path: Path) -> None:
    head = cluster.head(cpus=2)
    url = f"sqlite:///{tmp_path}/s.db"
    d, rc, took, _ = fault_while_running(
        _cmd(url, cluster.address), tmp_path, lambda: _mid_trial(url, 1), "a trial training",
        lambda _: cluster.kill(head), timeout=120)
    err = d.stderr
    assert rc == 75, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"nas search: error: --address {cluster.address}: the Ray head "
                           "has been unreachable for"), err[-3000:]
    assert "run the same command to resume" in last, last
    assert took < 30, took
    study = load(url, "n")
    check_records(study)
    assert not [t.number for t in study.trials if t.state == TrialState.RUNNING]
    interrupted = [t for t in study.trials if t.user_attrs.get("status") == "interrupted"]
    assert interrupted and all("Ray head lost" in t.user_attrs["fail_reason"]
                               for t in interrupted)
    before = snapshot(url, "n")

    fresh = RayCluster()  # a new head (new port): the same command, pointed at it, resumes
    try:
        fresh.head(cpus=2)
        r = run_nas(_cmd(url, fresh.address), tmp_path, timeout=300)
    finally:
        fresh.close()
    assert r.returncode == 0, r.stderr[-3000:]
    assert_kept(before, url, "n")
    states = assert_study_sound(load(url, "n"), 6)
    print(f"head lost: exit 75 {took:.1f} s after the kill, {len(interrupted)} running "
          f"trial(s) re-queued; resumed on a new head: {dict(states)}\n  {last}")

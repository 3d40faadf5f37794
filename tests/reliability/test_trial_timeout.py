"""Issue 16, case 5: a slow or stuck trial and ``--trial-timeout``.

On a real Ray with 2 CPUs, the fake evaluator hangs every configuration of width 32 (it
never reports; it writes its pid first). With ``--trial-timeout 3s`` those trials are
FAIL with "exceeded --trial-timeout 3s at epoch 0", their worker processes are gone (so
their CPUs ran the other trials: the search reaches its total), and the others train as
usual. A slow trial that reached a rung says which epoch it reached.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from nas.search.driver import SearchOptions, run_search
from nas.search.evaluator import EvaluatorSpec, RayOptions
from tests.faulty_evaluator import FAULTY

from reliability_helpers import FOUR, TRAINED, assert_study_sound, load

pytestmark = pytest.mark.slow

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _search(tmp_path: Path, data: str, timeout_s: float, trials: int = 4, prune: bool = True):
    space = tmp_path / "four.yaml"  # 4 configurations, all trained: every case occurs
    space.write_text(FOUR)
    opts = SearchOptions(space=str(space), study="t", storage=f"sqlite:///{tmp_path}/s.db",
                         data=data, trials=trials, seed=1, quiet=True,
                         evaluator=EvaluatorSpec.of_module(FAULTY), trial_timeout_s=timeout_s,
                         prune=prune,
                         ray=RayOptions(concurrency=2, max_failures=1))
    t0 = time.monotonic()
    s = run_search(opts)
    return load(s.storage, "t"), time.monotonic() - t0


def test_stuck_trials_are_failed_and_their_workers_freed(ray_session, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    study, took = _search(tmp_path, f"synthetic|sleep:0.2|hang:width=32@{pids}", 3.0)
    states = assert_study_sound(study, 4)
    trained = [t for t in study.trials if t.user_attrs.get("status") in TRAINED]
    stuck = [t for t in trained if t.user_attrs["fusion"]["width"] == 32]
    assert len(stuck) == 2
    for t in stuck:
        assert t.state == TrialState.FAIL, t.user_attrs
        reason = t.user_attrs["fail_reason"]
        assert reason.startswith("exceeded --trial-timeout 3s at epoch 0 "), reason
        assert "retries" not in t.user_attrs  # a timeout is not retried
    for t in trained:
        if t.user_attrs["fusion"]["width"] == 16:
            assert t.state in (TrialState.COMPLETE, TrialState.PRUNED), t.user_attrs
    hung = [int(p.name.split("-")[1]) for p in pids.iterdir()]
    assert len(hung) == 2, hung
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in hung) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in hung if _alive(p)], "a timed-out trial's worker still runs"
    print(f"stuck trials: {dict(states)} in {took:.1f} s; reason: "
          f"{stuck[0].user_attrs['fail_reason']!r}")


def test_slow_trial_reports_the_epoch_it_reached(ray_session, tmp_path: Path) -> None:
    # every rung takes 3 s (rungs at epochs 1 and 2): a trial reaches epoch 1, then is
    # stopped by the 5 s limit in its second rung
    study, _ = _search(tmp_path, "synthetic|sleep:3", 5.0, trials=2, prune=False)
    assert_study_sound(study, 2)
    reached = []
    for t in study.trials:
        if t.user_attrs.get("status") not in TRAINED:
            continue
        assert t.state == TrialState.FAIL
        m = re.match(r"exceeded --trial-timeout 5s at epoch (\S+) ", t.user_attrs["fail_reason"])
        assert m, t.user_attrs["fail_reason"]
        # the epoch named is the last rung it reported (kept as an intermediate value)
        want = [1.0, 2.0][max(t.intermediate_values)] if t.intermediate_values else 0.0
        assert float(m.group(1)) == want, (m.group(1), t.intermediate_values)
        reached.append(want)
    print(f"slow trials stopped at epochs {reached}")
    assert any(reached), "no trial reached a rung before the limit (machine too loaded?)"

"""``nas search --time-budget``: bad values, a run that ends by itself and resumes, and a
SIGKILL in the middle of a budgeted run that loses nothing."""

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

from nas.cli import main
from nas.search.space import load_space, parse_duration

REPO = Path(__file__).resolve().parents[2]
TRAINED = ("complete", "stopped", "failed")
optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_parse_duration_units() -> None:
    assert parse_duration("90s") == 90 and parse_duration("20m") == 1200
    assert parse_duration("1.5h") == 5400 and parse_duration("45") == 45
    for bad in ("0", "0m", "-5m", "abc", "5 minutes", "", "1e3s"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_default_space_has_a_time_budget() -> None:
    assert load_space("gated_fusion").time_budget_s == 300


@pytest.mark.parametrize("value", ["0", "-5m", "abc", "10x"])
def test_bad_time_budget_is_one_line_exit_2_nothing_written(value, tmp_path, monkeypatch,
                                                            capsys) -> None:
    monkeypatch.chdir(tmp_path)
    rc = main(["search", "--space", "quick", "--evaluator", "fake", "--executor", "local",
               f"--time-budget={value}"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("nas search: error: --time-budget"), err
    assert list(tmp_path.iterdir()) == []  # no studies.db, nothing


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), RAY_AUTH_MODE="disabled",
               RAY_USAGE_STATS_ENABLED="0")
    env.update(extra)
    return env


def _search(url: str, budget: str) -> list[str]:
    return [sys.executable, "-m", "nas", "search", "--space", "quick", "--study", "tb",
            "--storage", url, "--trials", "1000", "--evaluator", "fake", "--executor", "local",
            "--time-budget", budget]


def _trained(url: str) -> list:
    study = optuna.load_study(study_name="tb", storage=url)
    return [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("status") in TRAINED]


def test_time_budget_ends_the_run_and_the_next_run_continues(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/studies.db"
    t0 = time.monotonic()
    r = subprocess.run(_search(url, "20s"), cwd=tmp_path, env=_env(NAS_FAKE_SLEEP="0.3"),
                       capture_output=True, text=True, timeout=120)
    wall = time.monotonic() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    assert "time budget reached" in r.stderr and "fresh budget" in r.stderr
    assert wall < 20 + 30  # the budget, plus interpreter start and the summary
    first = _trained(url)
    assert 2 <= len(first) < 1000
    study = optuna.load_study(study_name="tb", storage=url)
    cut = [t for t in study.trials if "time budget" in str(t.user_attrs.get("fail_reason"))]
    assert cut and all(t.state == TrialState.FAIL for t in cut)  # the one running at the end
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    for t in cut:  # ... re-queued with its configuration
        assert any(x.user_attrs.get("requeued_from") == t.number for x in study.trials)

    r = subprocess.run(_search(url, "20s"), cwd=tmp_path, env=_env(NAS_FAKE_SLEEP="0.3"),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming study 'tb'" in r.stderr and "time budget 0m20s (this run)" in r.stderr
    second = _trained(url)
    assert len(second) > len(first)  # a fresh budget: it trained more
    before = {t.number: (t.state, t.values) for t in first}
    after = {t.number: (t.state, t.values) for t in second}
    assert all(after[n] == v for n, v in before.items())  # nothing lost or changed
    ids = [t.user_attrs["config_id"] for t in second]
    assert len(ids) == len(set(ids))


def test_sigkill_in_the_middle_of_a_budget_loses_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/studies.db"
    p = subprocess.Popen(_search(url, "10m"), cwd=tmp_path, env=_env(NAS_FAKE_SLEEP="0.3"),
                         start_new_session=True, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            try:
                if len(_trained(url)) >= 3:
                    break
            except KeyError:  # the study is not created yet
                pass
            assert p.poll() is None, p.stderr.read().decode()
            time.sleep(0.3)
        else:
            pytest.fail("the budgeted run never trained three trials")
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    before = {t.number: (t.state, t.values, t.user_attrs["status"]) for t in _trained(url)}

    r = subprocess.run(_search(url, "20s"), cwd=tmp_path, env=_env(NAS_FAKE_SLEEP="0.3"),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    after = {t.number: (t.state, t.values, t.user_attrs["status"]) for t in _trained(url)}
    assert all(after[n] == v for n, v in before.items())  # every finished trial kept
    assert len(after) > len(before), r.stderr[-2000:]
    study = optuna.load_study(study_name="tb", storage=url)
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]

"""Shared helpers of tests/reliability: run `nas` as a subprocess, check study invariants."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Sequence

import optuna
import pytest
from optuna.trial import TrialState

REPO = Path(__file__).resolve().parents[2]
TRAINED = ("complete", "stopped", "failed")
# Tiny real data for the runs that train for real.
TINY = ("synthetic:clips=48,val_clips=24,test_clips=0,frames=4,audio_tokens=4,text_tokens=3,"
        "video_dim=16,audio_dim=16,text_dim=16,min_captions=1,max_captions=2")

# A space of 4 configurations (every one is trained in a 4-trial search).
FOUR = """
name: four
base: {fusion: {width: 16, layers: 1, heads: 2, resampler_layers: 1, resampler_queries: 4}}
dimensions:
  width: {choices: [16, 32]}
  layers: {choices: [1, 2]}
proxy: {min_budget: 1, max_budget: 2, eta: 2}
"""

optuna.logging.set_verbosity(optuna.logging.WARNING)


def nas_env(**extra: str) -> dict[str, str]:
    """The environment of a `nas` subprocess (this checkout first on the path)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), RAY_AUTH_MODE="disabled",
               RAY_USAGE_STATS_ENABLED="0", OMP_NUM_THREADS="1")
    env.pop("NAS_FAULTPOINT", None)
    env.update(extra)
    return env


def run_nas(args: Sequence[str], cwd: Path, timeout: float = 240,
            **env: str) -> subprocess.CompletedProcess:
    """`python -m nas ARGS` in its own session (so its Ray children can be cleaned up)."""
    p = subprocess.Popen([sys.executable, "-m", "nas", *args], cwd=cwd, env=nas_env(**env),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    finally:
        _kill_group(p.pid)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def _kill_group(pgid: int) -> None:
    """SIGKILL what is left of a process group we started (e.g. the Ray a killed driver
    started); a no-op when the group is gone."""
    import signal

    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def load(url: str, name: str) -> optuna.Study:
    """The study, read through the tool's own storage opener: a poll that runs while the
    driver creates a new database must survive the same creation race the driver does
    (both stamp Optuna's schema version; one insert fails with IntegrityError, seen once
    in CI under load)."""
    from nas.search.study import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(url))


def snapshot(url: str, name: str) -> dict[int, tuple]:
    """Finished trained trials: number -> (state, values, config_id, status)."""
    try:
        study = load(url, name)
    except KeyError:
        return {}
    return {t.number: (t.state, t.values, t.user_attrs.get("config_id"),
                       t.user_attrs.get("status"))
            for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}


def check_records(study: optuna.Study) -> None:
    """Invariants that hold at ANY moment, crash or not: a finished trial has its full
    record (no COMPLETE without its attributes), RUNNING only while a driver works."""
    for t in study.get_trials(deepcopy=False):
        s = t.user_attrs.get("status")
        if t.state == TrialState.COMPLETE:
            assert s == "complete" and t.user_attrs["full_budget"], (t.number, s)
            assert t.user_attrs.get("metrics") and t.user_attrs.get("config_id"), t.number
            assert t.values is not None and len(t.values) == len(study.directions)
        elif t.state == TrialState.PRUNED:
            assert s == "stopped" and not t.user_attrs["full_budget"], (t.number, s)
            assert t.intermediate_values and t.system_attrs.get("nas:learn_values")
        elif t.state == TrialState.FAIL:
            assert s in ("failed", "infeasible", "duplicate", "crashed", "interrupted",
                         "surplus"), (t.number, s)
            assert t.user_attrs.get("fail_reason"), t.number


def check_finished(study: optuna.Study, n_trials: int) -> None:
    """After a finished run: the total reached exactly, nothing RUNNING, no config trained
    twice, every crashed trial re-queued (when it had a configuration)."""
    check_records(study)
    trials = study.get_trials(deepcopy=False)
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    trained = [t for t in trials if t.user_attrs.get("status") in TRAINED]
    assert len(trained) == n_trials, Counter(t.user_attrs.get("status") for t in trials)
    ids = Counter(t.user_attrs["config_id"] for t in trained)
    assert max(ids.values()) == 1, [k for k, v in ids.items() if v > 1]
    by_number = {t.number: t for t in trials}
    for t in trials:
        if t.user_attrs.get("status") in ("crashed", "interrupted"):
            re = [x for x in trials if x.user_attrs.get("requeued_from") == t.number]
            had_config = "fixed_params" in t.system_attrs or t.user_attrs.get("config_id")
            assert len(re) == (1 if had_config else 0), (t.number, len(re))
        if t.user_attrs.get("status") == "duplicate":
            orig = by_number[t.user_attrs["duplicate_of"]]
            assert orig.user_attrs["config_id"] == t.user_attrs["config_id"]


def assert_kept(before: dict[int, tuple], url: str, name: str) -> None:
    """No finished trial lost or changed."""
    after = snapshot(url, name)
    for n, rec in before.items():
        assert after.get(n) == rec, (n, rec, after.get(n))


class LiveDriver:
    """`python -m nas ARGS` running in the background (its own session), its stderr
    lines kept with the time each arrived (time.monotonic()), for tests that act on
    the infrastructure while it runs. ``wait()`` returns the exit status; ``close()``
    kills what is left of its process group."""

    def __init__(self, args: Sequence[str], cwd: Path, **env: str) -> None:
        import threading
        import time

        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "nas", *args], cwd=cwd,
                                     env=nas_env(**env), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        self.lines: list[tuple[float, str]] = []
        self.stdout = ""

        def read_err() -> None:
            for line in self.proc.stderr:
                self.lines.append((time.monotonic(), line.rstrip("\n")))

        def read_out() -> None:
            self.stdout = self.proc.stdout.read()

        self._readers = [threading.Thread(target=f, daemon=True) for f in (read_err, read_out)]
        for t in self._readers:
            t.start()

    @property
    def stderr(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def first(self, needle: str) -> float | None:
        """When the first stderr line containing ``needle`` arrived, else None."""
        return next((t for t, line in self.lines if needle in line), None)

    def wait(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            _kill_group(self.proc.pid)
        for t in self._readers:
            t.join(timeout=5)
        return rc

    def close(self) -> None:
        _kill_group(self.proc.pid)


def fault_while_running(args: Sequence[str], cwd: Path, ready, what: str, fault,
                        timeout: float, ready_timeout: float = 180, **env: str):
    """Start `nas ARGS`, wait until ``ready()`` returns something (``what``), call
    ``fault(that)``, wait for the driver to exit. Returns (driver, exit status, seconds
    from the end of ``fault`` to the exit, what ``ready`` returned)."""
    import time

    d = LiveDriver(args, cwd, **env)
    try:
        got = wait_for(ready, ready_timeout, what)
        fault(got)
        t = time.monotonic()
        rc = d.wait(timeout=timeout)
        return d, rc, time.monotonic() - t, got
    finally:
        d.close()


def wait_for(cond, timeout: float, what: str, every: float = 0.2):
    """Poll ``cond()`` until it returns something truthy (returned), or fail naming ``what``."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def status_counts(url: str, name: str) -> Counter:
    """status attr -> count, plus 'RUNNING' (trials in that state), read with a fresh
    connection that is closed again (so a database restart does not see it)."""
    storage = optuna.storages.RDBStorage(url)
    try:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            return Counter()
        trials = study.get_trials(deepcopy=False)
        c = Counter(t.user_attrs.get("status") for t in trials)
        c["RUNNING"] = sum(t.state == TrialState.RUNNING for t in trials)
        return c
    finally:
        storage.engine.dispose()


def assert_study_sound(study: optuna.Study, n_trials: int) -> Counter:
    """check_finished, and the counts by state (returned, for the figures)."""
    check_finished(study, n_trials)
    return Counter(t.state.name for t in study.get_trials(deepcopy=False))

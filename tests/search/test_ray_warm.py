"""Warm Ray workers: a local cluster started by ``nas search`` warms its pre-started workers
(Tune, torch, the evaluator, the data) while the driver prepares, and Tune's trial actors
start on those workers instead of fresh processes.

Real Ray in a child process: the test session's own Ray (``ray_session``) is started
without the warm-up, and a second cluster in this process would replace it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    from nas.search import ray_adapter
    from nas.search.evaluator import EvaluatorSpec, RayOptions
    from ray import tune

    SPEC = "synthetic:clips=32,val_clips=8,test_clips=0"

    def probe(config):
        # runs in the trial's actor: was this worker warmed before the trials were asked for?
        import nas.search._worker_preload as pre
        cached = ("nas.data:load_data", SPEC) in ray_adapter._DATA_CACHE
        tune.report({"warm_started_at": pre.STARTED_AT, "cached": cached,
                     "torch": "torch" in sys.modules, "pid": os.getpid()})

    def ray_workers():
        # Ray's idle Python workers on this machine (Linux /proc), by pid: a starting one
        # runs default_worker.py, a started one has renamed itself "ray::IDLE"
        pids = set()
        for d in os.listdir("/proc"):
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    cmd = f.read()
                if b"default_worker.py" in cmd or cmd.startswith(b"ray::IDLE"):
                    pids.add(int(d))
            except (OSError, ValueError):
                pass
        return pids

    before = ray_workers()
    warm = EvaluatorSpec() if sys.argv[2] == "warm" else None
    os.cpu_count = lambda: 2  # a 2-CPU cluster on any machine
    assert ray_adapter.init_ray(RayOptions(concurrency=2), warm=warm, data_spec=SPEC)
    ready_dir = ray_adapter._WARM.get("dir")
    waited = ray_adapter.wait_warm(120)  # what the searcher's first ask does
    ready = sorted(int(p) for p in os.listdir(ready_dir)) if ready_dir else []
    deadline = time.time() + 60
    while len(ray_workers() - before) < 2 and time.time() < deadline:
        time.sleep(0.2)  # Ray pre-starts one worker per CPU (the cluster has 2)
    prestarted = sorted(ray_workers() - before)
    fit_at = time.time()
    tuner = tune.Tuner(tune.with_resources(probe, {"cpu": 1}),
                       tune_config=tune.TuneConfig(num_samples=2, max_concurrent_trials=2),
                       run_config=tune.RunConfig(storage_path=sys.argv[3], verbose=0))
    rows = [dict(r.metrics) for r in tuner.fit()]
    ray_adapter.shutdown_ray()
    json.dump({"fit_at": fit_at, "prestarted": prestarted, "waited": waited, "ready": ready,
               "rows": [{k: r[k] for k in
               ("warm_started_at", "cached", "torch", "pid")} for r in rows]},
              open(sys.argv[1], "w"))
""")


def _run(tmp_path: Path, mode: str) -> dict:
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    out = tmp_path / f"{mode}.json"
    proc = subprocess.run([sys.executable, str(script), str(out), mode, str(tmp_path / "tune")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_trial_actors_start_on_warm_pre_started_workers(tmp_path: Path) -> None:
    res = _run(tmp_path, "warm")
    assert len(res["rows"]) == 2 and len(res["prestarted"]) >= 2, res
    # the driver's wait ended when both workers had warmed up, before its timeout
    assert len(res["ready"]) >= 2 and res["waited"] < 120, res
    warm = [row for row in res["rows"] if row["pid"] in res["ready"]]
    # A worker Ray started with the cluster, warmed before Tune asked for the actor. On a
    # busy machine Ray's idle-worker killer used to reclaim warm workers while Tune set
    # up, and the trials started on fresh processes (once in a full CI run; 3 of 8 probes
    # beside two busy processes). init_ray now gives idle workers a minute (0 of 9), but
    # a trial that lands on a fresh process is no error: it loads its data itself, as
    # every trial did before the warm-up. At least one must find a warm one.
    assert warm, res
    for row in warm:
        assert row["pid"] in res["prestarted"] and row["cached"] and row["torch"], row


def test_without_warm_up_trial_actors_start_cold(tmp_path: Path) -> None:
    """The control: without the warm-up the same probe sees no data and no early start."""
    res = _run(tmp_path, "cold")
    for row in res["rows"]:
        assert not row["cached"], row
        # Tune's runtime environment keeps its actors off the pre-started workers
        assert row["pid"] not in res["prestarted"], res
    assert res["waited"] == 0 and res["ready"] == [], res  # nothing to wait for

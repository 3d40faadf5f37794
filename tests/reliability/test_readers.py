"""Issue 6.5: readers beside the writer on one SQLite file.

While `nas search` writes trials, a reader process polls ``optuna.load_study(...).trials``
(plain Optuna, default SQLite settings, as a user's script would) and optuna-dashboard
serves the same file and is polled over HTTP. Neither the writer nor the readers may fail
("database is locked" or anything else), and the readers must see the new trials as they
are written (the driver puts the file in WAL mode: readers never block the writer and see
each commit; optuna-dashboard re-reads at most every 2 s, its own cache).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from reliability_helpers import check_finished, load, nas_env, run_nas

pytestmark = pytest.mark.slow

READER = r"""
import sys, time, optuna
optuna.logging.set_verbosity(optuna.logging.ERROR)
url, name, stop = sys.argv[1], sys.argv[2], sys.argv[3]
import os
seen = []
while not os.path.exists(stop):
    seen.append(len(optuna.load_study(study_name=name, storage=url).trials))
    time.sleep(0.02)
print(" ".join(map(str, seen)))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        return json.loads(r.read())


def test_reader_and_dashboard_beside_the_writer(tmp_path: Path) -> None:
    db = tmp_path / "studies.db"
    url = f"sqlite:///{db}"
    base = ["search", "--space", "quick", "--study", "rw", "--storage", url, "--evaluator",
            "fake", "--executor", "local", "--quiet"]
    r = run_nas([*base, "--trials", "2"], tmp_path)  # the study exists before the readers
    assert r.returncode == 0, r.stderr[-2000:]
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, url, "rw", str(stop)],
                              env=nas_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, start_new_session=True)
    port = _free_port()
    dash = subprocess.Popen([str(Path(sys.executable).with_name("optuna-dashboard")), url,
                             "--host", "127.0.0.1", "--port", str(port), "--quiet"],
                            env=nas_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                study_id = _get(f"{api}/studies")["study_summaries"][0]["study_id"]
                break
            except OSError:
                assert dash.poll() is None, dash.communicate()[1][-2000:]
                assert time.monotonic() < deadline, "optuna-dashboard did not come up"
                time.sleep(0.3)
        writer = subprocess.Popen([sys.executable, "-m", "nas", *base, "--trials", "30"],
                                  cwd=tmp_path, env=nas_env(NAS_FAKE_SLEEP="0.1"),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        dash_counts = []
        while writer.poll() is None:
            dash_counts.append(len(_get(f"{api}/studies/{study_id}")["trials"]))
            time.sleep(0.1)
        out, err = writer.communicate()
        assert writer.returncode == 0, err[-3000:]
        final = len(load(url, "rw").trials)
        deadline = time.monotonic() + 10  # the dashboard caches trials for 2 s
        while dash_counts[-1] != final and time.monotonic() < deadline:
            time.sleep(0.3)
            dash_counts.append(len(_get(f"{api}/studies/{study_id}")["trials"]))
    finally:
        stop.touch()
        r_out, r_err = reader.communicate(timeout=60)
        dash.terminate()
        d_out, d_err = dash.communicate(timeout=30)
    assert reader.returncode == 0, r_err[-3000:]
    assert "locked" not in err + r_err + d_err
    seen = [int(x) for x in r_out.split()]
    check_finished(load(url, "rw"), 30)
    # both readers saw the study grow while it was written, and caught up at the end
    # (optuna-dashboard re-reads the storage at most every 2 s: fewer steps there)
    assert len(set(seen)) > 5 and seen == sorted(seen) and seen[-1] == final, seen[-5:]
    assert len(set(dash_counts)) >= 3 and dash_counts[-1] == final, dash_counts

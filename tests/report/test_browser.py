"""Browser check: a tiny real search, then the dashboard and the report in headless Chromium.

The rendered DOM (after the page's JavaScript ran) must contain the study name and the
objective names, and the trials the dashboard's study page lists as "Best Trials" must be
exactly ``nas``'s Pareto front (``nas.search.pareto.pareto_front``): for the search's own
three-objective study, and for a two-objective copy of it (optuna-dashboard 0.21 decides its
best trials with its own code, a sort-and-sweep for two objectives and a pairwise check for
more; both keep trials with identical values, as ``nas`` does). Screenshots go to
``$NAS_TEST_ARTIFACTS`` or ``test-artifacts/`` at the repository root. Without Chromium the
test is skipped, except under CI (``CI=true``), where ``.ci/run`` installs it and a missing
browser is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from report_helpers import DATA

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
OBJECTIVES = ("recall", "query_gflops", "index_gflops")


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is not installed but CI=true: .ci/run must install it")
        pytest.skip("chromium not installed (apt-get install -y chromium); not in CI")
    return exe


def _artifacts_dir() -> Path:
    d = Path(os.environ.get("NAS_TEST_ARTIFACTS") or REPO / "test-artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _render(exe: str, url: str, screenshot: Path, profile: Path) -> str:
    """The DOM after scripts ran (virtual time), with a screenshot taken in the same run."""
    cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000",
           "--window-size=1280,900", f"--screenshot={screenshot}", "--dump-dom", url]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f"chromium failed ({res.returncode}): {res.stderr[-2000:]}"
    return res.stdout


def _env() -> dict[str, str]:
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def dashboard_best_trials(dom: str) -> list[int]:
    """Trial numbers the study page lists in its "Best Trials" card (or "Best Trial
    (number=N)" when there is one)."""
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))
    one = re.search(r"Best Trial \(number=(\d+)\)", text)
    if one:
        return [int(one.group(1))]
    start = text.rfind("Best Trials")
    assert start >= 0, "no Best Trials card on the dashboard's study page"
    return [int(n) for n in re.findall(r"Trial (\d+) Objective Values", text[start:])]


def _copy_with_two_objectives(src, storage: str, name: str):
    """A new study holding ``src``'s trials with (recall, query_gflops) only."""
    import warnings

    import optuna

    dst = optuna.create_study(study_name=name, storage=storage,
                              directions=["maximize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dst.set_metric_names(["recall", "query_gflops"])
    for t in src.get_trials(deepcopy=False):
        values = t.values[:2] if t.values is not None else None
        dst.add_trial(optuna.trial.create_trial(
            state=t.state, values=values, params=t.params, distributions=t.distributions,
            user_attrs=t.user_attrs, intermediate_values=t.intermediate_values))
    return dst


def test_dashboard_and_report_render_in_chromium(tmp_path):
    exe = _chromium()
    art = _artifacts_dir()
    db = tmp_path / "studies.db"
    storage = f"sqlite:///{db}"
    study = "browser-check"

    # a tiny real search: real Ray trials, real training on tiny synthetic data, every
    # trial to full budget
    res = subprocess.run(
        [sys.executable, "-m", "nas", "search", "--space", str(REPO / "search_spaces/quick.yaml"),
         "--study", study, "--storage", storage, "--data", DATA, "--trials", "5",
         "--min-budget", "0.25", "--max-budget", "0.5", "--no-prune",
         "--quiet"], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=_env())
    assert res.returncode == 0, f"nas search failed:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"

    import optuna

    from nas.search.pareto import pareto_front

    st = optuna.load_study(study_name=study, storage=storage)
    assert st.metric_names == list(OBJECTIVES)
    study_id = st._study_id
    front = sorted(t.number for t in pareto_front(st))
    costs = {tuple(t.values[1:]) for t in pareto_front(st)}
    assert len(front) >= 2 and len(costs) >= 2  # a front with distinct costs
    st2 = _copy_with_two_objectives(st, storage, study + "-2d")
    front2 = sorted(t.number for t in pareto_front(st2))

    # --- the dashboard ------------------------------------------------------------------
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas", "dashboard", "--storage", storage, "--port", str(port)],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"nas dashboard exited {proc.returncode}:\n{proc.stdout.read()}")
            try:
                with urllib.request.urlopen(f"{base}/api/studies", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "nas dashboard did not serve within 60 s"
            time.sleep(0.3)
        dom = _render(exe, f"{base}/dashboard/studies/{study_id}", art / "dashboard-study.png",
                      tmp_path / "profile-dashboard")
        dom2 = _render(exe, f"{base}/dashboard/studies/{st2._study_id}",
                       art / "dashboard-study-2d.png", tmp_path / "profile-dashboard-2d")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    (art / "dashboard-study.html").write_text(dom)
    assert study in dom
    for name in OBJECTIVES:
        assert name in dom, f"objective {name!r} not in the dashboard's rendered DOM"
    # the dashboard's best trials are nas's front, trial for trial
    assert sorted(dashboard_best_trials(dom)) == front
    assert sorted(dashboard_best_trials(dom2)) == front2
    # the gate plots were attached as artifacts beside the storage
    assert any(Path(f"{db}.artifacts").iterdir())

    # --- the report, from disk ---------------------------------------------------------------
    out = tmp_path / "report.html"
    res = subprocess.run([sys.executable, "-m", "nas", "report", "--study", study, "--storage",
                          storage, "--out", str(out)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path, env=_env())
    assert res.returncode == 0, res.stderr
    dom = _render(exe, out.as_uri(), art / "report.png", tmp_path / "profile-report")
    assert study in dom
    for name in OBJECTIVES:
        assert name in dom
    # plotly drew the figures (its SVG roots exist only after the script ran)
    assert dom.count('class="main-svg"') >= 3

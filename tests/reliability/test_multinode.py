"""Issue 6.3: a real two-node Ray cluster started with `ray start` on this machine.

`nas search --address` runs trials on both nodes (node id recorded per trial), and only
the driver touches the SQLite file: every trial checks, in its worker process, that the
file is neither open there nor named in its environment (the fake evaluator's ``forbid``
fault makes the trial FAIL otherwise).

The cluster is this test's own: its own temp dirs and ports, each `ray start` in its own
process group, and it is stopped by killing exactly those groups (never `ray stop`, which
would stop every Ray on the machine). Ray resolves ``--node-ip-address 127.0.0.1`` to the
machine's own address (``services.resolve_ip_for_localhost``); traffic stays on this host.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from reliability_helpers import check_finished, load, nas_env, run_nas

pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_group(pgid: int) -> None:
    """Stop one `ray start`'s process group: TERM, then KILL what is left."""
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


@pytest.fixture
def two_node_cluster():
    """A head node and a second node, 1 CPU each; yields the head's address."""
    port = _free_port()
    groups: list[int] = []
    dirs: list[str] = []
    env = nas_env()

    def start(*args: str) -> None:
        d = tempfile.mkdtemp(prefix="rn", dir="/tmp")  # Ray's socket paths must stay short
        dirs.append(d)
        p = subprocess.Popen([RAY, "start", *args, "--temp-dir", d, "--num-cpus", "1",
                              "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
                              "--dashboard-agent-listen-port", str(_free_port())],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
        groups.append(p.pid)  # the group of everything this `ray start` leaves running
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out[-3000:]

    try:
        start("--head", "--port", str(port), "--include-dashboard=false",
              "--dashboard-port", str(_free_port()))
        start("--address", f"127.0.0.1:{port}")
        yield f"127.0.0.1:{port}"
    finally:
        for g in reversed(groups):
            _stop_group(g)
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


def test_search_runs_on_both_nodes_and_only_the_driver_writes(two_node_cluster: str,
                                                              tmp_path: Path) -> None:
    db = tmp_path / "studies.db"
    url = f"sqlite:///{db}"
    data = f"synthetic|sleep:0.4|forbid:{db}"
    r = run_nas(["search", "--space", "quick", "--study", "mn", "--storage", url,
                 "--trials", "6", "--evaluator", "fake", "--address", two_node_cluster,
                 "--concurrency", "2", "--data", data, "--quiet"], tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    study = load(url, "mn")
    check_finished(study, 6)
    trained = [t for t in study.trials if t.user_attrs["status"] in ("complete", "stopped")]
    assert len(trained) == 6, [t.user_attrs.get("fail_reason") for t in study.trials]
    nodes = {t.user_attrs["node_id"] for t in trained}
    assert len(nodes) >= 2, nodes
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trained)

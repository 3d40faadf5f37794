"""Issue 6.3: a real two-node Ray cluster started with `ray start` on this machine.

`nas search --address` runs trials on both nodes (node id recorded per trial), and only
the driver touches the SQLite file: every trial checks, in its worker process, that the
file is neither open there nor named in its environment (the fake evaluator's ``forbid``
fault makes the trial FAIL otherwise).

The cluster is this test's own (``ray_cluster.RayCluster``: its own temp dirs and ports,
stopped by killing exactly its process groups, never `ray stop`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.faulty_evaluator import FAULTY

from ray_cluster import RayCluster
from reliability_helpers import check_finished, load, run_nas

pytestmark = pytest.mark.slow


@pytest.fixture
def two_node_cluster():
    """A head node and a second node, 1 CPU each; yields the head's address."""
    cluster = RayCluster()
    try:
        cluster.head()
        cluster.worker()
        yield cluster.address
    finally:
        cluster.close()


def test_search_runs_on_both_nodes_and_only_the_driver_writes(two_node_cluster: str,
                                                              tmp_path: Path) -> None:
    db = tmp_path / "studies.db"
    url = f"sqlite:///{db}"
    # Trials long enough to overlap even at a high load: two trials running at once on a
    # cluster of two 1-CPU nodes must be on different nodes (a CI run at load 17 with
    # 0.4 s trials saw every trial finish before the next one started, all on one node).
    data = f"synthetic|sleep:1.5|forbid:{db}"
    r = run_nas(["search", "--space", "quick", "--study", "mn", "--storage", url,
                 "--trials", "6", "--evaluator", FAULTY, "--address", two_node_cluster,
                 "--concurrency", "2", "--data", data, "--quiet"], tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    study = load(url, "mn")
    check_finished(study, 6)
    trained = [t for t in study.trials if t.user_attrs["status"] in ("complete", "stopped")]
    assert len(trained) == 6, [t.user_attrs.get("fail_reason") for t in study.trials]
    nodes = {t.user_attrs["node_id"] for t in trained}
    assert len(nodes) >= 2, nodes
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trained)

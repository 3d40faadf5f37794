"""Proxy training: one report per rung, early stop, NaN failure with its reason, determinism."""

from __future__ import annotations

import math

import pytest

from nas.errors import TrainingFailed
from nas.train import train_proxy


def test_report_once_per_rung_with_increasing_steps(small_data, tiny_fusion, tiny_train) -> None:
    calls: list[tuple[int, dict]] = []
    res = train_proxy(tiny_fusion, tiny_train, small_data, rungs=[0.5, 1.0, 2.0],
                      report=lambda i, m: calls.append((i, m)))
    assert [i for i, _ in calls] == [0, 1, 2]
    steps = [m["step"] for _, m in calls]
    assert steps == sorted(steps) and len(set(steps)) == 3
    assert [m["epochs"] for _, m in calls] == pytest.approx([0.5, 1.0, 2.0], abs=0.2)
    for _, m in calls:
        for key in ("t2v_r1", "t2v_r5", "t2v_r10", "t2v_mdr", "v2t_r1", "recall", "v2t_recall",
                    "wall_s", "train_loss"):
            assert key in m and math.isfinite(m[key]), key
    assert not res.stopped and res.epochs == pytest.approx(2.0)
    assert res.history == [m for _, m in calls] and res.metrics == calls[-1][1]
    assert res.costs["params"] > 0 and res.costs["query_gflops"] > res.costs["index_gflops"] > 0
    assert res.gate_stats and "warnings" in res.gate_stats  # recorded at the last rung


def test_report_true_stops_early(small_data, tiny_fusion, tiny_train) -> None:
    seen: list[int] = []
    res = train_proxy(tiny_fusion, tiny_train, small_data, rungs=[0.5, 2.0],
                      report=lambda i, m: seen.append(i) or True)
    assert seen == [0] and res.stopped and len(res.history) == 1
    assert res.epochs == pytest.approx(0.5, abs=0.2) and res.gate_stats == {}


def test_exploding_learning_rate_fails_with_where_and_why(small_data, tiny_fusion,
                                                          tiny_train) -> None:
    with pytest.raises(TrainingFailed) as e:
        train_proxy(tiny_fusion, tiny_train.replace(lr=1e30, warmup_frac=0.0), small_data)
    msg = str(e.value)
    assert " at epoch 1 step " in msg, msg
    assert "loss is nan" in msg or "loss is inf" in msg or "gradient norm is" in msg, msg


def test_non_finite_input_feature_names_the_loss_part(small_data, tiny_fusion, tiny_train) -> None:
    import copy

    import numpy as np

    bad = copy.copy(small_data)
    bad.train = copy.copy(small_data.train)
    video = np.array(small_data.train.video, dtype=np.float32)
    video[:, 0, 0] = np.inf  # every clip: the first batch already sees it
    bad.train.video = video
    with pytest.raises(TrainingFailed) as e:
        train_proxy(tiny_fusion, tiny_train, bad)
    assert "at epoch 1 step 1 " in str(e.value) and "loss is nan" in str(e.value), str(e.value)


def test_two_cpu_runs_with_one_seed_give_the_same_metrics(small_data, tiny_fusion,
                                                          tiny_train) -> None:
    a = train_proxy(tiny_fusion, tiny_train.replace(epochs=1.0), small_data)
    b = train_proxy(tiny_fusion, tiny_train.replace(epochs=1.0), small_data)
    assert a.metrics | {"wall_s": 0} == b.metrics | {"wall_s": 0}
    assert a.gate_stats == b.gate_stats


def test_no_optuna_or_ray_import() -> None:
    import subprocess
    import sys

    code = ("import sys, nas.train, nas.cost, nas.checkpoint; "
            "bad=[m for m in ('optuna','ray') if m in sys.modules]; "
            "print(bad); sys.exit(bool(bad))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr

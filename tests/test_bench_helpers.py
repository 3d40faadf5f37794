"""The analysis helpers of the benchmark scripts (pure functions; no training)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import bench_fidelity  # noqa: E402
import bench_search  # noqa: E402
import common  # noqa: E402


def _trial(wall: float, epochs: float, full: bool, recall: float = math.nan,
           q: float = 0.1) -> dict:
    return {"wall_s": wall, "epochs": epochs, "full": full, "recall": recall,
            "query_gflops": q}


def test_curve_counts_stopped_compute_but_not_their_values() -> None:
    ref = [0.0, 1.0]
    c = bench_search.curve([_trial(1.0, 0.5, False, 90.0, 0.1),
                            _trial(2.0, 2.0, True, 10.0, 0.5),
                            _trial(1.0, 2.0, True, 20.0, 0.5)], ref)
    assert [p["compute_s"] for p in c] == [1.0, 3.0, 4.0]
    assert [p["epochs"] for p in c] == [0.5, 2.5, 4.5]
    # the stopped trial's 90 never counts; hv = best full recall x (1 - 0.5)
    assert [p["hv"] for p in c] == pytest.approx([0.0, 5.0, 10.0])


def test_reach_fraction_and_hv_at() -> None:
    rand = [{"compute_s": 10.0, "hv": 1.0}, {"compute_s": 20.0, "hv": 4.0}]
    tool = [{"compute_s": 2.0, "hv": 3.0}, {"compute_s": 5.0, "hv": 4.0}]
    assert bench_search.reach_fraction(tool, rand) == pytest.approx(0.25)
    assert bench_search.reach_fraction(tool[:1], rand) == math.inf
    assert bench_search.hv_at(tool, 4.9) == 3.0
    assert bench_search.hv_at(tool, 100.0) == 4.0
    assert bench_search.hv_at(tool, 1.0) == 0.0


def test_fidelity_grid_correlation_and_overlap() -> None:
    assert bench_fidelity.eval_grid([1.0, 2.0, 4.0], 0.5) == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0,
                                                              3.5, 4.0]
    x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    c = bench_fidelity.correlations(x, x, boot=50)
    assert c["spearman"] == pytest.approx(1.0) and c["kendall"] == pytest.approx(1.0)
    c = bench_fidelity.correlations(x, x[::-1], boot=50)
    assert c["spearman"] == pytest.approx(-1.0)
    assert bench_fidelity.top_overlap(x, x, k=5) == 5
    assert bench_fidelity.top_overlap(x, x[::-1], k=3) == 0


def test_summary_quartiles() -> None:
    s = common.summary([5.0, 1.0, 3.0, float("nan"), 2.0, 4.0])
    assert (s["median"], s["q1"], s["q3"], s["min"], s["max"], s["n"]) == (3.0, 2.0, 4.0,
                                                                         1.0, 5.0, 5)
    assert common.summary([])["n"] == 0


def test_write_json_is_atomic(tmp_path: Path) -> None:
    out = tmp_path / "r" / "x.json"
    common.write_json(out, {"a": 1})
    with pytest.raises(TypeError):
        common.write_json(out, {"b": object()})  # not serialisable: the old file stays
    assert out.read_text().strip().startswith("{") and '"a": 1' in out.read_text()
    assert [p.name for p in out.parent.iterdir()] == ["x.json"]

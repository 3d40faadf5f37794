"""bench/bench_cost.py: the tool's FLOP counter against torch's, in fresh processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_cost_counts_the_same_flops_both_ways(tmp_path: Path) -> None:
    out = tmp_path / "cost.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_cost.py"), "--space", "quick",
                        "--configs", "3", "--rounds", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "same FLOPs for every configuration: yes" in r.stdout
    runs = json.loads(out.read_text())["runs"]
    assert {k: len(v) for k, v in runs.items()} == {"nas": 1, "torch": 1}
    assert all(len(r["times"]) == 3 for v in runs.values() for r in v)
    assert runs["nas"][0]["flops"] == runs["torch"][0]["flops"]

"""Shared helpers of tests/verdict: studies searched with the test evaluator (the fake one
with planted effects, ``tests/faulty_evaluator.py``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna

from nas.search.driver import SearchOptions, run_search
from nas.search.evaluator import EvaluatorSpec
from tests.faulty_evaluator import FAULTY

optuna.logging.set_verbosity(optuna.logging.WARNING)

# Planted truth (tests/faulty_evaluator.py): residual_gate adds +6 recall at
# +0.5 query GFLOPs; uncertainty_gates costs 5 recall and +0.2 GFLOPs; temporal_gates only
# adds 1 GFLOP; hierarchical_gates does nothing; seed noise SD 0.5 on every run's recall.
PLANTED = ("synthetic|plant:residual_gate=true@recall=+6,query_gflops=+0.5"
           "|plant:uncertainty_gates=true@recall=-5,query_gflops=+0.2"
           "|plant:temporal_gates=true@query_gflops=+1|noise:0.5")
PLANTED_VARIANTS = "residual_gate,hierarchical_gates,uncertainty_gates,temporal_gates"
PLANTED_EVALUATOR = EvaluatorSpec.of_module(FAULTY)  # reads the planted rules of PLANTED


def fake_study(tmp_path: Path, data: str = PLANTED, name: str = "p", trials: int = 6,
               objectives: str = "recall,query_gflops") -> str:
    """Search ``quick`` with the planted-effects evaluator in process; returns the storage
    URL."""
    url = f"sqlite:///{tmp_path}/studies.db"
    run_search(SearchOptions(space="quick", study=name, storage=url, data=data, trials=trials,
                             objectives=objectives, evaluator=PLANTED_EVALUATOR,
                             executor="local", quiet=True))
    return url


def copy_study(src_url: str, tmp_path: Path) -> str:
    """A private copy of a SQLite study file (tests then write to it independently)."""
    src = Path(src_url[len("sqlite:///"):])
    dst = tmp_path / "studies.db"
    for suffix in ("", "-wal", "-shm"):  # WAL mode: the log holds the latest commits
        if Path(f"{src}{suffix}").exists():
            shutil.copyfile(f"{src}{suffix}", f"{dst}{suffix}")
    return f"sqlite:///{dst}"

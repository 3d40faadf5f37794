"""Import-time boundaries between the parts (checked in a fresh interpreter, not by reading source).

The evaluator side (model, data, evaluation, training, cost) must import neither Optuna nor
Ray, so it runs in a plain loop, under Ray, or in a user's own code; ``nas export`` and
``nas dashboard`` must not pay for plotly, which only the HTML report needs.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

EVALUATOR_SIDE = ["nas.model", "nas.data", "nas.evaluate", "nas.metrics", "nas.train", "nas.cost",
                  "nas.checkpoint", "nas.config"]


def _loaded_after(modules: list[str], watched: list[str]) -> list[str]:
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            f"print(','.join(w for w in {watched!r} if w in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return [w for w in r.stdout.strip().split(",") if w]


@pytest.mark.parametrize("module", EVALUATOR_SIDE)
def test_evaluator_side_imports_neither_optuna_nor_ray(module: str) -> None:
    assert _loaded_after([module], ["optuna", "ray"]) == []


def test_the_check_itself_can_fail() -> None:
    assert _loaded_after(["nas.search.driver"], ["optuna", "ray"]) == ["optuna"]


@pytest.mark.parametrize("module",
                         ["nas.export", "nas.dashboard", "nas.cli.export", "nas.cli.dashboard"])
def test_export_and_dashboard_do_not_import_plotly(module: str) -> None:
    assert _loaded_after([module], ["plotly"]) == []


def test_report_names_resolve_lazily() -> None:
    assert _loaded_after(["nas.report"], ["plotly"]) == []
    assert _loaded_after(["nas.report.html"], ["plotly"]) == ["plotly"]

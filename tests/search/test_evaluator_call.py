"""The driver hands its precomputed costs to evaluators that take them (no torch, no Ray)."""

from __future__ import annotations

from typing import Any

from nas.search.evaluator import call_train


def test_costs_passed_only_to_evaluators_that_take_them() -> None:
    seen: dict[str, Any] = {}

    def with_costs(f: Any, t: Any, d: Any, rungs: Any = None, report: Any = None,
                   costs: Any = None) -> str:
        seen["with"] = costs
        return "a"

    def without(f: Any, t: Any, d: Any, rungs: Any = None, report: Any = None) -> str:
        return "b"

    def kwargs(f: Any, t: Any, d: Any, **kw: Any) -> str:
        seen["kw"] = kw.get("costs")
        return "c"

    c = {"query_gflops": 0.5, "params": 10.0}
    assert call_train(with_costs, 1, 2, 3, rungs=[1], report=None, costs=c) == "a"
    assert seen["with"] == c and seen["with"] is not c  # a copy: the trial may update it
    assert call_train(without, 1, 2, 3, rungs=[1], report=None, costs=c) == "b"
    assert call_train(kwargs, 1, 2, 3, rungs=[1], report=None, costs=c) == "c"
    assert seen["kw"] == c
    seen.clear()
    call_train(with_costs, 1, 2, 3, rungs=[1], report=None, costs=None)
    assert seen["with"] is None  # nothing precomputed: the evaluator estimates itself

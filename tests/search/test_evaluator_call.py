"""The driver hands its precomputed costs to evaluators that take them (no torch, no Ray)."""

from __future__ import annotations

from typing import Any

import pytest

from nas.search.evaluator import call_train
from tests.faulty_evaluator import FAULTY


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


def test_evaluator_by_name_or_module_path() -> None:
    from nas.search.evaluator import EvaluatorSpec

    assert EvaluatorSpec.named("real") == EvaluatorSpec()
    assert EvaluatorSpec.named("fake").train == "nas.search.testing:fake_train_proxy"
    spec = EvaluatorSpec.named(FAULTY)
    assert spec == EvaluatorSpec(f"{FAULTY}:train_proxy", f"{FAULTY}:load_data",
                                 f"{FAULTY}:estimate_costs")


@pytest.mark.parametrize("name, needle", [
    ("no_such_module_x", "not 'real', 'fake' or an importable module"),
    ("nas.search.testing", "the module has no train_proxy()"),  # a module, not an evaluator
])
def test_unusable_evaluator_is_a_one_line_user_error(name: str, needle: str, capsys,
                                                     tmp_path) -> None:
    from nas.cli import main

    rc = main(["search", "--evaluator", name, "--executor", "local", "--quiet",
               "--storage", f"sqlite:///{tmp_path}/s.db", "--trials", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and needle in err and f"--evaluator {name!r}" in err, err
    assert "\n" not in err and not (tmp_path / "s.db").exists()


def test_fault_injection_lives_in_the_tests_not_the_package() -> None:
    import nas.search.testing as fake

    assert fake.fake_load_data("synthetic|exit:width=16").name == "synthetic|exit:width=16"
    assert not hasattr(fake, "parse_faults")
    source = open(fake.__file__).read()
    for needle in ("os._exit", "SIGKILL", "/proc"):
        assert needle not in source

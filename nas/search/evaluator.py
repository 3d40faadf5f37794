"""Which evaluator the search runs: import paths, so the real one is the default and the
fakes of ``nas.search.testing`` (or a test suite's own evaluator module) plug in for tests
(no torch, no Ray needed to import)."""

from __future__ import annotations

import functools
import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from nas.errors import UserError

__all__ = ["EvaluatorSpec", "RayOptions", "call_train", "import_object"]


@dataclass(frozen=True)
class EvaluatorSpec:
    """Import paths ("module:function") of the evaluator parts (ARCHITECTURE.md)."""

    train: str = "nas.train:train_proxy"
    data: str = "nas.data:load_data"
    costs: str = "nas.cost:estimate_costs"

    @classmethod
    def fake(cls) -> "EvaluatorSpec":
        """The torch-free fakes of ``nas.search.testing``."""
        return cls("nas.search.testing:fake_train_proxy", "nas.search.testing:fake_load_data",
                   "nas.search.testing:fake_estimate_costs")

    @classmethod
    def of_module(cls, module: str) -> "EvaluatorSpec":
        """The ``train_proxy``, ``load_data`` and ``estimate_costs`` of one module (written
        like ``nas.train``, ``nas.data`` and ``nas.cost``; workers import it by this path)."""
        return cls(f"{module}:train_proxy", f"{module}:load_data", f"{module}:estimate_costs")

    @classmethod
    def named(cls, name: str) -> "EvaluatorSpec":
        """``real``, ``fake``, or the import path of a module with the three functions of
        :meth:`of_module`; UserError naming what is missing."""
        if name == "real":
            return cls()
        if name == "fake":
            return cls.fake()
        spec = cls.of_module(name)
        for path in (spec.train, spec.data, spec.costs):
            try:
                fn = import_object(path)
            except ImportError as e:
                raise UserError(f"--evaluator {name!r}: not 'real', 'fake' or an importable "
                                f"module ({e})") from None
            except AttributeError:
                raise UserError(f"--evaluator {name!r}: the module has no "
                                f"{path.partition(':')[2]}()") from None
            if not callable(fn):
                raise UserError(f"--evaluator {name!r}: {path} is not callable")
        return spec


def import_object(path: str) -> Any:
    """``"pkg.module:name"`` -> the object."""
    mod, _, name = path.partition(":")
    return getattr(importlib.import_module(mod), name)


@functools.lru_cache(maxsize=32)
def _takes_costs(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "costs" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD
                                    for p in params.values())


def call_train(fn: Callable[..., Any], fusion: Any, train: Any, data: Any, *,
               rungs: Any, report: Any, costs: Mapping[str, float] | None = None) -> Any:
    """Call the evaluator's train function, handing it the costs the driver already
    estimated (``costs=``) when it accepts them, so the trial does not estimate them
    again inside its own time (``nas.cost.estimate_costs`` builds the model and runs
    it under a FLOP counter). Evaluators without a ``costs`` parameter are called as
    before."""
    if costs and _takes_costs(fn):
        return fn(fusion, train, data, rungs=rungs, report=report, costs=dict(costs))
    return fn(fusion, train, data, rungs=rungs, report=report)


@dataclass(frozen=True)
class RayOptions:
    """Where and how trials run."""

    address: str | None = None
    concurrency: int = 0  # 0 = as many as the CPUs allow
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_failures: int = 0  # --trial-retries: Tune restarts a trial whose worker died

"""Which evaluator the search runs: import paths, so the real one is the default and the
fakes of ``nas.search.testing`` plug in for tests (no torch, no Ray needed to import)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

__all__ = ["EvaluatorSpec", "RayOptions", "import_object"]


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
    def named(cls, name: str) -> "EvaluatorSpec":
        """``real`` or ``fake``."""
        return cls.fake() if name == "fake" else cls()


def import_object(path: str) -> Any:
    """``"pkg.module:name"`` -> the object."""
    mod, _, name = path.partition(":")
    return getattr(importlib.import_module(mod), name)


@dataclass(frozen=True)
class RayOptions:
    """Where and how trials run."""

    address: str | None = None
    concurrency: int = 0  # 0 = as many as the CPUs allow
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_failures: int = 0  # --trial-retries: Tune restarts a trial whose worker died

"""The objectives a study can optimise, chosen per study (``--objectives recall,query_gflops``).

Each objective names where its value comes from: the validation ``metrics`` of a trained
trial (known only after training) or the ``costs`` of its configuration (known exactly
before training, from ``nas.cost.estimate_costs``). The early-stopping scheduler and the
cost limits rely on that split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from nas.errors import UserError

__all__ = ["Objective", "OBJECTIVES", "DEFAULT_OBJECTIVES", "RUNG_SIGNALS", "parse_objectives",
           "objective_values", "parse_limits"]

# What ranks trials at the rungs before the full budget (the early-stopping scheduler only;
# the study's values and the front are always the objectives themselves):
# - "mean_rank": at the rungs before half the full budget, a recall or median-rank
#   objective is ranked by the mean rank of the matching item (``rung_key``). Recall
#   counts only the queries whose match is in the top 10, so after a short first rung it
#   moves in coarse steps set by a few queries; the mean rank moves with every query. On
#   the tabular benchmark's 128 configurations x 2 seeds, the first rung (1.5 of 4
#   epochs) ranks the full-budget recall at Spearman 0.944 / 0.949 (synthetic) and
#   0.849 / 0.930 (digits) by mean rank, against 0.838 / 0.933 and 0.699 / 0.830 by
#   recall; at the second (3 epochs) recall ranks better (0.978-0.991 against
#   0.924-0.977). ``python bench/tabular.py info``; BENCHMARKS.md section 2.
# - "objective": the objective's own value at every rung.
RUNG_SIGNALS = ("mean_rank", "objective")


@dataclass(frozen=True)
class Objective:
    """One objective: its study name, direction and source key."""

    name: str
    direction: str  # "maximize" | "minimize"
    source: str  # "metrics" | "costs"
    key: str  # key in TrainResult.metrics or estimate_costs(...)
    help: str
    rung_key: str = ""  # the metric (minimised) that ranks it before the full budget
    # (RUNG_SIGNALS "mean_rank"); "" = its own value

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    @property
    def known_before_training(self) -> bool:
        return self.source == "costs"

    def value(self, metrics: Mapping[str, float] | None, costs: Mapping[str, float] | None
              ) -> float:
        """This objective's value from a trial's metrics and costs (KeyError if missing)."""
        src = metrics if self.source == "metrics" else costs
        if src is None or self.key not in src:
            raise KeyError(f"objective {self.name!r} needs {self.source}[{self.key!r}]")
        return float(src[self.key])

    def as_loss(self, v: float) -> float:
        """The value oriented for minimisation (maximised objectives negated)."""
        return -v if self.maximize else v

    def rung_loss(self, metrics: Mapping[str, float], costs: Mapping[str, float] | None,
                  signal: str) -> float:
        """What ranks a trial at a rung before the full budget, oriented for minimisation:
        with ``signal`` "mean_rank", the ``rung_key`` metric when the evaluator reports
        it; otherwise the objective's own value."""
        if signal == "mean_rank" and self.rung_key and self.rung_key in metrics:
            return float(metrics[self.rung_key])
        return self.as_loss(self.value(metrics, costs))


OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective("recall", "maximize", "metrics", "recall",
              "text-to-video R@1+R@5+R@10 on the validation gallery (percent)", "t2v_mnr"),
    Objective("v2t_recall", "maximize", "metrics", "v2t_recall",
              "video-to-text R@1+R@5+R@10 (percent)", "v2t_mnr"),
    Objective("mdr", "minimize", "metrics", "t2v_mdr", "text-to-video median rank",
              "t2v_mnr"),
    Objective("mnr", "minimize", "metrics", "t2v_mnr", "text-to-video mean rank"),
    Objective("params", "minimize", "costs", "params", "trainable parameters"),
    Objective("index_gflops", "minimize", "costs", "index_gflops",
              "GFLOPs to index one clip (text-independent work)"),
    Objective("query_gflops", "minimize", "costs", "query_gflops",
              "GFLOPs to rank a gallery of 1000 clips for one new text"),
    Objective("latency_ms", "minimize", "costs", "latency_ms",
              "measured milliseconds per query at gallery 1000"),
)}

# Recall against both costs of serving: a text-agnostic configuration's query cost depends
# only on its text side and width, so recall + query cost alone cannot see what its fusion
# layers, resampler, gates or pooling cost (its fronts collapsed to one point); the index
# cost (per clip, paid once) sees exactly that, and the query cost separates
# text-conditioned configurations (one fused pass per clip per query). README "Objectives".
DEFAULT_OBJECTIVES = "recall,query_gflops,index_gflops"


def parse_objectives(text: str | Sequence[str]) -> list[Objective]:
    """``"recall,query_gflops,index_gflops"`` -> objectives; unknown or repeated names
    are UserErrors."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    if not names:
        raise UserError("--objectives: give at least one objective, e.g. recall,query_gflops")
    out: list[Objective] = []
    for n in names:
        if n not in OBJECTIVES:
            raise UserError(f"--objectives: unknown objective {n!r}; known: "
                            f"{', '.join(OBJECTIVES)}")
        if n in [o.name for o in out]:
            raise UserError(f"--objectives: {n!r} is listed twice")
        out.append(OBJECTIVES[n])
    if not any(o.source == "metrics" for o in out):
        raise UserError("--objectives: at least one quality objective is needed (recall, "
                        "v2t_recall, mdr or mnr); costs alone need no training")
    return out


def objective_values(objectives: Sequence[Objective], metrics: Mapping[str, float] | None,
                     costs: Mapping[str, float] | None) -> list[float]:
    """Values of the objectives in order."""
    return [o.value(metrics, costs) for o in objectives]


def parse_limits(items: Sequence[str] | None) -> dict[str, float]:
    """``["query_gflops=5", ...]`` -> {name: upper bound}; only cost objectives."""
    limits: dict[str, float] = {}
    for item in items or []:
        name, sep, val = item.partition("=")
        name = name.strip()
        if not sep:
            raise UserError(f"--max {item!r}: expected NAME=VALUE, e.g. query_gflops=5")
        obj = OBJECTIVES.get(name)
        if obj is None or obj.source != "costs":
            costs = [o.name for o in OBJECTIVES.values() if o.source == "costs"]
            raise UserError(f"--max {item!r}: {name!r} is not a cost objective; limits apply "
                            f"to costs known before training: {', '.join(costs)}")
        try:
            limits[name] = float(val)
        except ValueError:
            raise UserError(f"--max {item!r}: {val!r} is not a number") from None
    return limits

"""What a trial's worker tells the driver: three typed messages, one encode/decode place.

A worker (``ray_adapter.trainable``) sends one ``RungReport`` per rung it reaches, then
exactly one ``TrialDone`` or ``TrialFailed``. On the wire they travel as one entry of
the result dict of ``tune.report``: ``{KEY: (version, kind, fields)}``, plain str, int,
float, bool, dict and list values only, so the result pickles without this module's
classes and Tune's own keys beside it are untouched. The envelope is a tuple because Tune
flattens nested dicts of a result (``{"a": {"b": 1}}`` -> ``{"a/b": 1}``) before its
scheduler and searcher see it, and leaves sequences whole. ``decode`` turns such a result
back into the message, or ``None`` for a result that carries none (Tune's own results, a
worker lost before it reported).

This module imports neither Ray nor Optuna: it is tested on its own, both ways.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

__all__ = ["KEY", "RungReport", "TrialDone", "TrialFailed", "WorkerMessage", "decode",
           "encode", "numeric"]

KEY = "nas"  # the result dict's entry that holds the message
_VERSION = 1


def numeric(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric entries of a metrics dict as floats (non-numbers left out)."""
    return {str(k): float(v) for k, v in metrics.items() if isinstance(v, numbers.Real)}


def _plain(x: Any) -> Any:
    """``x`` as plain Python values (numpy/torch scalars -> float, tuples -> lists)."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if x is None or isinstance(x, (str, bool, int, float)):
        return x
    try:
        return float(x)
    except (TypeError, ValueError):
        return str(x)


@dataclass(frozen=True)
class RungReport:
    """The trial reached rung ``rung`` with these validation metrics."""

    rung: int
    metrics: dict[str, float]
    node: str | None = None


@dataclass(frozen=True)
class TrialDone:
    """The evaluator returned: final metrics, budget reached, gate statistics."""

    metrics: dict[str, float]
    epochs: float
    stopped: bool
    wall_s: float
    gates: dict[str, Any] = field(default_factory=dict)
    node: str | None = None


@dataclass(frozen=True)
class TrialFailed:
    """The evaluator raised: the one-line reason goes into the study."""

    error: str
    wall_s: float | None = None
    node: str | None = None


WorkerMessage = Union[RungReport, TrialDone, TrialFailed]
_KINDS: dict[str, type] = {"rung": RungReport, "done": TrialDone, "failed": TrialFailed}
_NAMES = {cls: name for name, cls in _KINDS.items()}


def encode(msg: WorkerMessage) -> dict[str, Any]:
    """The result dict a worker reports for ``msg``."""
    if isinstance(msg, RungReport):
        body: dict[str, Any] = {"rung": int(msg.rung), "metrics": numeric(msg.metrics)}
    elif isinstance(msg, TrialDone):
        body = {"metrics": numeric(msg.metrics), "epochs": float(msg.epochs),
                "stopped": bool(msg.stopped), "wall_s": float(msg.wall_s),
                "gates": _plain(msg.gates)}
    elif isinstance(msg, TrialFailed):
        body = {"error": str(msg.error),
                "wall_s": None if msg.wall_s is None else float(msg.wall_s)}
    else:
        raise TypeError(f"not a worker message: {type(msg).__name__}")
    body["node"] = msg.node
    return {KEY: (_VERSION, _NAMES[type(msg)], body)}


def decode(result: Mapping[str, Any] | None) -> WorkerMessage | None:
    """The message a result dict carries, or ``None`` when it carries none. A malformed
    one raises ``ValueError`` naming what is wrong (a worker of another version)."""
    wire = (result or {}).get(KEY)
    if wire is None:
        return None
    if not (isinstance(wire, (list, tuple)) and len(wire) == 3 and wire[0] == _VERSION
            and wire[1] in _KINDS and isinstance(wire[2], Mapping)):
        raise ValueError(f"worker message: expected (version {_VERSION}, kind one of "
                         f"{sorted(_KINDS)}, fields), got {wire!r:.200}")
    _, kind, body = wire
    node = body.get("node")
    try:
        if kind == "rung":
            return RungReport(rung=int(body["rung"]), metrics=dict(body["metrics"]), node=node)
        if kind == "done":
            return TrialDone(metrics=dict(body["metrics"]), epochs=float(body["epochs"]),
                             stopped=bool(body["stopped"]), wall_s=float(body["wall_s"]),
                             gates=dict(body.get("gates") or {}), node=node)
        wall = body.get("wall_s")
        return TrialFailed(error=str(body["error"]),
                           wall_s=None if wall is None else float(wall), node=node)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"worker message of kind {kind!r}: {type(e).__name__}: {e}") from None

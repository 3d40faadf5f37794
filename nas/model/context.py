"""The per-forward scratchpad that gate modules write to: records, auxiliary losses.

Modules never decide whether to record: they always hand their values to the context,
which keeps them only when asked (a ``GateRecorder`` for analysis, per-pair gate summaries
for the contrastive gate loss of variant 8, cheap means for the training log).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor

__all__ = ["FusionContext", "Recorder"]


class Recorder(Protocol):
    """What the context needs from a gate recorder (``nas.evaluate.GateRecorder``)."""

    def add(self, name: str, values: Tensor, kind: str) -> None: ...

    def set_values(self, name: str, layer: int, values: list[float]) -> None: ...


class FusionContext:
    """Collects gate values and auxiliary losses during one fusion forward pass.

    Args:
        recorder: receives every gate's values (detached) for statistics, or None.
        collect_gates: keep one scalar per pair and gate (mean over frames/features),
            stacked by ``gate_matrix()``; needed by the contrastive gate loss (variant 8).
        frame_mask: ``[P, F]`` valid frames; per-frame gate values are recorded on valid
            frames only.
    """

    def __init__(self, recorder: Recorder | None = None, collect_gates: bool = False,
                 frame_mask: Tensor | None = None) -> None:
        self.recorder = recorder
        self.collect_gates = collect_gates
        self.frame_mask = frame_mask
        self.losses: dict[str, Tensor] = {}
        self.gate_means: dict[str, Tensor] = {}
        self._gate_columns: list[Tensor] = []

    # -- losses ---------------------------------------------------------------------
    def add_loss(self, name: str, value: Tensor) -> None:
        """Add an auxiliary loss term (already weighted); terms of one name are summed."""
        self.losses[name] = self.losses[name] + value if name in self.losses else value

    # -- gates ----------------------------------------------------------------------
    def gate(self, layer: int, kind: str, value: Tensor, act: str, per_frame: bool = False) -> None:
        """Record one gate of one layer. ``value``: ``[P, ...]`` (per pair, frame, feature).

        ``act`` is "tanh", "sigmoid" (it fixes the histogram range and saturation rule) or
        "indicator" (0/1 values). ``per_frame``: dim 1 of ``value`` is the frame axis, so
        padded frames are left out.
        """
        name = f"layer{layer}/{kind}"
        fm = self.frame_mask if per_frame else None
        per_pair = self._per_pair(value, fm)
        if self.collect_gates:
            self._gate_columns.append(per_pair)
        self.gate_means[name] = per_pair.detach().mean()
        if self.recorder is not None:
            v = value.detach()
            if fm is not None:
                v = v[fm]  # per-frame values: keep valid frames only
            self.recorder.add(name, v.float().reshape(-1), act)

    def values(self, name: str, layer: int, value: Tensor | float) -> None:
        """Record a per-layer parameter value (decay, temperature)."""
        if self.recorder is not None:
            t = torch.as_tensor(value).detach().float().reshape(-1)
            self.recorder.set_values(name, layer, [float(x) for x in t.cpu()])

    def gate_matrix(self) -> Tensor | None:
        """``[P, n_gates]``: one mean value per pair and gate (variant 8), or None."""
        if not self._gate_columns:
            return None
        return torch.stack(self._gate_columns, dim=-1)

    @staticmethod
    def _per_pair(value: Tensor, fm: Tensor | None) -> Tensor:
        p = value.shape[0]
        if fm is not None:
            m = fm.to(value.dtype).reshape(p, -1, *([1] * (value.dim() - 2)))
            return (value * m).sum(1).reshape(p, -1).mean(1) / m.reshape(p, -1).sum(1).clamp_min(1)
        return value.reshape(p, -1).mean(1)

    def summary(self) -> dict[str, Any]:
        """Means of every gate seen (floats), for the training log."""
        if not self.gate_means:
            return {}
        # one device->host copy for all gates (a sync per gate would stall GPU training)
        vals = torch.stack(list(self.gate_means.values())).float().tolist()
        return dict(zip(self.gate_means, vals))

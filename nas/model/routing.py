"""Variant 7: dynamic layer allocation (a router that weights each fusion layer)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from nas.model.common import GateMLP
from nas.model.context import FusionContext

__all__ = ["NoRouter", "LayerRouter"]


class NoRouter(nn.Module):
    """Every layer applies in full: x_{l+1} = Block_l(x_l)."""

    def weights(self, summary: Callable[[], Tensor], ctx: FusionContext) -> Tensor | None:
        return None  # the summary is not computed

    def mix(self, layer: int, x: Tensor, y: Tensor, w: Tensor | None) -> Tensor:
        return y


class LayerRouter(nn.Module):
    """w = sigmoid(R([x̄0; ā; t̄]) + 3) of size L; x_{l+1} = x_l + w_l (Block_l(x_l) - x_l).

    A sigmoid per layer (not a softmax over layers, which would damp every layer). The
    optional sparsity loss is ``lambda * sum_l w_l`` (mean over pairs). In eval mode, a
    weight below ``skip_threshold`` is set to 0: the layer is skipped for that pair; the
    skipped fraction is recorded as gate kind ``routing_skip`` (the saved fusion cost).
    """

    def __init__(self, in_dim: int, hidden: int, layers: int, sparsity: float,
                 skip_threshold: float) -> None:
        super().__init__()
        self.mlp = GateMLP(in_dim, hidden, layers)
        self.sparsity, self.skip_threshold = sparsity, skip_threshold

    def weights(self, summary: Callable[[], Tensor], ctx: FusionContext) -> Tensor:
        """Per-pair layer weights ``[P, L]`` from ``summary()`` (``[x̄0; ā; t̄]``)."""
        w = torch.sigmoid(self.mlp(summary()) + 3.0)  # [P, L]; ~0.95 at init: every layer on
        if self.training and self.sparsity > 0:
            ctx.add_loss("routing_sparsity", self.sparsity * w.sum(-1).mean())
        for layer in range(w.shape[1]):
            ctx.gate(layer, "routing", w[:, layer], "sigmoid")
        if not self.training and self.skip_threshold > 0:
            keep = w >= self.skip_threshold
            for layer in range(w.shape[1]):
                ctx.gate(layer, "routing_skip", (~keep[:, layer]).float(), "indicator")
            w = w * keep
        return w

    def mix(self, layer: int, x: Tensor, y: Tensor, w: Tensor | None) -> Tensor:
        assert w is not None
        return x + w[:, layer, None, None] * (y - x)

"""Pooled summaries x̄, ā, t̄ for the gate inputs: masked mean (reference) or attention (9).

The mask may be None: every position is valid (what ``PairInputs.vkeys`` gives when
nothing in a batch is padded)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nas.model.common import masked_mean, safe_key_mask

__all__ = ["MeanPool", "AttentionPool", "make_pool"]


class MeanPool(nn.Module):
    """Mean over the valid positions (the reference ignores the masks here: we do not)."""

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        return masked_mean(x, mask)


class AttentionPool(nn.Module):
    """Variant 9: w = softmax_s(u^T LN(x_s) + mask); pooled = sum_s w_s x_s.

    One scorer per modality (the model builds one each for video, audio and text). u = 0 at
    init, so the pool starts as the masked mean.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.u = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        logits = self.norm(x) @ self.u
        if mask is not None:  # None: every position is valid
            logits = logits.masked_fill(~safe_key_mask(mask), float("-inf"))
        w = logits.softmax(-1)
        return (w.unsqueeze(-1) * x).sum(1)


def make_pool(mode: str, dim: int) -> nn.Module:
    """``mean`` | ``attention`` -> pooling module."""
    return AttentionPool(dim) if mode == "attention" else MeanPool()

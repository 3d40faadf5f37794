"""The audio resampler: Q learned queries read the audio tokens (text-independent)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nas.model.attention import MultiHeadAttention
from nas.model.common import Mlp

__all__ = ["NoResampler", "AudioResampler", "make_resampler"]


class NoResampler(nn.Module):
    """0 resampler layers: the projected audio tokens are the memory, with their mask."""

    def forward(self, audio: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        return audio, mask


class _ResamplerLayer(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = MultiHeadAttention(dim, heads)
        self.cross_attn = MultiHeadAttention(dim, heads)
        self.mlp = Mlp(dim)

    def forward(self, q: Tensor, audio: Tensor, mask: Tensor) -> Tensor:
        qmask = torch.ones(q.shape[:2], dtype=torch.bool, device=q.device)
        h = self.ln1(q)
        q = q + self.self_attn(h, h, qmask)
        q = q + self.cross_attn(self.ln2(q), audio, mask)
        return q + self.mlp(self.ln3(q))


class AudioResampler(nn.Module):
    """Q query tokens (orthogonal init) + learned positions; each layer: self-attention over
    the queries, cross-attention to the audio tokens (masked), MLP 4x QuickGELU; pre-LN,
    residuals. Output ``[N, Q, D]``, all valid."""

    def __init__(self, dim: int, heads: int, layers: int, queries: int) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.empty(queries, dim))
        nn.init.orthogonal_(self.queries)
        self.pos = nn.Parameter(torch.randn(queries, dim) * 0.01)
        self.layers = nn.ModuleList(_ResamplerLayer(dim, heads) for _ in range(layers))

    def forward(self, audio: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        n = audio.shape[0]
        q = (self.queries + self.pos).unsqueeze(0).expand(n, -1, -1)
        for layer in self.layers:
            q = layer(q, audio, mask)
        return q, torch.ones(q.shape[:2], dtype=torch.bool, device=q.device)


def make_resampler(dim: int, heads: int, layers: int, queries: int) -> nn.Module:
    """The resampler (or the pass-through for 0 layers)."""
    return AudioResampler(dim, heads, layers, queries) if layers > 0 else NoResampler()

"""FLOP counting: a small known module equals its hand count, attention included."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nas.cost import count_flops


class TinyAttention(nn.Module):
    """x [B,S,D] -> q,k,v projections -> SDPA with a key padding mask -> out projection."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        return self.out(o.transpose(1, 2).reshape(b, s, d))


def test_flops_of_small_attention_module_equal_hand_count() -> None:
    B, S, D, H = 3, 7, 16, 4
    dh = D // H
    m = TinyAttention(D, H)
    x = torch.randn(B, S, D)
    mask = torch.ones(B, S, dtype=torch.bool)
    mask[0, 5:] = False
    # multiply-add = 2 FLOPs; biases and softmax are not counted (torch's convention)
    qkv = 2 * B * S * D * (3 * D)
    scores = 2 * B * H * S * S * dh  # q k^T
    mix = 2 * B * H * S * S * dh  # p v
    out = 2 * B * S * D * D
    assert count_flops(lambda: m(x, mask)) == qkv + scores + mix + out


def test_sdpa_alone_is_not_zero_on_cpu() -> None:
    q = torch.randn(2, 3, 5, 8)
    k = torch.randn(2, 3, 11, 8)
    v = torch.randn(2, 3, 11, 8)
    expected = 2 * (2 * 2 * 3 * 5 * 11 * 8)
    assert count_flops(lambda: F.scaled_dot_product_attention(q, k, v)) == expected


def test_sdpa_backward_is_counted() -> None:
    q = torch.randn(2, 3, 5, 8, requires_grad=True)
    k = torch.randn(2, 3, 11, 8, requires_grad=True)
    v = torch.randn(2, 3, 11, 8, requires_grad=True)
    fwd = 2 * (2 * 2 * 3 * 5 * 11 * 8)
    total = count_flops(lambda: F.scaled_dot_product_attention(q, k, v).sum().backward())
    # flash backward: recompute q k^T, then grad of p v (2 matmuls) and of q k^T (2 matmuls):
    # five matmuls of the forward's size per two forward ones
    assert total == fwd + fwd * 5 // 2

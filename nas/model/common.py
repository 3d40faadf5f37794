"""Small building blocks shared by the model modules: activations, gate MLPs, masked pooling."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["QuickGELU", "GateMLP", "Mlp", "masked_mean", "masked_std", "safe_key_mask"]


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): CLIP's GELU approximation, used by the reference everywhere."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class GateMLP(nn.Sequential):
    """The reference gate head: ``in -> hidden -> out``, no bias, QuickGELU (model.md §1)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int = 1) -> None:
        super().__init__(nn.Linear(in_dim, hidden, bias=False), QuickGELU(),
                         nn.Linear(hidden, out_dim, bias=False))


class Mlp(nn.Sequential):
    """``D -> 4D -> D`` with QuickGELU (transformer MLP / the cross feed-forward)."""

    def __init__(self, dim: int, bias: bool = True) -> None:
        super().__init__(nn.Linear(dim, 4 * dim, bias=bias), QuickGELU(),
                         nn.Linear(4 * dim, dim, bias=bias))


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x [N, S, D]`` over the valid positions of ``mask [N, S]`` -> ``[N, D]``.

    A row with no valid position gives zeros (count clamped to 1) rather than NaN.
    """
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


def masked_std(x: Tensor, mask: Tensor) -> Tensor:
    """Population std of ``x [N, S, D]`` over valid positions -> ``[N, D]`` (0 for empty rows)."""
    m = mask.to(x.dtype).unsqueeze(-1)
    n = m.sum(1).clamp_min(1.0)
    mu = (x * m).sum(1) / n
    var = (((x - mu.unsqueeze(1)) ** 2) * m).sum(1) / n
    # sqrt has an infinite gradient at 0; the epsilon keeps constant tokens finite.
    return (var + 1e-6).sqrt()


def safe_key_mask(mask: Tensor) -> Tensor:
    """A key padding mask in which every row has at least one valid key.

    Rows with no valid key (an empty clip) attend over all positions instead of producing
    NaN from a softmax over nothing; such inputs are degenerate and their output is finite
    but meaningless.
    """
    empty = ~mask.any(-1, keepdim=True)
    return mask | empty

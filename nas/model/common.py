"""Small building blocks shared by the model modules: activations, gate MLPs, masked pooling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["QuickGELU", "GateMLP", "Mlp", "masked_mean", "masked_std", "safe_key_mask"]


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): CLIP's GELU approximation, used by the reference everywhere."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


_QG = 1.702  # QuickGELU's slope


class _QuickGELUMlp(nn.Sequential):
    """``Linear -> QuickGELU -> Linear``, evaluated with one element-wise pass.

    x W1 + b1 -> QuickGELU -> . W2 + b2 is computed as ``silu(a (x W1 + b1)) W2 / a + b2``
    with a = 1.702, since QuickGELU(h) = h sigmoid(a h) = silu(a h) / a. Both scales ride
    in the GEMMs' alpha/beta (``addmm``), so the hidden layer, 4x the width, is touched by
    one ``silu`` (in place when no gradient is recorded) instead of a multiply, a sigmoid
    and a second multiply, each with its own buffer. Same function, same parameters
    (``0.weight``, ``2.weight``, ...); the modules stay a ``Sequential`` so checkpoints and
    the FLOP counter (which counts only the GEMMs) see what they saw before.
    """

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        fc1, _, fc2 = self[0], self[1], self[2]
        assert isinstance(fc1, nn.Linear) and isinstance(fc2, nn.Linear)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])
        if fc1.bias is not None:
            h = torch.addmm(fc1.bias, x2, fc1.weight.t(), beta=_QG, alpha=_QG)
        else:
            h = torch.mm(x2, fc1.weight.t()).mul_(_QG)
        h = F.silu(h, inplace=not torch.is_grad_enabled())
        if fc2.bias is not None:
            out = torch.addmm(fc2.bias, h, fc2.weight.t(), alpha=1.0 / _QG)
        else:
            out = torch.mm(h, fc2.weight.t()).mul_(1.0 / _QG)
        return out.reshape(*lead, out.shape[-1])


class GateMLP(_QuickGELUMlp):
    """The reference gate head: ``in -> hidden -> out``, no bias, QuickGELU (model.md §1)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int = 1) -> None:
        super().__init__(nn.Linear(in_dim, hidden, bias=False), QuickGELU(),
                         nn.Linear(hidden, out_dim, bias=False))


class Mlp(_QuickGELUMlp):
    """``D -> 4D -> D`` with QuickGELU (transformer MLP / the cross feed-forward)."""

    def __init__(self, dim: int, bias: bool = True) -> None:
        super().__init__(nn.Linear(dim, 4 * dim, bias=bias), QuickGELU(),
                         nn.Linear(4 * dim, dim, bias=bias))


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``x [N, S, D]`` over the valid positions of ``mask [N, S]`` -> ``[N, D]``;
    ``mask`` None: every position is valid (the plain mean, without a pass to mask ``x``).

    A row with no valid position gives zeros (count clamped to 1) rather than NaN.
    """
    if mask is None:
        return x.mean(1)
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

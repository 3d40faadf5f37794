"""Gate heads and the per-layer scalars that multiply them.

A gate head is three strategies chosen when the block is built:

- its *input*: one summary per clip ``[x̄; ā; t̄]`` (reference) or per frame
  ``[x_f; ā; t̄]`` (variant 13, temporal gates),
- its *coarse* value: ``tanh(MLP(u))`` (reference) or the uncertainty-aware
  ``tanh(mu + sigma * eps)`` with a KL term (variant 11),
- an optional *fine* factor ``sigmoid(MLP_phi(u) + b)`` per feature (variant 10,
  hierarchical gating; b = +2 at init).

Also here: the layer decay (1A fixed, 1B learnable), the residual reliability gate (3) and
the temporal smoothness loss (13). Every gate MLP is ``in -> D/2 -> out``, no bias,
QuickGELU (model.md §1).
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any

import torch
from torch import Tensor, nn

from nas.config import FusionConfig
from nas.model.common import GateMLP
from nas.model.context import FusionContext

__all__ = [
    "PlainGate", "UncertainGate", "make_coarse", "NoFine", "FineGate", "ClipInput",
    "FrameInput", "NoSmoothing", "TemporalSmoothing", "GateHead", "make_gate_head",
    "NoDecay", "FixedDecay", "LearnableDecay", "make_decay", "NoReliability",
    "ReliabilityGate",
]


# ----------------------------------------------------------------------------------
# coarse value: plain (reference) or uncertainty-aware (11)
# ----------------------------------------------------------------------------------

class PlainGate(nn.Module):
    """g = tanh(MLP(u)) (the reference gate)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int = 1) -> None:
        super().__init__()
        self.mlp = GateMLP(in_dim, hidden, out_dim)

    def forward(self, u: Tensor, ctx: FusionContext) -> Tensor:
        return torch.tanh(self.mlp(u))


class UncertainGate(nn.Module):
    """Variant 11: the head outputs (mu, log sigma^2).

    Training: g = tanh(mu + sigma * eps), eps ~ N(0, 1), and beta_KL * KL(N(mu, sigma^2) ||
    N(0, 1)) is added to the loss. Evaluation: tanh(mu) for K = 1 sample, else the mean over
    K *fixed* normal quantiles eps_k = Phi^-1((k + 1/2) / K): deterministic, so a pair's score
    never depends on random draws (honest scoring needs S[i, j] to be a function of (i, j)).
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, beta: float, samples: int) -> None:
        super().__init__()
        self.mlp = GateMLP(in_dim, hidden, 2 * out_dim)
        self.beta = beta
        eps = [NormalDist().inv_cdf((k + 0.5) / samples) for k in range(samples)]
        self.register_buffer("eps", torch.tensor(eps), persistent=False)

    def forward(self, u: Tensor, ctx: FusionContext) -> Tensor:
        mu, logvar = self.mlp(u).chunk(2, dim=-1)
        logvar = logvar.clamp(-10.0, 10.0)
        std = (0.5 * logvar).exp()
        if self.training:
            kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0)
            ctx.add_loss("uncertainty_kl", self.beta * kl.mean())
            return torch.tanh(mu + std * torch.randn_like(std))
        return torch.tanh(mu.unsqueeze(-1) + std.unsqueeze(-1) * self.eps).mean(-1)


def make_coarse(cfg: FusionConfig, in_dim: int, out_dim: int = 1) -> nn.Module:
    """The coarse gate value module for this config."""
    hidden = cfg.width // 2
    if cfg.uncertainty_gates:
        return UncertainGate(in_dim, hidden, out_dim, cfg.uncertainty_kl, cfg.uncertainty_samples)
    return PlainGate(in_dim, hidden, out_dim)


# ----------------------------------------------------------------------------------
# fine factor (10)
# ----------------------------------------------------------------------------------

class NoFine(nn.Module):
    """No fine factor: the gate is its coarse value."""

    def forward(self, u: Tensor, g: Tensor, layer: int, kind: str, ctx: FusionContext) -> Tensor:
        return g


class FineGate(nn.Module):
    """Variant 10: g = g_coarse * sigmoid(MLP_phi(u) + b), one factor per feature, b = 2."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.mlp = GateMLP(in_dim, dim // 2, dim)
        self.bias = nn.Parameter(torch.full((dim,), 2.0))

    def forward(self, u: Tensor, g: Tensor, layer: int, kind: str, ctx: FusionContext) -> Tensor:
        fine = torch.sigmoid(self.mlp(u) + self.bias)
        ctx.gate(layer, f"{kind}_fine", fine, "sigmoid", per_frame=fine.shape[1] > 1)
        return g * fine


# ----------------------------------------------------------------------------------
# gate inputs: per clip (reference) or per frame (13)
# ----------------------------------------------------------------------------------

class ClipInput(nn.Module):
    """u = the clip summary ``s`` (``[x̄; ā]`` or ``[x̄; ā; t̄]``) -> ``[P, 1, in]``."""

    def forward(self, x: Tensor, s: Tensor, p: Any) -> Tensor:
        return s.unsqueeze(1)


class FrameInput(nn.Module):
    """Variant 13: u_f = ``[x_f; ā; (t̄)]`` -> ``[P, F, in]``."""

    def __init__(self, with_text: bool) -> None:
        super().__init__()
        self.with_text = with_text

    def forward(self, x: Tensor, s: Tensor, p: Any) -> Tensor:
        f = x.shape[1]
        parts = [x, p.abar.unsqueeze(1).expand(-1, f, -1)]
        if self.with_text:
            parts.append(p.tbar.unsqueeze(1).expand(-1, f, -1))
        return torch.cat(parts, dim=-1)


class NoSmoothing(nn.Module):
    """No temporal smoothness loss."""

    def forward(self, g: Tensor, frame_mask: Tensor, ctx: FusionContext) -> None:
        return None


class TemporalSmoothing(nn.Module):
    """Variant 13: weight * mean (g_{f+1} - g_f)^2 over valid adjacent frames.

    ``weight`` is lambda divided by the number of temporal gate heads, so the total is
    lambda times the mean over heads.
    """

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, g: Tensor, frame_mask: Tensor, ctx: FusionContext) -> None:
        g = g.squeeze(-1)  # [P, F]
        both = (frame_mask[:, 1:] & frame_mask[:, :-1]).to(g.dtype)
        diff2 = (g[:, 1:] - g[:, :-1]).pow(2) * both
        ctx.add_loss("temporal_smooth", self.weight * diff2.sum() / both.sum().clamp_min(1.0))


class GateHead(nn.Module):
    """One scalar-per-clip (or per-frame, or per-feature) tanh gate of one layer."""

    def __init__(self, kind: str, layer: int, inputs: nn.Module, coarse: nn.Module,
                 fine: nn.Module, smooth: nn.Module) -> None:
        super().__init__()
        self.kind, self.layer = kind, layer
        self.inputs, self.coarse, self.fine, self.smooth = inputs, coarse, fine, smooth

    def forward(self, x: Tensor, s: Tensor, p: Any, ctx: FusionContext) -> Tensor:
        """-> gate broadcastable to ``x [P, F, D]``: ``[P, 1|F, 1|D]``."""
        u = self.inputs(x, s, p)
        g = self.coarse(u, ctx)
        ctx.gate(self.layer, self.kind, g, "tanh", per_frame=g.shape[1] > 1)
        self.smooth(g, p.vmask, ctx)
        return self.fine(u, g, self.layer, self.kind, ctx)


def make_gate_head(cfg: FusionConfig, kind: str, layer: int) -> GateHead:
    """The attn/ff gate head of one layer, with variants 10, 11, 13 as configured."""
    d = cfg.width
    with_text = cfg.gate_inputs == "vat"
    in_dim = (3 if with_text else 2) * d
    inputs: nn.Module = FrameInput(with_text) if cfg.temporal_gates else ClipInput()
    smoothed = cfg.temporal_gates and cfg.temporal_smooth_weight > 0
    smooth: nn.Module = (TemporalSmoothing(cfg.temporal_smooth_weight / (2 * cfg.layers))
                         if smoothed else NoSmoothing())
    fine: nn.Module = FineGate(in_dim, d) if cfg.hierarchical_gates else NoFine()
    return GateHead(kind, layer, inputs, make_coarse(cfg, in_dim), fine, smooth)


# ----------------------------------------------------------------------------------
# layer decay (1A, 1B)
# ----------------------------------------------------------------------------------

class NoDecay(nn.Module):
    """d_l = 1."""

    def forward(self, ctx: FusionContext) -> float:
        return 1.0


class FixedDecay(nn.Module):
    """1A: d_l = 1 - l / L, multiplied into g_a and g_f before the residual updates."""

    d: Tensor  # a buffer

    def __init__(self, layer: int, layers: int) -> None:
        super().__init__()
        self.layer = layer
        self.register_buffer("d", torch.tensor(1.0 - layer / layers), persistent=False)

    def forward(self, ctx: FusionContext) -> Tensor:
        ctx.values("decay", self.layer, self.d)
        return self.d


class LearnableDecay(nn.Module):
    """1B: s_l = 2 sigmoid(theta_l), theta_l = 0 at init (s_l = 1), applied before use."""

    def __init__(self, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.theta = nn.Parameter(torch.zeros(()))

    def forward(self, ctx: FusionContext) -> Tensor:
        s = 2.0 * torch.sigmoid(self.theta)
        ctx.values("decay", self.layer, s)
        return s


def make_decay(cfg: FusionConfig, layer: int) -> nn.Module:
    """The decay module of one layer."""
    if cfg.layer_decay == "fixed":
        return FixedDecay(layer, cfg.layers)
    if cfg.layer_decay == "learnable":
        return LearnableDecay(layer)
    return NoDecay()


# ----------------------------------------------------------------------------------
# residual reliability gate (3)
# ----------------------------------------------------------------------------------

class NoReliability(nn.Module):
    """r = 1."""

    def forward(self, xbar: Tensor, p: Any, layer: int, ctx: FusionContext) -> float:
        return 1.0


class ReliabilityGate(nn.Module):
    """Variant 3: r = sigmoid(w . [ā; std(a); x̄] + b) * has_audio, b = +3 at init.

    x += r * g_a * CrossAttn(...): a silent clip (has_audio = 0) gets no audio update. The
    model also zeroes ā and std(a) of silent clips in every gate input when this variant is
    on (see ``FusionRetrievalModel``), so a silent clip's output does not depend on its audio
    tokens at all: it falls back to video only.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.lin = nn.Linear(3 * dim, 1)
        nn.init.constant_(self.lin.bias, 3.0)

    def forward(self, xbar: Tensor, p: Any, layer: int, ctx: FusionContext) -> Tensor:
        r = torch.sigmoid(self.lin(torch.cat([p.abar, p.astd, xbar], dim=-1)))
        r = r * p.has_audio.unsqueeze(-1)
        ctx.gate(layer, "residual", r, "sigmoid")
        return r.unsqueeze(-1)  # [P, 1, 1]

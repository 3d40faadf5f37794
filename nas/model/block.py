"""One gated fusion block (model.md §1.2) with its variants chosen at construction.

``forward`` is the reference block; every variant is a strategy object that is a no-op
(or the reference computation) when off:

    s = [x̄; ā; t̄]                            (or [x̄; ā] for gate_inputs = va)
    fused_query, q_inject = query fusion      (none | scalar | per-head (4))
    g_a, g_f = gate heads * layer decay       (10, 11, 13; 1A/1B)
    r = reliability gate                      (3; 1 when off)
    z = CrossAttn(LN3(fused_query) (+ q_inject), FiLM(k, v), key bias)   (2, 5, 12)
                                              (FiLM taken through q and the output)
    z = audio path(z)                         (6: dual path; identity when off)
    x += r * g_a * z                          (addcmul)
    x += g_f * CrossFF(LN4(x))
    x += SelfAttn(LN1(x)) (frame padding mask)
    key bias for next layer = reweighting(x)  (12)
    x += MLP(LN2(x))
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from nas.config import FusionConfig
from nas.model.attention import (
    FiLM,
    KeyReweighting,
    MultiHeadAttention,
    NoFiLM,
    NoReweighting,
    key_padding,
    make_film,
    make_temperature,
)
from nas.model.common import GateMLP, Mlp
from nas.model.context import FusionContext
from nas.model.gates import NoReliability, ReliabilityGate, make_coarse, make_decay, make_gate_head
from nas.model.packed import linear_add

if TYPE_CHECKING:  # pragma: no cover
    from nas.model.model import ClipEncoding, TextEncoding

__all__ = ["PairInputs", "ClipSummary", "FusionBlock", "NoQueryFusion", "ScalarQueryFusion",
           "PerHeadQueryFusion", "SinglePath", "DualPath"]


def _take(x: Tensor, idx: Tensor | slice | None) -> Tensor:
    return x if idx is None else x[idx]


class PairInputs:
    """The (text, clip) pairs being fused: clip-side tensors gathered by ``clip_idx``.

    ``clip_idx``/``text_idx`` None means "identity" (text-agnostic fusion of every clip).
    Rarely needed tensors (raw audio memory) are gathered lazily. ``key_bias`` carries
    variant 12's bias from one layer to the next.

    The audio memory (cached keys/values and their mask ``akeys``) is taken by ``memory``
    (default: ``clip_idx``, one memory per pair). For a clip-major grid of T texts x C
    clips (``memory`` = the C clips, e.g. a slice: a view, no copy) it is taken once per
    clip, not once per pair, and ``MultiHeadAttention.attend`` folds the T texts' queries
    against each clip into one call. ``vkeys``/``akeys`` are the frame and audio masks as
    attention takes them: None when nothing in the batch is padded (checked once here).
    """

    def __init__(self, clips: "ClipEncoding", texts: "TextEncoding | None",
                 clip_idx: Tensor | None, text_idx: Tensor | None,
                 memory: Tensor | slice | None = None) -> None:
        self._clips, self._ci = clips, clip_idx
        self._mem = clip_idx if memory is None else memory
        self.vmask = _take(clips.vmask, clip_idx)
        self.abar = _take(clips.abar, clip_idx)
        self.astd = _take(clips.astd, clip_idx)
        self.has_audio = _take(clips.has_audio, clip_idx)
        self.tbar = None if texts is None else _take(texts.tbar, text_idx)
        self.that = None if texts is None else _take(texts.that, text_idx)
        self.key_bias: Tensor | None = None
        # the masks as attention and pooling take them: None when nothing is padded
        self.vkeys = key_padding(self.vmask)
        self.akeys = key_padding(_take(clips.amask, self._mem))

    @cached_property
    def audio(self) -> Tensor:
        return _take(self._clips.audio, self._ci)

    def kv(self, layer: int, path: str) -> tuple[Tensor, Tensor]:
        """Keys and values of ``path`` ("main" / "text") at ``layer``, precomputed per clip
        (one per memory, see the class docstring)."""
        assert self._clips.kv is not None, "clip encoding has no cached keys/values"
        k, v = self._clips.kv[layer][path]
        return _take(k, self._mem), _take(v, self._mem)


class ClipSummary(nn.Module):
    """s = [x̄; ā; t̄] (gate_inputs = vat) or [x̄; ā] (va, the original AVIGATE gates)."""

    def __init__(self, with_text: bool) -> None:
        super().__init__()
        self.with_text = with_text

    def forward(self, xbar: Tensor, p: PairInputs) -> Tensor:
        parts = [xbar, p.abar] + ([p.tbar] if self.with_text else [])
        return torch.cat(parts, dim=-1)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------
# query fusion: none | scalar (reference) | per head (4)
# ----------------------------------------------------------------------------------

class NoQueryFusion(nn.Module):
    """No text in the query: fused_query = x."""

    def forward(self, x: Tensor, s: Tensor, p: PairInputs,
                ctx: FusionContext) -> tuple[Tensor, Any]:
        return x, 0.0


class ScalarQueryFusion(nn.Module):
    """Reference: g_q = tanh(MLP_q(s)); fused_query = x + g_q * t̂ broadcast over frames."""

    def __init__(self, cfg: FusionConfig, layer: int, in_dim: int) -> None:
        super().__init__()
        self.layer = layer
        self.gate = make_coarse(cfg, in_dim, 1)

    def forward(self, x: Tensor, s: Tensor, p: PairInputs,
                ctx: FusionContext) -> tuple[Tensor, Any]:
        g = self.gate(s, ctx)  # [P, 1]
        ctx.gate(self.layer, "query", g, "tanh")
        return x + g.unsqueeze(1) * p.that.unsqueeze(1), 0.0  # type: ignore[union-attr]


class PerHeadQueryFusion(nn.Module):
    """Variant 4: g = tanh(MLP(s)) of size H; after the query projection, Q_h += g_h (W_t t̂)_h."""

    def __init__(self, cfg: FusionConfig, layer: int, in_dim: int) -> None:
        super().__init__()
        self.layer, self.heads = layer, cfg.heads
        self.gate = make_coarse(cfg, in_dim, cfg.heads)
        self.w_t = nn.Linear(cfg.width, cfg.width, bias=False)

    def forward(self, x: Tensor, s: Tensor, p: PairInputs,
                ctx: FusionContext) -> tuple[Tensor, Any]:
        g = self.gate(s, ctx)  # [P, H]
        ctx.gate(self.layer, "query", g, "tanh")
        n = g.shape[0]
        inject = self.w_t(p.that).view(n, self.heads, 1, -1) * g[:, :, None, None]
        return x, inject  # added to q [P, H, F, d_h]


def make_query_fusion(cfg: FusionConfig, layer: int, in_dim: int) -> nn.Module:
    if cfg.query_fusion == "scalar":
        return ScalarQueryFusion(cfg, layer, in_dim)
    if cfg.query_fusion == "per_head":
        return PerHeadQueryFusion(cfg, layer, in_dim)
    return NoQueryFusion()


# ----------------------------------------------------------------------------------
# audio path: single (reference) or dual (6)
# ----------------------------------------------------------------------------------

class SinglePath(nn.Module):
    """The audio update is the video-query cross-attention output z_v."""

    def precompute(self, audio: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        return {}

    def forward(self, z_v: Tensor, s: Tensor, p: PairInputs, layer: int,
                ctx: FusionContext) -> Tensor:
        return z_v


class DualPath(nn.Module):
    """Variant 6: z_t = CA_t(LN(t̂), a) expanded over frames; w = sigmoid(MLP_w(s));
    update = w z_v + (1 - w) z_t. CA_t has its own weights (and temperature); its keys and
    values are precomputed per clip like the main path's."""

    def __init__(self, cfg: FusionConfig, in_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(cfg.width)
        self.attn = MultiHeadAttention(cfg.width, cfg.heads,
                                       make_temperature(cfg.attn_temperature, cfg.heads))
        self.mix = GateMLP(in_dim, cfg.width // 2, 1)

    def precompute(self, audio: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        return {"text": self.attn.project_kv(audio)}

    def forward(self, z_v: Tensor, s: Tensor, p: PairInputs, layer: int,
                ctx: FusionContext) -> Tensor:
        q = self.attn.project_q(self.norm(p.that).unsqueeze(1))  # type: ignore[arg-type]
        k, v = p.kv(layer, "text")
        z_t = self.attn.attend(q, k, v, p.akeys, p.key_bias)  # [P, 1, D]
        w = torch.sigmoid(self.mix(s)).unsqueeze(1)  # [P, 1, 1]
        ctx.gate(layer, "path", w, "sigmoid")
        return w * z_v + (1 - w) * z_t


# ----------------------------------------------------------------------------------
# the block
# ----------------------------------------------------------------------------------

class FusionBlock(nn.Module):
    """One layer of the gated fusion transformer (see the module docstring)."""

    def __init__(self, cfg: FusionConfig, layer: int, pool_v: nn.Module) -> None:
        super().__init__()
        d, h = cfg.width, cfg.heads
        with_text = cfg.gate_inputs == "vat"
        in_dim = (3 if with_text else 2) * d
        self.layer = layer
        self.pool_v = pool_v  # shared with the other blocks (one scorer per modality)
        self.summary = ClipSummary(with_text)
        self.query = make_query_fusion(cfg, layer, in_dim)
        self.attn_gate = make_gate_head(cfg, "attn", layer)
        self.ff_gate = make_gate_head(cfg, "ff", layer)
        self.decay = make_decay(cfg, layer)
        self.reliability = ReliabilityGate(d) if cfg.residual_gate else NoReliability()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ln3, self.ln4 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.cross_attn = MultiHeadAttention(d, h, make_temperature(cfg.attn_temperature, h))
        self.film: NoFiLM | FiLM = make_film(cfg.text_audio, d, h)
        self.audio_path: DualPath | SinglePath = (DualPath(cfg, in_dim) if cfg.dual_path
                                                  else SinglePath())
        self.cross_ff = Mlp(d, bias=False)
        self.self_attn = MultiHeadAttention(d, h)
        self.mlp = Mlp(d)
        use_rw = cfg.attn_reweighting and layer < cfg.layers - 1
        self.reweight = KeyReweighting(d, pool_v) if use_rw else NoReweighting()

    def precompute(self, audio: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        """Text-independent keys/values of the audio memory for this layer (once per clip)."""
        return {"main": self.cross_attn.project_kv(audio), **self.audio_path.precompute(audio)}

    def forward(self, x: Tensor, p: PairInputs, ctx: FusionContext) -> Tensor:
        xbar = self.pool_v(x, p.vkeys)
        s = self.summary(xbar, p)
        fused_query, q_inject = self.query(x, s, p, ctx)
        d = self.decay(ctx)
        g_a = self.attn_gate(x, s, p, ctx) * d
        g_f = self.ff_gate(x, s, p, ctx) * d
        r = self.reliability(xbar, p, self.layer, ctx)
        self.cross_attn.temperature.record(self.layer, ctx)

        q = self.film.queries(self.cross_attn.project_q(self.ln3(fused_query)) + q_inject,
                              p.that)
        k, v = p.kv(self.layer, "main")
        z = self.cross_attn.attend(q, k, v, p.akeys, p.key_bias, self.film.values(p.that))
        z = self.audio_path(z, s, p, self.layer, ctx)
        # x + gate * update in one pass (addcmul): a [P, 1, 1] gate times [P, F, D] as a
        # separate product takes CPU kernels 9x longer than the fused op (measured)
        x = torch.addcmul(x, r * g_a, z)
        x = torch.addcmul(x, g_f, self.cross_ff(self.ln4(x)))
        h = self.ln1(x)
        x = self.self_attn(h, h, p.vkeys, residual=x)  # x + SelfAttn(h)
        p.key_bias = self.reweight(x, p, self.layer, ctx)
        return linear_add(self.mlp, self.ln2(x), x)  # x + MLP(LN2(x))

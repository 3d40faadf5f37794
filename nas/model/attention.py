"""Multi-head attention with the hooks the variants need.

- key padding masks (proper ones: no ``/100`` trick),
- variant 2, temperature: ``softmax(q k^T / (sqrt(d_h) tau) + mask)``, implemented by
  dividing the *queries* by tau (the plan divided the mask, which does nothing),
- variant 4, per-head query injection: an additive term on the projected queries,
- variant 5, FiLM of the projected keys (and values) by the text, applied to the queries
  and to the attention output, which is equivalent (see ``FiLM``),
- variant 12, a key-wise additive bias (log reliability of each audio token).

Keys and values are projected by ``project_kv`` separately from the queries so that the
text-independent projections of the audio memory are computed once per clip.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.model import packed
from nas.model.common import GateMLP, safe_key_mask
from nas.model.packed import linear_add

__all__ = [
    "MultiHeadAttention", "key_padding", "NoTemperature", "Temperature", "make_temperature",
    "NoFiLM", "FiLM", "make_film", "NoReweighting", "KeyReweighting",
]


# ----------------------------------------------------------------------------------
# variant 2: temperature
# ----------------------------------------------------------------------------------

class NoTemperature(nn.Module):
    """tau = 1 (the reference)."""

    def scale(self, q: Tensor) -> Tensor:
        return q

    def value(self) -> Tensor | None:
        return None

    def record(self, layer: int, ctx) -> None:
        return None


class Temperature(nn.Module):
    """tau = exp(theta) clamped to [0.1, 10]; theta = 0 (tau = 1) at init.

    ``per_head``: one tau per head, else one scalar. Dividing q by tau divides the logits
    q.k / sqrt(d_h) by tau, before the mask is added.
    """

    def __init__(self, heads: int, per_head: bool) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(heads if per_head else 1))

    def tau(self) -> Tensor:
        return self.theta.exp().clamp(0.1, 10.0)

    def scale(self, q: Tensor) -> Tensor:  # q: [P, H, L, dh]
        return q / self.tau().view(1, -1, 1, 1)

    def value(self) -> Tensor | None:
        return self.tau()

    def record(self, layer: int, ctx) -> None:
        ctx.values("temperature", layer, self.tau())


def make_temperature(mode: str, heads: int) -> Temperature | NoTemperature:
    """``none`` | ``scalar`` | ``per_head`` -> temperature module."""
    return NoTemperature() if mode == "none" else Temperature(heads, mode == "per_head")


def key_padding(mask: Tensor) -> Tensor | None:
    """``mask`` for ``attend``, or None when every key is valid (one check, made once per
    batch of pairs by the caller rather than once per attention call)."""
    return None if bool(mask.all()) else mask


def _pad_keys(k: Tensor, v: Tensor, mask: Tensor | None, keys: int
              ) -> tuple[Tensor, Tensor, Tensor | None]:
    """Keys and values ``[C, H, M, d_h]`` padded with zeros to ``keys`` keys, and the
    attention mask extended so that the padding gets no weight (a boolean mask with False,
    an additive one with -inf; None becomes an additive ``[1, 1, 1, keys]``). See
    ``nas.model.packed`` for why."""
    m = k.shape[2]
    extra = keys - m

    def pad(x: Tensor) -> Tensor:  # written once (F.pad zero-fills all of it first)
        out = x.new_empty(x.shape[0], keys, x.shape[1], x.shape[3])  # [C, M', H, d_h]
        out[:, :m].copy_(x.transpose(1, 2))
        out[:, m:].zero_()
        return out.transpose(1, 2)

    k, v = pad(k), pad(v)
    if mask is None:
        mask = k.new_zeros(1, 1, 1, m + extra)
        mask[..., m:] = float("-inf")
    elif mask.dtype == torch.bool:
        mask = F.pad(mask, (0, extra), value=False)
    else:
        mask = F.pad(mask, (0, extra), value=float("-inf"))
    return k, v, mask


def _fold(x: Tensor, groups: int) -> Tensor:
    """``[C * groups, H, L, ...] -> [C, H, groups * L, ...]``: the ``groups`` consecutive
    rows of each clip (a clip-major grid) side by side along L.

    Free (a view) when ``x`` is laid out ``[P, L, H, ...]`` in memory, as the projections'
    head views are and as element-wise ops on them keep it; otherwise one copy."""
    p, h, n = x.shape[:3]
    return x.transpose(1, 2).reshape(p // groups, groups * n, h, *x.shape[3:]).transpose(1, 2)


def _unfold(x: Tensor, groups: int) -> Tensor:
    """The inverse of :func:`_fold`, returned laid out as ``[P, L, H, ...]``: ``[C, H,
    groups * L, ...] -> [C * groups, L, H, ...]`` (a view for the attention kernel's
    output, which keeps the queries' layout)."""
    c, h, g_n = x.shape[:3]
    return x.transpose(1, 2).reshape(c * groups, g_n // groups, h, *x.shape[3:])


# ----------------------------------------------------------------------------------
# attention
# ----------------------------------------------------------------------------------

class MultiHeadAttention(nn.Module):
    """Multi-head attention, batch-first; ``forward(x, mem, mask)`` or the split API.

    Split API (used by the fusion block): ``project_q``, ``project_kv`` (cacheable per clip),
    ``attend`` (with optional key bias), all tensors in head layout ``[P, H, L, d_h]``.
    """

    def __init__(self, dim: int, heads: int,
                 temperature: Temperature | NoTemperature | None = None) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.temperature: Temperature | NoTemperature = (
            temperature if temperature is not None else NoTemperature())

    def _heads(self, x: Tensor) -> Tensor:
        n, s, _ = x.shape
        return x.view(n, s, self.heads, self.head_dim).transpose(1, 2)

    def project_q(self, x: Tensor) -> Tensor:
        """``[P, L, D] -> [P, H, L, d_h]``."""
        return self._heads(self.q_proj(x))

    def project_kv(self, mem: Tensor) -> tuple[Tensor, Tensor]:
        """``[N, M, D] -> (k, v)``, each ``[N, H, M, d_h]``."""
        return self._heads(self.k_proj(mem)), self._heads(self.v_proj(mem))

    def attend(self, q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None,
               key_bias: Tensor | None = None,
               out_affine: tuple[Tensor, Tensor] | None = None,
               residual: Tensor | None = None) -> Tensor:
        """softmax(q k^T / (sqrt(d_h) tau) + bias + mask) v, then the output projection.

        q: ``[P, H, L, d_h]``; k, v: ``[C, H, M, d_h]``, key_mask: ``[C, M]`` bool (True =
        valid) or None when every key is valid (the kernel then skips the mask: a third
        faster on CPU for this model's short sequences; see :func:`key_padding`),
        key_bias: ``[P, M]`` additive or None; out_affine: (scale, shift), each
        ``[P, H, 1, d_h]``, applied to the heads' outputs before the output projection
        (FiLM of the values, see ``FiLM``) or None; residual: ``[P, L, D]`` added to the
        output (fused into the output projection where it can be, ``linear_add``) or None.
        Usually C = P (one memory per query
        row). C < P means a grid of P / C texts x the same C clips
        (``PairInputs``): the texts' queries against one clip are folded into one attention
        call over that clip's keys, which are never copied per pair (the rows of a softmax
        are independent, so the result is the same). The grid is clip-major (query row
        ``c * (P / C) + t``), so the fold is a view of the projected queries.
        """
        groups = q.shape[0] // k.shape[0]
        q = _fold(self.temperature.scale(q), groups)  # [C, H, groups * L, d_h]
        mask = None if key_mask is None else safe_key_mask(key_mask)[:, None, None, :]
        attn_mask = mask
        if key_bias is not None:
            bias = _fold(key_bias[:, None, None, :].expand(-1, 1, q.shape[2] // groups, -1),
                         groups).to(q.dtype)
            attn_mask = bias if mask is None else bias.masked_fill(~mask, float("-inf"))
        keys = packed.padded_keys(k.shape[2])  # > M only in CPU inference (packed_inference)
        if keys > k.shape[2] and q.numel() // q.shape[-1] >= packed.MIN_ROWS:
            k, v, attn_mask = _pad_keys(k, v, attn_mask, keys)
        o = _unfold(F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask), groups)
        if out_affine is not None:  # [P, H, 1, d_h] each, applied in o's [P, L, H, d_h]
            scale, shift = out_affine
            o = torch.addcmul(shift.transpose(1, 2), o, scale.transpose(1, 2))
        p, s = o.shape[:2]
        return linear_add(self.out_proj, o.reshape(p, s, -1), residual)

    def probabilities(self, x: Tensor, mem: Tensor, key_mask: Tensor) -> Tensor:
        """Attention probabilities ``[P, H, L, M]`` (for tests and analysis)."""
        q = self.temperature.scale(self.project_q(x))
        k, _ = self.project_kv(mem)
        logits = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        logits = logits.masked_fill(~safe_key_mask(key_mask)[:, None, None, :], float("-inf"))
        return logits.softmax(-1)

    def forward(self, x: Tensor, mem: Tensor, key_mask: Tensor | None,
                residual: Tensor | None = None) -> Tensor:
        """Attention of ``x`` over ``mem`` (+ ``residual``, see ``attend``)."""
        k, v = self.project_kv(mem)
        return self.attend(self.project_q(x), k, v, key_mask, residual=residual)


# ----------------------------------------------------------------------------------
# variant 5: text-conditioned audio (FiLM)
# ----------------------------------------------------------------------------------

class NoFiLM(nn.Module):
    """Keys and values unchanged."""

    def queries(self, q: Tensor, t_hat: Tensor | None) -> Tensor:
        return q

    def values(self, t_hat: Tensor | None) -> None:
        return None


class FiLM(nn.Module):
    """k' = k * (1 + gamma(t_hat)) + beta(t_hat) on the projected keys (and values).

    gamma, beta are linear and zero-initialised, so the layer starts as the identity. The
    multiplicative part is what changes the attention: a shift beta added to every key adds
    the same q.beta to every logit and leaves the softmax unchanged (the plan's bug); it is
    kept because on values it does matter.

    Computed without modulating the clip's keys and values per pair, by two identities
    (per head, gamma and beta broadcast over the keys):

    - q . (k (1 + gamma_k) + beta_k) = (q (1 + gamma_k)) . k + q . beta_k, and the last term
      is the same for every key: the softmax of the modulated keys is that of the keys
      against the modulated query (``queries``);
    - sum_j p_j (v_j (1 + gamma_v) + beta_v) = (sum_j p_j v_j) (1 + gamma_v) + beta_v, since
      the probabilities sum to 1: the attention output is modulated instead (``values``).

    So the keys and values stay the clip's, shared by every text (``PairInputs``), and the
    work per pair is on the L queries, not the M keys.
    ``tests/model/test_model_variants.py`` checks both against the literal definition.
    """

    def __init__(self, dim: int, heads: int, values: bool) -> None:
        super().__init__()
        self.heads = heads
        self.k_film = nn.Linear(dim, 2 * dim)
        self.v_film = nn.Linear(dim, 2 * dim) if values else None
        for lin in (self.k_film, self.v_film):
            if lin is not None:
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)

    def _film(self, lin: nn.Linear, t_hat: Tensor | None) -> tuple[Tensor, Tensor]:
        """(1 + gamma, beta), each ``[P, H, 1, d_h]``."""
        assert t_hat is not None, "FiLM needs the text"
        p = t_hat.shape[0]
        gamma, beta = lin(t_hat).view(p, 2, self.heads, 1, -1).unbind(1)
        return 1 + gamma, beta

    def modulate(self, k: Tensor, v: Tensor, t_hat: Tensor) -> tuple[Tensor, Tensor]:
        """The literal definition on per-pair keys and values ``[P, H, M, d_h]`` (for tests
        and analysis; the fusion uses ``queries`` and ``values``)."""
        scale, shift = self._film(self.k_film, t_hat)
        k = k * scale + shift
        if self.v_film is not None:
            scale, shift = self._film(self.v_film, t_hat)
            v = v * scale + shift
        return k, v

    def queries(self, q: Tensor, t_hat: Tensor | None) -> Tensor:
        """``[P, H, L, d_h]`` queries that score the clip's keys as the modulated keys."""
        return q * self._film(self.k_film, t_hat)[0]

    def values(self, t_hat: Tensor | None) -> tuple[Tensor, Tensor] | None:
        """(scale, shift) of the attention output, or None when only the keys are modulated."""
        return None if self.v_film is None else self._film(self.v_film, t_hat)


def make_film(mode: str, dim: int, heads: int) -> NoFiLM | FiLM:
    """``none`` | ``keys`` | ``keys_values`` -> FiLM module."""
    return NoFiLM() if mode == "none" else FiLM(dim, heads, values=(mode == "keys_values"))


# ----------------------------------------------------------------------------------
# variant 12: cross-modal attention reweighting
# ----------------------------------------------------------------------------------

class NoReweighting(nn.Module):
    """No key-wise bias for the next layer."""

    def forward(self, x: Tensor, p, layer: int, ctx) -> Tensor | None:
        return None


class KeyReweighting(nn.Module):
    """r_k = sigmoid(MLP([x̄; a_k])) per audio token; the next layer adds log(r + 1e-6).

    Computed after the self-attention of layer l from the pooled frames (with the model's
    video pooling, variant 9 when on). Built only on layers 0..L-2: the last layer has no
    next layer to bias.
    """

    def __init__(self, dim: int, pool: nn.Module) -> None:
        super().__init__()
        self.mlp = GateMLP(2 * dim, dim // 2, 1)
        self.pool = pool

    def forward(self, x: Tensor, p, layer: int, ctx) -> Tensor | None:
        audio = p.audio
        xbar = self.pool(x, p.vkeys)
        m = audio.shape[1]
        u = torch.cat([xbar.unsqueeze(1).expand(-1, m, -1), audio], dim=-1)
        r = torch.sigmoid(self.mlp(u).squeeze(-1))  # [P, M]
        ctx.gate(layer, "reweight", r, "sigmoid")
        return torch.log(r + 1e-6)

"""With every variant off, the model computes the reference of model.md §1.

The reference below is written from the specification with plain tensor operations, one
(text, clip) pair at a time, and reads the model's weights; it shares no code with the model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nas.evaluate import similarity
from nas.model import build_model

from model_helpers import make_clips, make_texts, tiny_config


def _lin(x, mod):
    return F.linear(x, mod.weight, mod.bias)


def _ln(x, mod):
    return F.layer_norm(x, (x.shape[-1],), mod.weight, mod.bias, mod.eps)


def _qgelu(x):
    return x * torch.sigmoid(1.702 * x)


def _mha(x, mem, valid, mod, heads):
    """Attention of x [L, D] over mem [M, D] with key validity [M]."""
    d = x.shape[-1]
    dh = d // heads
    q = _lin(x, mod.q_proj).view(-1, heads, dh).transpose(0, 1)
    k = _lin(mem, mod.k_proj).view(-1, heads, dh).transpose(0, 1)
    v = _lin(mem, mod.v_proj).view(-1, heads, dh).transpose(0, 1)
    logits = q @ k.transpose(1, 2) / math.sqrt(dh)
    logits = logits.masked_fill(~valid[None, None, :], float("-inf"))
    o = (logits.softmax(-1) @ v).transpose(0, 1).reshape(-1, d)
    return _lin(o, mod.out_proj)


def _mlp(x, seq):
    lin1, lin2 = seq[0], seq[2]
    return F.linear(_qgelu(F.linear(x, lin1.weight, lin1.bias)), lin2.weight, lin2.bias)


def _gate(s, head_mlp):
    return torch.tanh(F.linear(_qgelu(F.linear(s, head_mlp[0].weight)), head_mlp[2].weight))


def reference_score(model, video, vmask, audio, amask, text, tmask) -> torch.Tensor:
    """The score of one (text, clip) pair, model.md §1 (reference, no variants)."""
    cfg = model.cfg
    h = cfg.heads
    # inputs
    x0 = _lin(video, model.proj_v) + model.frame_pos[: video.shape[0]]
    a = _lin(audio, model.proj_a)
    tok = _lin(text, model.proj_t)
    # resampler
    if cfg.resampler_layers > 0:
        rs = model.resampler
        q = rs.queries + rs.pos
        for layer in rs.layers:
            allq = torch.ones(q.shape[0], dtype=torch.bool)
            q = q + _mha(_ln(q, layer.ln1), _ln(q, layer.ln1), allq, layer.self_attn, h)
            q = q + _mha(_ln(q, layer.ln2), a, amask, layer.cross_attn, h)
            q = q + _mlp(_ln(q, layer.ln3), layer.mlp)
        a, amask = q, torch.ones(q.shape[0], dtype=torch.bool)
    # text
    tbar = tok[tmask].mean(0)
    t_hat = tbar / tbar.norm()
    abar = a[amask].mean(0)
    # fusion blocks
    x = x0
    for blk in model.blocks:
        s = torch.cat([x[vmask].mean(0), abar, tbar])
        g_q = _gate(s, blk.query.gate.mlp)
        g_a = _gate(s, blk.attn_gate.coarse.mlp)
        g_f = _gate(s, blk.ff_gate.coarse.mlp)
        fused_query = x + g_q * t_hat
        x = x + g_a * _mha(_ln(fused_query, blk.ln3), a, amask, blk.cross_attn, h)
        ff = blk.cross_ff
        x = x + g_f * F.linear(_qgelu(F.linear(_ln(x, blk.ln4), ff[0].weight)), ff[2].weight)
        y = _ln(x, blk.ln1)
        x = x + _mha(y, y, vmask, blk.self_attn, h)
        x = x + _mlp(_ln(x, blk.ln2), blk.mlp)
    fused = cfg.residual_mix * x + (1 - cfg.residual_mix) * x0
    # similarity
    s = model.logit_scale.exp().clamp(max=100)
    t = tbar / tbar.norm()
    frames = F.normalize(fused[vmask], dim=-1)
    v = frames.mean(0)
    glob = s * (t @ (v / v.norm()))
    lam = cfg.local_lambda
    local = torch.logsumexp(lam * s * (frames @ t), 0) / lam
    return (glob + local) / 2


def reference_matrix(model, clips, texts) -> torch.Tensor:
    S = torch.empty(len(texts), len(clips), dtype=clips.video.dtype)
    for i in range(len(texts)):
        for j in range(len(clips)):
            S[i, j] = reference_score(model, clips.video[j], clips.video_mask[j], clips.audio[j],
                                      clips.audio_mask[j], texts.text[i], texts.text_mask[i])
    return S


def reference_loss(S: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE for one caption per clip (text i <-> clip i)."""
    target = torch.arange(S.shape[0])
    return (F.cross_entropy(S, target) + F.cross_entropy(S.t(), target)) / 2


def test_reference_equals_model_scores_and_loss() -> None:
    torch.manual_seed(0)
    cfg = tiny_config()
    model = build_model(cfg).double()
    clips = make_clips(5, cfg, dtype=torch.float64)
    texts = make_texts(5, cfg, dtype=torch.float64)
    with torch.no_grad():
        S_ref = reference_matrix(model, clips, texts)
    S = similarity(model, texts, clips, chunk_size=7)
    torch.testing.assert_close(S, S_ref, rtol=1e-10, atol=1e-9)
    out = model.training_loss(clips, texts, torch.arange(5))
    torch.testing.assert_close(out.loss.detach(), reference_loss(S_ref), rtol=1e-10, atol=1e-9)


def test_reference_without_resampler_uses_audio_mask() -> None:
    # 0 resampler layers: the projected audio tokens are the memory, padding masked.
    torch.manual_seed(1)
    cfg = tiny_config(resampler_layers=0, residual_mix=0.5)
    model = build_model(cfg).double()
    clips = make_clips(3, cfg, dtype=torch.float64)
    texts = make_texts(2, cfg, dtype=torch.float64)
    with torch.no_grad():
        S_ref = reference_matrix(model, clips, texts)
    torch.testing.assert_close(similarity(model, texts, clips), S_ref, rtol=1e-10, atol=1e-9)
    # padding really is ignored: garbage in padded audio tokens changes nothing
    audio = clips.audio.clone()
    audio[~clips.audio_mask] = 1e3
    from dataclasses import replace
    torch.testing.assert_close(similarity(model, texts, replace(clips, audio=audio)), S_ref,
                               rtol=1e-10, atol=1e-9)

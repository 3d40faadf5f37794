"""FusionRetrievalModel: projections, frame positions, resampler, L gated fusion blocks,
residual mix, global + local similarity, and the honest training loss.

Work is split by what it depends on (model.md §2):

- ``encode_clips``: everything that does not depend on the text, once per clip:
  projections, frame position embeddings, the resampler, pooled audio statistics, the
  per-layer keys/values of the audio memory, and for text-agnostic configs the whole fusion;
- ``encode_texts``: the text side, once per text;
- ``score_pairs``: the text-dependent fusion of aligned (text, clip) pairs, batched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.batch import ClipBatch, TextBatch
from nas.config import FusionConfig
from nas.errors import UserError
from nas.model.block import ClipSummary, FusionBlock, PairInputs
from nas.model.common import masked_mean, masked_std
from nas.model.context import FusionContext, Recorder
from nas.model.losses import GateContrastive, Margin, NoGateContrastive, NoMargin, symmetric_infonce
from nas.model.pooling import make_pool
from nas.model.resampler import make_resampler
from nas.model.routing import LayerRouter, NoRouter

__all__ = ["ClipEncoding", "TextEncoding", "LossOutput", "FusionRetrievalModel", "build_model"]


@dataclass
class ClipEncoding:
    """Text-independent per-clip tensors (first dimension = clip)."""

    x0: Tensor  # [N, F, D] projected frames + position embeddings (fusion input)
    vmask: Tensor  # [N, F] bool
    audio: Tensor  # [N, M, D] audio memory (resampled, or projected tokens)
    amask: Tensor  # [N, M] bool
    abar: Tensor  # [N, D] pooled audio (zeroed for silent clips when residual_gate is on)
    astd: Tensor  # [N, D] std of the audio memory (idem)
    has_audio: Tensor  # [N] float
    first: Tensor  # [N, F, D] L2-normalised x0 frames: the cheap first-stage score
    kv: list[dict[str, tuple[Tensor, Tensor]]] | None  # per layer: audio keys/values
    fused: Tensor | None = None  # [N, F, D] normalised fused frames (text-agnostic configs)
    gates: Tensor | None = None  # [N, G] per-clip gate means (text-agnostic, variant 8)

    def __len__(self) -> int:
        return int(self.x0.shape[0])

    @staticmethod
    def cat(parts: list["ClipEncoding"]) -> "ClipEncoding":
        """Concatenate encodings of consecutive clip chunks."""
        out: dict[str, Any] = {}
        for f in fields(ClipEncoding):
            vals = [getattr(p, f.name) for p in parts]
            if vals[0] is None:
                out[f.name] = None
            elif f.name == "kv":
                out[f.name] = [{k: (torch.cat([v[i][k][0] for v in vals]),
                                    torch.cat([v[i][k][1] for v in vals]))
                                for k in vals[0][i]} for i in range(len(vals[0]))]
            else:
                out[f.name] = torch.cat(vals)
        return ClipEncoding(**out)


@dataclass
class TextEncoding:
    """Per-text tensors (first dimension = text)."""

    t: Tensor  # [M, D] L2-normalised masked mean of the projected tokens (similarity)
    tbar: Tensor  # [M, D] pooled text for the gate inputs (mean, or attention pooling)
    that: Tensor  # [M, D] tbar / ||tbar||: the text injected into the queries

    def __len__(self) -> int:
        return int(self.t.shape[0])


@dataclass
class LossOutput:
    """A training step's loss, its parts (floats, for logging) and gate means."""

    loss: Tensor
    parts: dict[str, float]
    gates: dict[str, float]


class _AudioPresence(nn.Module):
    """Variant 3 treats silent clips as audio-free in every gate input; otherwise a no-op."""

    def __init__(self, enabled: bool) -> None:
        super().__init__()
        self.enabled = enabled

    def forward(self, has_audio: Tensor) -> Tensor:
        return has_audio if self.enabled else torch.ones_like(has_audio)


def score_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype scores are computed and kept in: at least float32 (float64 stays float64).

    Under bf16/fp16 autocast (``Trainer`` on CUDA) a score rounded to 8 mantissa bits
    collapses neighbouring clips into ties, and ties count against the target in the
    retrieval metrics: configurations whose scores are many small differences (reranking,
    text-agnostic dense scores) would be penalised on GPU only.
    """
    return torch.promote_types(dtype, torch.float32)


def _full_precision(x: Tensor) -> Any:
    """Autocast off for a score computation on ``x``'s device (inputs are cast by the caller)."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def _proj(in_dim: int, width: int) -> nn.Module:
    # model.md: "project each to width D if its dim differs".
    return nn.Identity() if in_dim == width else nn.Linear(in_dim, width)


class FusionRetrievalModel(nn.Module):
    """The gated audio-video-text fusion retrieval model, built from a ``FusionConfig``."""

    def __init__(self, cfg: FusionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.width
        self.text_conditioned = cfg.text_conditioned
        self.proj_v = _proj(cfg.video_dim, d)
        self.proj_a = _proj(cfg.audio_dim, d)
        self.proj_t = _proj(cfg.text_dim, d)
        self.frame_pos = nn.Parameter(torch.randn(cfg.max_frames, d) * 0.01)
        self.resampler = make_resampler(d, cfg.heads, cfg.resampler_layers, cfg.resampler_queries)
        self.pool_v = make_pool(cfg.pooling, d)
        self.pool_a = make_pool(cfg.pooling, d)
        self.pool_t = make_pool(cfg.pooling, d)
        self.audio_presence = _AudioPresence(cfg.residual_gate)
        self.blocks = nn.ModuleList(FusionBlock(cfg, i, self.pool_v) for i in range(cfg.layers))
        with_text = cfg.gate_inputs == "vat"
        in_dim = (3 if with_text else 2) * d
        self.router_summary = ClipSummary(with_text)
        self.router: LayerRouter | NoRouter = (
            LayerRouter(in_dim, d // 2, cfg.layers, cfg.routing_sparsity,
                        cfg.routing_skip_threshold)
            if cfg.routing else NoRouter())
        self.logit_scale = nn.Parameter(torch.tensor(math.log(cfg.logit_scale_init)))
        self.margin: nn.Module = (Margin(cfg.margin_beta, cfg.margin_delta) if cfg.margin
                                  else NoMargin())
        self.gate_contrast: GateContrastive | NoGateContrastive = (
            GateContrastive(cfg.gate_contrastive_weight, cfg.gate_contrastive_tau)
            if cfg.gate_contrastive_weight > 0 else NoGateContrastive())

    # ------------------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def scale(self) -> Tensor:
        """The logit scale s = exp(theta), clamped to <= 100."""
        return self.logit_scale.exp().clamp(max=100.0)

    def _check_dim(self, name: str, x: Tensor, want: int, field: str) -> None:
        if x.shape[-1] != want:
            raise UserError(f"{name} features have dimension {x.shape[-1]} but the config's "
                            f"'{field}' is {want}")

    # ------------------------------------------------------------------------------
    # encoders
    # ------------------------------------------------------------------------------
    def encode_clips(self, clips: ClipBatch, recorder: Recorder | None = None,
                     ctx: FusionContext | None = None) -> ClipEncoding:
        """All text-independent work, once per clip.

        For text-agnostic configs this includes the whole fusion (gates go to ``recorder``
        or ``ctx``); for text-conditioned ones, the keys/values of the audio memory of every
        layer are cached so pair fusion only gathers them.
        """
        cfg = self.cfg
        self._check_dim("video", clips.video, cfg.video_dim, "video_dim")
        self._check_dim("audio", clips.audio, cfg.audio_dim, "audio_dim")
        n_frames = clips.video.shape[1]
        if n_frames > cfg.max_frames:
            raise UserError(f"clips have {n_frames} frames but the config's 'max_frames' is "
                            f"{cfg.max_frames}")
        x0 = self.proj_v(clips.video) + self.frame_pos[:n_frames]
        vmask = clips.video_mask.bool()
        audio, amask = self.resampler(self.proj_a(clips.audio), clips.audio_mask.bool())
        has_audio = clips.has_audio.to(x0.dtype)
        present = self.audio_presence(has_audio).unsqueeze(-1)
        enc = ClipEncoding(
            x0=x0, vmask=vmask, audio=audio, amask=amask,
            abar=self.pool_a(audio, amask) * present, astd=masked_std(audio, amask) * present,
            has_audio=has_audio, first=F.normalize(x0, dim=-1),
            kv=[cast(FusionBlock, blk).precompute(audio) for blk in self.blocks])
        if self.text_conditioned:
            return enc
        ctx = ctx if ctx is not None else FusionContext(recorder=recorder)
        fused = self._fuse(enc, None, None, None, ctx)
        # keys/values are not needed once the clip is fused: free them.
        return replace(enc, fused=fused, kv=None, gates=ctx.gate_matrix())

    def encode_texts(self, texts: TextBatch) -> TextEncoding:
        """Project the tokens; t (similarity) = normalised masked mean, t̄ for the gates."""
        self._check_dim("text", texts.text, self.cfg.text_dim, "text_dim")
        tok = self.proj_t(texts.text)
        mask = texts.text_mask.bool()
        t = F.normalize(masked_mean(tok, mask), dim=-1)
        tbar = self.pool_t(tok, mask)  # one token pools to itself under either pooling
        return TextEncoding(t=t, tbar=tbar, that=F.normalize(tbar, dim=-1))

    # ------------------------------------------------------------------------------
    # fusion and similarity
    # ------------------------------------------------------------------------------
    def _fuse(self, clips: ClipEncoding, texts: TextEncoding | None, clip_idx: Tensor | None,
              text_idx: Tensor | None, ctx: FusionContext,
              memory: Tensor | slice | None = None) -> Tensor:
        """Fuse aligned pairs -> L2-normalised fused frames ``[P, F, D]``.

        ``memory``: the clips of a clip-major grid of pairs (see ``PairInputs``)."""
        p = PairInputs(clips, texts, clip_idx, text_idx, memory)
        ctx.frame_mask = p.vmask
        x0 = clips.x0 if clip_idx is None else clips.x0[clip_idx]
        w = self.router.weights(lambda: self.router_summary(self.pool_v(x0, p.vkeys), p), ctx)
        x = x0
        for layer, blk in enumerate(self.blocks):
            x = self.router.mix(layer, x, blk(x, p, ctx), w)
        mix = self.cfg.residual_mix
        return F.normalize(mix * x + (1.0 - mix) * x0, dim=-1)

    def pair_similarity(self, t: Tensor, frames: Tensor, vmask: Tensor) -> Tensor:
        """(global + local) / 2 for aligned pairs: t ``[P, D]``, normalised frames ``[P, F, D]``.

        In at least float32 whatever the autocast (see :func:`score_dtype`)."""
        dt = score_dtype(frames.dtype)
        with _full_precision(frames):
            t, frames, s = t.to(dt), frames.to(dt), self.scale().to(dt)
            vbar = F.normalize(masked_mean(frames, vmask), dim=-1)
            glob = s * (t * vbar).sum(-1)
            cos = torch.einsum("pd,pfd->pf", t, frames)
            lam = self.cfg.local_lambda
            local = (lam * s * cos).masked_fill(~vmask, float("-inf")).logsumexp(-1) / lam
            return 0.5 * (glob + local)

    def dense_similarity(self, t: Tensor, frames: Tensor, vmask: Tensor,
                         max_elems: int = 1 << 24) -> Tensor:
        """(global + local) / 2 for every text x clip: t ``[N_t, D]``, frames ``[N_v, F, D]``.

        Chunked over clips so the ``[N_t, chunk, F]`` cosine tensor stays bounded. In at
        least float32 whatever the autocast (see :func:`score_dtype`).
        """
        dt = score_dtype(frames.dtype)
        with _full_precision(frames):
            t, frames, s = t.to(dt), frames.to(dt), self.scale().to(dt)
            lam = self.cfg.local_lambda
            n_t, (n_v, n_f, _) = t.shape[0], frames.shape
            vbar = F.normalize(masked_mean(frames, vmask), dim=-1)
            glob = s * t @ vbar.t()
            step = max(1, max_elems // max(1, n_t * n_f))
            local = []
            for j in range(0, n_v, step):
                cos = torch.einsum("td,vfd->tvf", t, frames[j:j + step])
                logits = (lam * s * cos).masked_fill(~vmask[j:j + step].unsqueeze(0),
                                                     float("-inf"))
                local.append(logits.logsumexp(-1) / lam)
            return 0.5 * (glob + torch.cat(local, dim=1))

    def score_pairs(self, clips: ClipEncoding, texts: TextEncoding, clip_idx: Tensor,
                    text_idx: Tensor, recorder: Recorder | None = None) -> Tensor:
        """Scores ``[P]`` of the aligned pairs (text ``text_idx[p]``, clip ``clip_idx[p]``).

        Each score depends only on its own text and clip (the clip is fused with the text
        being scored). Gate values go to ``recorder`` (text-conditioned configs; for
        text-agnostic ones they were recorded by ``encode_clips``).
        """
        if not self.text_conditioned:
            assert clips.fused is not None
            return self.pair_similarity(texts.t[text_idx], clips.fused[clip_idx],
                                        clips.vmask[clip_idx])
        ctx = FusionContext(recorder=recorder)
        return self._score_conditioned(clips, texts, clip_idx, text_idx, ctx)

    def _score_conditioned(self, clips: ClipEncoding, texts: TextEncoding, clip_idx: Tensor,
                           text_idx: Tensor, ctx: FusionContext,
                           memory: Tensor | slice | None = None) -> Tensor:
        fused = self._fuse(clips, texts, clip_idx, text_idx, ctx, memory)
        return self.pair_similarity(texts.t[text_idx], fused, clips.vmask[clip_idx])

    def score_grid(self, clips: ClipEncoding, texts: TextEncoding, text_idx: Tensor,
                   clip_block: slice, recorder: Recorder | None = None) -> Tensor:
        """Scores ``[T, C]`` of every text of ``text_idx`` against every clip of
        ``clip_block`` (a slice of ``clips``): the same scores as ``score_pairs`` on the
        T x C aligned pairs, but each clip's audio memory is read in place, once, not
        copied per pair (see ``PairInputs``)."""
        ctx = FusionContext(recorder=recorder)
        return self._grid_scores(clips, texts, text_idx, clip_block, ctx)

    @staticmethod
    def _grid_row(t: Tensor, c: Tensor, n_t: int) -> Tensor:
        """The row of pair (text t, clip c) in a grid of ``n_t`` texts: clip-major, so each
        clip's rows are adjacent and attention folds them into one call without moving the
        queries (``MultiHeadAttention.attend``)."""
        return c * n_t + t

    def _grid_scores(self, clips: ClipEncoding, texts: TextEncoding, text_idx: Tensor,
                     clip_block: slice, ctx: FusionContext) -> Tensor:
        dev = text_idx.device
        cols = torch.arange(len(clips), device=dev)[clip_block]
        n_t, n_c = text_idx.shape[0], cols.shape[0]
        ti, ci = text_idx.repeat(n_c), cols.repeat_interleave(n_t)  # row _grid_row(t, c)
        if not self.text_conditioned:
            return self.score_pairs(clips, texts, ci, ti).view(n_c, n_t).t()
        return self._score_conditioned(clips, texts, ci, ti, ctx, clip_block).view(n_c, n_t).t()

    def agnostic_scores(self, clips: ClipEncoding, texts: TextEncoding) -> Tensor:
        """Cheap text-agnostic first-stage scores ``[N_t, N_v]`` for reranking: the same
        similarity computed on the unfused frames x0 (which carry 1 - residual_mix of the
        fused output)."""
        return self.dense_similarity(texts.t, clips.first, clips.vmask)

    def dense_scores(self, clips: ClipEncoding, texts: TextEncoding) -> Tensor:
        """All scores ``[N_t, N_v]`` of a text-agnostic config (clips fused once each)."""
        if self.text_conditioned or clips.fused is None:
            raise ValueError("dense_scores needs a text-agnostic config (clips fused once)")
        return self.dense_similarity(texts.t, clips.fused, clips.vmask)

    def score_bound(self) -> float:
        """An upper bound of |score|: global in [-s, s], local in [-s, s + log(F)/lambda]."""
        s = float(self.scale().detach())
        return s + math.log(self.cfg.max_frames) / self.cfg.local_lambda

    # ------------------------------------------------------------------------------
    # training loss
    # ------------------------------------------------------------------------------
    def training_loss(self, clips: ClipBatch, texts: TextBatch, text_clip: Tensor,
                      negatives: int = 0) -> LossOutput:
        """Symmetric InfoNCE (+ margin, + variant losses) of one batch.

        Text-conditioned configs fuse every clip with every text it is scored against:
        all B_t x B_v pairs (``negatives = 0``), or per text its clip and K random other
        clips (text->video) plus, fused with its clip, K random texts of other clips
        (video->text), each a (K+1)-way cross-entropy. Text-agnostic configs fuse each clip
        once and always use the full B_t x B_v matrix (``negatives`` is ignored: it is cheap).
        """
        text_clip = text_clip.to(self.device).long()
        ctx = FusionContext(collect_gates=self.gate_contrast.active)
        enc = self.encode_clips(clips, ctx=ctx)
        tenc = self.encode_texts(texts)
        b_t, b_v = len(tenc), len(enc)
        v_emb = F.normalize(masked_mean(enc.first, enc.vmask), dim=-1)
        margin = self.margin(tenc.t, v_emb, text_clip, self.scale().detach())
        parts: dict[str, Tensor] = {}

        if not self.text_conditioned:
            S = self.dense_scores(enc, tenc)
            parts["infonce"] = symmetric_infonce(S if margin is None else S + margin, text_clip)
            gate_rows = None if enc.gates is None else enc.gates[text_clip]
        elif negatives <= 0:
            S = self._grid_scores(enc, tenc, torch.arange(b_t, device=self.device),
                                  slice(0, b_v), ctx)
            parts["infonce"] = symmetric_infonce(S if margin is None else S + margin, text_clip)
            g = ctx.gate_matrix()
            positives = self._grid_row(torch.arange(b_t, device=self.device), text_clip, b_t)
            gate_rows = None if g is None else g[positives]
        else:
            parts["infonce"], gate_rows = self._sampled_loss(enc, tenc, text_clip, negatives,
                                                             margin, ctx)

        labels = text_clip if clips.labels is None else clips.labels.to(self.device)[text_clip]
        gc = self.gate_contrast(gate_rows, labels)
        if gc is not None:
            parts["gate_contrastive"] = gc
        parts.update(ctx.losses)
        loss = sum(parts.values())
        # one device->host copy for every part
        out = dict(zip(parts, torch.stack([v.detach().float() for v in parts.values()]).tolist()))
        if margin is not None:
            out["margin_mean"] = float(margin.mean())
        out["logit_scale"] = float(self.scale().detach())
        return LossOutput(loss=loss, parts=out, gates=ctx.summary())  # type: ignore[arg-type]

    def _sampled_loss(self, enc: ClipEncoding, tenc: TextEncoding, text_clip: Tensor, k: int,
                      margin: Tensor | None, ctx: FusionContext) -> tuple[Tensor, Tensor | None]:
        dev = self.device
        b_t, b_v = len(tenc), len(enc)
        if b_v < 2:
            raise ValueError("sampled negatives need at least 2 clips in the batch")
        # text -> video: own clip at column 0, K other clips (offset trick: never the own clip)
        offs = torch.randint(1, b_v, (b_t, k), device=dev)
        cand_c = torch.cat([text_clip[:, None], (text_clip[:, None] + offs) % b_v], dim=1)
        # video -> text: the text's clip fused with K texts of *other* clips
        kk = min(k, b_t)
        r = torch.rand(b_t, b_t, device=dev).masked_fill(
            text_clip[:, None] == text_clip[None, :], -1.0)
        rv, cand_t = r.topk(kk, dim=1)
        valid = rv >= 0  # fewer than K texts of other clips: the rest are masked out
        ti = torch.cat([torch.arange(b_t, device=dev).repeat_interleave(k + 1), cand_t.reshape(-1)])
        ci = torch.cat([cand_c.reshape(-1), text_clip.repeat_interleave(kk)])
        scores = self._score_conditioned(enc, tenc, ci, ti, ctx)
        s1 = scores[: b_t * (k + 1)].view(b_t, k + 1)
        s2 = scores[b_t * (k + 1):].view(b_t, kk)
        if margin is not None:
            s1 = s1 + margin.gather(1, cand_c)
            s2 = s2 + margin[cand_t, text_clip[:, None].expand(-1, kk)]
        v2t = torch.cat([s1[:, :1], s2.masked_fill(~valid, float("-inf"))], dim=1)
        zero = torch.zeros(b_t, dtype=torch.long, device=dev)
        loss = 0.5 * (F.cross_entropy(s1, zero) + F.cross_entropy(v2t, zero))
        g = ctx.gate_matrix()
        rows = None if g is None else g[torch.arange(b_t, device=dev) * (k + 1)]
        return loss, rows


def build_model(cfg: FusionConfig) -> FusionRetrievalModel:
    """Build the model of ``cfg`` (every variant chosen here, at construction)."""
    if not isinstance(cfg, FusionConfig):
        raise TypeError(f"build_model expects a FusionConfig, got {type(cfg).__name__}")
    return FusionRetrievalModel(cfg)

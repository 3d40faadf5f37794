"""Honest evaluation: the similarity matrix, gate records and statistics, metrics.

``similarity`` returns S[N_t, N_v] where S[i, j] is a pure function of (text i, clip j)
(model.md §2): each clip's text-independent work is done once, then only the
text-dependent fusion is tiled over (text, clip) pairs in chunks of ``chunk_size`` pairs.
Text-agnostic configs fuse each clip once and score by dot products / local logsumexp.
"""

from __future__ import annotations

import ctypes
import math
import os
import platform
from typing import Any

import torch
from torch import Tensor

from nas.batch import ClipBatch, TextBatch
from nas.model.model import score_dtype  # scores in >= float32, even under bf16 autocast
from nas.model.packed import packed_inference

__all__ = ["similarity", "GateRecorder", "gate_statistics", "retrieval_metrics",
           "SATURATION_WARN"]

#: A gate whose saturated fraction exceeds this gets a "gate saturation" warning.
SATURATION_WARN = 0.5
#: Clips encoded per call (bounds the memory of the text-independent pass).
CLIP_ENCODE_CHUNK = 1024


#: glibc malloc settings for scoring and training processes (see ``tune_malloc``).
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 512 << 20
_MALLOC_TUNED: list[bool] = []


def tune_malloc() -> bool:
    """Keep freed tensor memory in the process between scoring chunks (glibc only; once).

    Every chunk of the tiled text-conditioned pass (and every training step of a
    text-conditioned config) allocates and frees the same few dozen activations of
    0.5-30 MB. glibc serves blocks above its mmap threshold (dynamic, starting at 128 KB)
    with fresh ``mmap``s and gives the top of the heap back to the OS once more than its
    trim threshold (twice the mmap threshold) is free, so each chunk faulted its
    activations in again, page by page: measured, about 20,000 minor faults per 256-pair
    chunk, a third of the pass in the kernel on one 2-core machine (BENCHMARKS.md).
    Raising both thresholds (what ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``
    do from the environment) lets chunk n+1 reuse chunk n's pages. The cost: up to
    ``TRIM_THRESHOLD`` bytes of freed memory stay with the process. ``NAS_MALLOC_TUNING=0``
    turns it off; other C libraries are left alone. Returns whether it is in effect.
    """
    if _MALLOC_TUNED:
        return _MALLOC_TUNED[0]
    ok = False
    if os.environ.get("NAS_MALLOC_TUNING", "1") != "0" and platform.libc_ver()[0] == "glibc":
        try:
            mallopt = ctypes.CDLL(None).mallopt
            m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
            ok = bool(mallopt(m_mmap_threshold, MMAP_THRESHOLD)) and \
                bool(mallopt(m_trim_threshold, TRIM_THRESHOLD))
        except (OSError, AttributeError):
            ok = False
    _MALLOC_TUNED.append(ok)
    return ok


def pair_chunk(model: Any, frames: int, limit: int = 4096) -> int:
    """(text, clip) pairs fused per call in the tiled pass: the largest power of two (at
    most ``limit``, at least 64) whose biggest per-chunk activation, the MLP's hidden layer
    ``[pairs, frames, 4 * width]``, stays under ``MMAP_THRESHOLD``, so that with
    ``tune_malloc`` every activation of a chunk reuses the pages of the one before.
    Larger chunks cost fewer calls but, above it, are ``mmap``-ed and faulted in afresh.
    Off the CPU (CUDA's caching allocator keeps its blocks) it is ``limit``."""
    if model.device.type != "cpu":
        return limit
    elem = next(model.parameters()).element_size()
    per_pair = max(1, frames * 4 * int(model.cfg.width) * elem)
    n = 64
    while n * 2 <= limit and n * 2 * per_pair <= MMAP_THRESHOLD:
        n *= 2
    return n


def retrieval_metrics(S: Tensor, text_clip: Tensor) -> dict[str, float]:
    """Re-export of ``nas.metrics.retrieval_metrics`` (imported lazily)."""
    from nas.metrics import retrieval_metrics as _rm

    return _rm(S, text_clip)


# ----------------------------------------------------------------------------------
# similarity
# ----------------------------------------------------------------------------------

def _encode_clips(model: Any, clips: ClipBatch, recorder: Any) -> Any:
    from nas.model import ClipEncoding

    n = len(clips)
    parts = [model.encode_clips(clips.index(slice(i, i + CLIP_ENCODE_CHUNK)), recorder=recorder)
             for i in range(0, n, CLIP_ENCODE_CHUNK)]
    return parts[0] if len(parts) == 1 else ClipEncoding.cat(parts)


def _score_flat(model: Any, cenc: Any, tenc: Any, text_idx: Tensor, clip_idx: Tensor,
                chunk_size: int, recorder: Any) -> Tensor:
    """Scores of aligned pairs, fused ``chunk_size`` pairs at a time."""
    out = torch.empty(text_idx.shape[0], device=text_idx.device, dtype=score_dtype(cenc.x0.dtype))
    for a in range(0, text_idx.shape[0], chunk_size):
        b = a + chunk_size
        out[a:b] = model.score_pairs(cenc, tenc, clip_idx[a:b], text_idx[a:b], recorder=recorder)
    return out


def similarity(model: Any, texts: TextBatch, clips: ClipBatch, chunk_size: int = 4096,
               rerank_k: int | None = None, gate_records: Any = None,
               recorder: Any = None) -> Tensor:
    """Honest score matrix ``S [N_t, N_v]`` on the model's device, under no_grad and eval().

    Args:
        chunk_size: at most this many (text, clip) pairs fused per batched call
            (text-conditioned configs); fewer when ``pair_chunk`` says larger chunks would
            fault their activations in afresh. The scores do not depend on it.
        rerank_k: two-stage scoring: per text, rank all clips by the cheap text-agnostic
            first stage (``model.agnostic_scores``), run the text-conditioned fusion only on
            the top k. Defaults to ``model.cfg.rerank_k``; 0/None/k >= N_v = exact. A clip
            outside a text's top k gets ``first_stage - C`` with ``C = 2 * bound + 1``, where
            ``bound = s + log(max_frames) / lambda`` bounds |score|: it is below every possible
            reranked score, keeps the first-stage order among the rest, and is still a
            function of the pair and of whether it made the top k.
        gate_records / recorder: a ``GateRecorder`` receiving every fused pair's gates
            (the two names are aliases; ``gate_records`` is the documented one).
    """
    rec = gate_records if gate_records is not None else recorder
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    tune_malloc()
    was_training = model.training
    model.eval()
    dev = model.device
    try:
        with torch.no_grad(), packed_inference(model):
            texts, clips = texts.to(dev), clips.to(dev)
            if not model.text_conditioned:
                cenc = _encode_clips(model, clips, rec)
                return model.dense_scores(cenc, model.encode_texts(texts))
            cenc = _encode_clips(model, clips, None)
            tenc = model.encode_texts(texts)
            chunk_size = min(chunk_size, pair_chunk(model, int(cenc.x0.shape[1])))
            n_t, n_v = len(tenc), len(cenc)
            k = model.cfg.rerank_k if rerank_k is None else rerank_k
            if k and k < n_v:
                first = model.agnostic_scores(cenc, tenc)
                top = first.topk(k, dim=1).indices  # [N_t, k]
                ti = torch.arange(n_t, device=dev).repeat_interleave(k)
                exact = _score_flat(model, cenc, tenc, ti, top.reshape(-1), chunk_size, rec)
                S = first - (2.0 * model.score_bound() + 1.0)
                return S.scatter_(1, top, exact.view(n_t, k).to(S.dtype))
            # blocks of texts x clips: each clip's keys/values are read in place, not copied
            # per pair (model.score_grid)
            n_c = min(n_v, chunk_size)
            n_tb = max(1, chunk_size // n_c)
            S = torch.empty(n_t, n_v, device=dev, dtype=score_dtype(cenc.x0.dtype))
            for a in range(0, n_t, n_tb):
                rows = torch.arange(a, min(a + n_tb, n_t), device=dev)
                for c in range(0, n_v, n_c):
                    S[a:a + n_tb, c:c + n_c] = model.score_grid(cenc, tenc, rows,
                                                                slice(c, c + n_c), recorder=rec)
            return S
    finally:
        model.train(was_training)


# ----------------------------------------------------------------------------------
# gate records
# ----------------------------------------------------------------------------------

_RANGES = {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0), "indicator": (0.0, 1.0)}


class _Stream:
    """Streaming statistics of one gate: moments, histogram, saturation, a uniform sample."""

    def __init__(self, kind: str, bins: int, max_samples: int, gen: torch.Generator) -> None:
        self.kind, self.max_samples, self.gen = kind, max_samples, gen
        lo, hi = _RANGES.get(kind, (-1.0, 1.0))
        self.edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
        self.hist = torch.zeros(bins, dtype=torch.float64)
        self.n = 0
        self.sum = 0.0
        self.sumsq = 0.0
        self.saturated = 0
        self.keys = torch.empty(0)
        self.sample = torch.empty(0)

    def add(self, v: Tensor) -> None:
        v = v.detach().reshape(-1).to("cpu", torch.float64)
        v = v[torch.isfinite(v)]
        if v.numel() == 0:
            return
        self.n += v.numel()
        self.sum += float(v.sum())
        self.sumsq += float((v * v).sum())
        self.saturated += int(_saturated(v, self.kind).sum())
        lo, hi = float(self.edges[0]), float(self.edges[-1])
        self.hist += torch.histc(v.clamp(lo, hi), bins=self.hist.numel(), min=lo, max=hi)
        # bottom-k sampling by random keys: a uniform sample without replacement of the
        # whole stream, whatever the chunking
        keys = torch.rand(v.numel(), generator=self.gen, dtype=torch.float64)
        self.keys = torch.cat([self.keys.double(), keys])
        self.sample = torch.cat([self.sample.double(), v])
        if self.keys.numel() > self.max_samples:
            keep = self.keys.topk(self.max_samples, largest=False).indices
            self.keys, self.sample = self.keys[keep], self.sample[keep]


def _saturated(v: Tensor, kind: str) -> Tensor:
    if kind == "tanh":
        return v.abs() > 0.99
    if kind == "sigmoid":
        return (v < 0.01) | (v > 0.99)
    return torch.zeros_like(v, dtype=torch.bool)  # indicators have no saturation


class GateRecorder:
    """Collects gate values per layer and gate kind over an evaluation set (model.md §4).

    Gate modules report through ``FusionContext``: ``add("layer{l}/{kind}", values, act)``
    for per-pair values (act = tanh | sigmoid | indicator), ``set_values(name, layer, list)``
    for per-layer parameters (decay, temperature). Memory is bounded: moments and the
    histogram are streamed; quantiles come from a uniform sample of ``max_samples`` values.
    """

    def __init__(self, bins: int = 20, max_samples: int = 100_000, seed: int = 0) -> None:
        self.bins, self.max_samples = bins, max_samples
        self.gen = torch.Generator().manual_seed(seed)
        self.streams: dict[str, _Stream] = {}
        self.values: dict[str, dict[int, list[float]]] = {}

    def add(self, name: str, values: Tensor, kind: str) -> None:
        """Add values of gate ``name`` (e.g. "layer0/attn") of activation ``kind``."""
        st = self.streams.get(name)
        if st is None:
            st = self.streams[name] = _Stream(kind, self.bins, self.max_samples, self.gen)
        st.add(values)

    def set_values(self, name: str, layer: int, values: list[float]) -> None:
        """Set a per-layer parameter value (the latest call wins: parameters are constant)."""
        self.values.setdefault(name, {})[layer] = list(values)


def _layer_key(name: str) -> tuple[int, str]:
    head, _, kind = name.partition("/")
    return (int(head[5:]) if head.startswith("layer") and head[5:].isdigit() else 10**6, kind)


def gate_statistics(recorder: GateRecorder, saturation_warn: float = SATURATION_WARN) -> dict:
    """JSON-able statistics of a ``GateRecorder`` (format: docs/ARCHITECTURE.md).

    ``{"layer0/attn": {mean, std, saturation, hist, edges, quantiles (21: 0%, 5%, ..., 100%),
    kind, count}, ..., "decay": [per layer], "temperature": [per layer: list per head],
    "routing": [mean routing weight per layer], "routing_skipped": [fraction per layer],
    "warnings": [...]}``. A gate whose saturated fraction exceeds ``saturation_warn`` gets a
    "gate saturation" warning.
    """
    out: dict[str, Any] = {}
    warnings: list[str] = []
    routing: dict[int, float] = {}
    skipped: dict[int, float] = {}
    qs = torch.linspace(0, 1, 21, dtype=torch.float64)
    for name in sorted(recorder.streams, key=_layer_key):
        st = recorder.streams[name]
        if st.n == 0:
            continue
        mean = st.sum / st.n
        std = math.sqrt(max(st.sumsq / st.n - mean * mean, 0.0))
        sat = st.saturated / st.n
        out[name] = {
            "mean": mean, "std": std, "saturation": sat, "kind": st.kind, "count": st.n,
            "hist": [int(c) for c in st.hist.round()],
            "edges": [round(float(e), 6) for e in st.edges],
            "quantiles": [float(q) for q in torch.quantile(st.sample, qs)],
        }
        layer, kind = _layer_key(name)
        if kind == "routing":
            routing[layer] = mean
        elif kind == "routing_skip":
            skipped[layer] = mean
        if st.kind != "indicator" and sat > saturation_warn:
            rule = "|g| > 0.99" if st.kind == "tanh" else "g < 0.01 or g > 0.99"
            warnings.append(f"gate saturation: {name} has {sat:.0%} of {st.n} values saturated "
                            f"({rule})")
    for key in ("decay", "temperature"):
        vals = recorder.values.get(key, {})
        if vals:
            per_layer = [vals[i] for i in sorted(vals)]
            out[key] = ([v[0] if len(v) == 1 else v for v in per_layer] if key == "decay"
                        else per_layer)
    if routing:
        out["routing"] = [routing[i] for i in sorted(routing)]
    if skipped:
        out["routing_skipped"] = [skipped[i] for i in sorted(skipped)]
    out["warnings"] = warnings
    return out

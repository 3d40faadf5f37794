"""Cost model: parameters, FLOPs to index a clip and to answer a query, latency.

Costs are known before any training: they come from a model built from the config
with random weights, run on a few tiny inputs under a FLOP-counting dispatch mode that
uses ``torch.utils.flop_counter``'s formulas (``_FlopCount``: the counts of torch's
``FlopCounterMode``, at under half its cost).

- ``index_gflops``: text-independent work per clip (projections, resampler, and for
  text-agnostic configs the whole fusion), done once when a clip enters the index.
- ``query_gflops``: work that depends on one new text, to rank a gallery of G clips:
  text encoding plus the pair scoring. Text-agnostic configs pay G similarity
  computations; text-conditioned ones G fused passes, or with ``rerank_k = k`` a cheap
  text-agnostic first stage over G plus k fused passes.

Pair work is linear in the number of pairs, so it is measured at two small pair counts
and extrapolated (exactly) to G. FLOPs count a multiply-add as 2 and, like torch's
counter, only matrix products and convolutions (elementwise work, softmax and norms are
not counted; they are small next to the products here).

``FlopCounterMode`` has no formula for the CPU flash-attention kernel that
``scaled_dot_product_attention`` dispatches to here, and would count it as 0; this module
registers one (the same count torch uses for the CUDA kernels).
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.utils.flop_counter as _fc
from torch.utils._python_dispatch import TorchDispatchMode

from nas.config import COST_GALLERY, FusionConfig
from nas.data import DataShapes, fit_to_data

__all__ = ["DEFAULT_SHAPES", "FlopProfile", "count_flops", "estimate_costs", "flop_profile",
           "measure_latency_ms", "random_inputs"]


# ----------------------------------------------------------------------------------
# FLOP formulas for the CPU attention kernels
# ----------------------------------------------------------------------------------

def _register_cpu_sdpa_formulas() -> None:
    """Give the CPU SDPA kernels the same FLOP formula torch uses for the CUDA ones.

    On CPU, ``F.scaled_dot_product_attention`` dispatches to
    ``aten._scaled_dot_product_flash_attention_for_cpu`` (and its ``_backward``), which
    ``FlopCounterMode`` does not know. Idempotent: registering twice raises in torch.
    """
    aten = torch.ops.aten

    def fwd(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return _fc.sdpa_flop_count(query_shape, key_shape, value_shape)

    def bwd(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
            **kwargs) -> int:
        return _fc.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)

    for name, formula in (("_scaled_dot_product_flash_attention_for_cpu", fwd),
                          ("_scaled_dot_product_flash_attention_for_cpu_backward", bwd)):
        op = getattr(aten, name, None)
        if op is not None and op not in _fc.flop_registry:
            _fc.register_flop_formula(op)(formula)


_register_cpu_sdpa_formulas()


class _FlopCount(TorchDispatchMode):
    """Matrix-product FLOPs, counted with torch's own formulas (``flop_registry`` of
    ``torch.utils.flop_counter``, the CPU attention kernels' included): the numbers
    ``FlopCounterMode`` gives, at a fraction of its cost.

    ``FlopCounterMode`` runs every dispatched op through a module tracker and a
    dynamo-disabling wrapper (about 0.27 ms an op on the 2-core machine, 13,500 ops for
    ten cost estimates of the default space: 3.6 s), and its first use imports dynamo
    (about 2 s). The cost model needs only the total and the total inside the fusion
    blocks (``scope``: modules whose forward counts into ``scoped``, by hooks). Ops it
    sees are aten ops after autograd and composite decomposition, the same ones
    ``FlopCounterMode`` counts; ``tests/train/test_cost.py`` checks the totals agree.
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # No dynamo-disabling wrapper around __torch_dispatch__ (torch's own opt-out):
        # nothing here is ever compiled, and the wrapper imports dynamo on first use.
        return False

    def __init__(self, scope: Sequence[torch.nn.Module] = ()) -> None:
        super().__init__()
        self.total = self.scoped = 0
        self._depth = 0
        self._scope = list(scope)
        self._hooks: list[Any] = []

    def __enter__(self) -> "_FlopCount":
        for m in self._scope:
            self._hooks += [m.register_forward_pre_hook(self._in),
                            m.register_forward_hook(self._out)]
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        super().__exit__(*exc)

    def _in(self, *_: Any) -> None:
        self._depth += 1

    def _out(self, *_: Any) -> None:
        self._depth -= 1

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None
                           ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = _fc.flop_registry.get(func._overloadpacket)
        if formula is not None:
            n = int(formula(*args, **kwargs, out_val=out))
            self.total += n
            if self._depth:
                self.scoped += n
        return out


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs (multiply-add = 2) of running ``fn()`` once, attention included."""
    return _counted(fn)[0]


def _counted(fn: Callable[[], Any]) -> tuple[int, Any]:
    """(FLOPs, result) of running ``fn()`` once under the counter."""
    with _FlopCount() as counter:
        out = fn()
    return counter.total, out


# ----------------------------------------------------------------------------------
# the cost model
# ----------------------------------------------------------------------------------

# Shapes used when none are given: the config's frames and MSR-VTT-like token counts
# (the `msrvtt` synthetic preset: 128 audio tokens, 32 text tokens).
DEFAULT_SHAPES = {"audio_tokens": 128, "text_tokens": 32}
_SMALL, _LARGE = 2, 4  # pair counts measured; FLOPs are affine in the count


@dataclass(frozen=True)
class FlopProfile:
    """FLOPs of the model's pieces, per unit (affine fits ``a + b * n`` where it matters)."""

    params: int
    index_per_clip: float  # encode_clips, per clip
    text: float  # encode_texts of one text
    pair_fixed: float  # scoring n clips against one text: pair_fixed + pair_per_clip * n
    pair_per_clip: float
    first_fixed: float  # first stage (agnostic score) over n clips: first_fixed + first_per_clip*n
    first_per_clip: float
    layer_per_pair: float  # mean fusion-block FLOPs per fused pair and layer
    text_conditioned: bool
    rerank_k: int

    def query_flops(self, gallery: int) -> float:
        """FLOPs to rank ``gallery`` clips for one new text (query-dependent work only)."""
        k = self.fused_pairs(gallery)
        total = self.text + self.pair_fixed + self.pair_per_clip * k
        if self.text_conditioned and 0 < self.rerank_k < gallery:
            total += self.first_fixed + self.first_per_clip * gallery
        return total

    def fused_pairs(self, gallery: int) -> int:
        """Clips scored with the (possibly text-conditioned) full similarity."""
        if self.text_conditioned and self.rerank_k > 0:
            return min(self.rerank_k, gallery)
        return gallery


def _shapes_of(cfg: FusionConfig, shapes: Any) -> DataShapes:
    # a plain, hashable DataShapes (the key of the profile cache) from any shapes-like object
    if shapes is None:
        return DataShapes(cfg.video_dim, cfg.audio_dim, cfg.text_dim, cfg.max_frames,
                       DEFAULT_SHAPES["audio_tokens"], DEFAULT_SHAPES["text_tokens"])
    return DataShapes(int(shapes.video_dim), int(shapes.audio_dim), int(shapes.text_dim),
                   int(shapes.frames), int(shapes.audio_tokens), int(shapes.text_tokens))


def random_inputs(s: DataShapes, n_clips: int, n_texts: int, device: Any = "cpu",
                  seed: int = 0) -> tuple[Any, Any]:
    """A ClipBatch and a TextBatch of random features, every position valid."""
    from nas.batch import ClipBatch, TextBatch

    g = torch.Generator().manual_seed(seed)
    clips = ClipBatch(
        video=torch.randn(n_clips, s.frames, s.video_dim, generator=g),
        video_mask=torch.ones(n_clips, s.frames, dtype=torch.bool),
        audio=torch.randn(n_clips, s.audio_tokens, s.audio_dim, generator=g),
        audio_mask=torch.ones(n_clips, s.audio_tokens, dtype=torch.bool),
        has_audio=torch.ones(n_clips, dtype=torch.bool))
    texts = TextBatch(text=torch.randn(n_texts, s.text_tokens, s.text_dim, generator=g),
                      text_mask=torch.ones(n_texts, s.text_tokens, dtype=torch.bool))
    return clips.to(device), texts.to(device)


def _score_one_text(model: Any, enc: Any, tenc: Any, clip_idx: torch.Tensor) -> torch.Tensor:
    """Scores of clips ``clip_idx`` for text 0 (the full, possibly fused, similarity)."""
    text_idx = torch.zeros_like(clip_idx)
    return model.score_pairs(enc, tenc, clip_idx, text_idx)


@functools.lru_cache(maxsize=256)
def _profile(cfg: FusionConfig, s: DataShapes) -> FlopProfile:
    from nas.model import build_model
    from nas.model.block import FusionBlock

    torch.manual_seed(0)  # costs must not depend on the caller's RNG state...
    model = build_model(cfg).eval()  # ...nor on trained weights: random init is enough
    clips, texts = random_inputs(s, _LARGE, 1)
    blocks = [m for m in model.modules() if isinstance(m, FusionBlock)]
    # Every counted pass costs mostly Python dispatch per op (the tensors
    # are tiny), and the search driver pays for it once per new configuration before the
    # trial starts: so each pass runs once (the counted encodings are reused) and the
    # first-stage passes run only for the configs whose query cost includes them.
    with torch.no_grad():
        index_total, enc = _counted(lambda: model.encode_clips(clips))
        index = index_total / _LARGE
        text, tenc = _counted(lambda: model.encode_texts(texts))

        def pairs(n: int) -> tuple[int, int]:
            with _FlopCount(scope=blocks) as c:
                if cfg.text_conditioned:  # n fused passes
                    _score_one_text(model, enc, tenc, torch.arange(n))
                else:  # what an index does: one text against n pre-fused clips, densely
                    model.dense_scores(_sub(enc, n), tenc)
            return c.total, c.scoped

        (p_small, blk_small), (p_large, _) = pairs(_SMALL), pairs(_LARGE)
        f_small = f_large = 0
        if cfg.text_conditioned and cfg.rerank_k > 0:  # a reranking first stage is paid
            f_small = count_flops(lambda: model.agnostic_scores(_sub(enc, _SMALL), tenc))
            f_large = count_flops(lambda: model.agnostic_scores(enc, tenc))
    per_pair = (p_large - p_small) / (_LARGE - _SMALL)
    per_first = (f_large - f_small) / (_LARGE - _SMALL)
    layer = blk_small / _SMALL / cfg.layers if cfg.text_conditioned else 0.0
    return FlopProfile(
        params=sum(p.numel() for p in model.parameters()),
        index_per_clip=index, text=float(text),
        pair_fixed=p_small - per_pair * _SMALL, pair_per_clip=per_pair,
        first_fixed=f_small - per_first * _SMALL, first_per_clip=per_first,
        layer_per_pair=layer, text_conditioned=cfg.text_conditioned, rerank_k=cfg.rerank_k)


def _sub(enc: Any, n: int) -> Any:
    """The first ``n`` clips of a ClipEncoding."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(enc):
        v = getattr(enc, f.name)
        if v is None:
            out[f.name] = None
        elif f.name == "kv":
            out[f.name] = [{k: (a[:n], b[:n]) for k, (a, b) in layer.items()} for layer in v]
        else:
            out[f.name] = v[:n]
    return type(enc)(**out)


def flop_profile(cfg: FusionConfig, shapes: Any = None) -> FlopProfile:
    """The (cached) FLOP profile of ``cfg`` at ``shapes`` (dims fitted to the shapes)."""
    s = _shapes_of(cfg, shapes)
    return _profile(fit_to_data(cfg, s)[0], s)


def estimate_costs(cfg: FusionConfig, shapes: Any = None, gallery: int = COST_GALLERY,
                   measure_latency: bool = False,
                   skip_fraction: Sequence[float] | None = None) -> dict[str, float]:
    """Costs of ``cfg`` before any training (random weights; pure and cached).

    Returns ``params``; ``index_gflops`` (per clip); ``query_gflops`` (one new text against
    ``gallery`` clips, query-dependent work only); its parts ``text_gflops``,
    ``pair_gflops`` (one scored clip), ``first_stage_gflops`` (the reranking first stage
    over the gallery, text-conditioned configs with ``rerank_k``), ``fused_pairs``;
    ``latency_ms`` (median per query at ``gallery`` on CPU) when ``measure_latency``.

    Routing (variant 7) with ``routing_skip_threshold > 0``: the model zeroes the weight
    of a layer below the threshold, so an inference engine may skip that layer for that
    pair. ``query_gflops_skipped`` is the work it saves at the per-layer skip fractions
    ``skip_fraction`` (e.g. measured on the validation set after training; 0 when not
    given), and ``query_gflops_routed`` = ``query_gflops - query_gflops_skipped``.
    """
    if gallery < 1:
        raise ValueError(f"gallery must be >= 1, got {gallery}")
    prof = flop_profile(cfg, shapes)
    k = prof.fused_pairs(gallery)
    first = (prof.first_fixed + prof.first_per_clip * gallery
             if prof.text_conditioned and 0 < prof.rerank_k < gallery else 0.0)
    out: dict[str, float] = {
        "params": float(prof.params),
        "index_gflops": prof.index_per_clip / 1e9,
        "query_gflops": prof.query_flops(gallery) / 1e9,
        "text_gflops": prof.text / 1e9,
        "pair_gflops": prof.pair_per_clip / 1e9,
        "first_stage_gflops": first / 1e9,
        "fused_pairs": float(k if prof.text_conditioned else 0),
        "gallery": float(gallery),
    }
    if cfg.routing and cfg.routing_skip_threshold > 0:
        fr = list(skip_fraction) if skip_fraction is not None else [0.0] * cfg.layers
        skipped = prof.layer_per_pair * k * sum(fr)
        out["query_gflops_skipped"] = skipped / 1e9
        out["query_gflops_routed"] = (prof.query_flops(gallery) - skipped) / 1e9
    if measure_latency:
        from nas.model import build_model

        s = _shapes_of(cfg, shapes)
        torch.manual_seed(0)
        fitted, _ = fit_to_data(cfg, s)
        model = build_model(fitted).eval()
        out["latency_ms"] = measure_latency_ms(model, fitted, shapes, gallery)
    return out


@torch.no_grad()
def measure_latency_ms(model: Any, cfg: FusionConfig, shapes: Any = None,
                       gallery: int = COST_GALLERY,
                       device: Any = None, repeats: int = 5, chunk: int = 4096,
                       budget_s: float = 10.0) -> float:
    """Median wall time (ms) to answer one new text against ``gallery`` indexed clips.

    The gallery is encoded once beforehand (the index); each timed query encodes the
    text and scores it: dense similarity (text-agnostic), or the fused passes in chunks
    of ``chunk`` pairs, after the first stage when ``rerank_k`` is set. One warm-up run;
    fewer repeats when a query is slow (``budget_s`` caps the total).
    """
    s = _shapes_of(cfg, shapes)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        clips, texts = random_inputs(s, gallery, 1, device=device, seed=1)
        enc = model.encode_clips(clips)
        del clips

        def query() -> None:
            tenc = model.encode_texts(texts)
            if not cfg.text_conditioned:
                model.dense_scores(enc, tenc)
            else:
                if 0 < cfg.rerank_k < gallery:
                    first = model.agnostic_scores(enc, tenc)[0]
                    idx = first.topk(cfg.rerank_k).indices
                else:
                    idx = torch.arange(gallery, device=device)
                for j in range(0, len(idx), chunk):
                    _score_one_text(model, enc, tenc, idx[j:j + chunk])
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        times: list[float] = []
        t_start = time.perf_counter()
        query()  # warm-up
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            query()
            times.append(time.perf_counter() - t0)
            if time.perf_counter() - t_start > budget_s:
                break
        return 1000.0 * statistics.median(times)
    finally:
        model.train(was_training)

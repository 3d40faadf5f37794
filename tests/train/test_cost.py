"""Cost model: linear in the gallery, reduced by reranking, cheap for text-agnostic configs."""

from __future__ import annotations

import pytest
import torch

from nas.config import FusionConfig
from nas.cost import count_flops, estimate_costs, flop_profile, random_inputs
from nas.data import DataShapes

SHAPES = DataShapes(video_dim=64, audio_dim=48, text_dim=40, frames=8, audio_tokens=16,
                    text_tokens=4)


def test_query_gflops_of_text_conditioned_config_is_linear_in_gallery(tiny_kwargs) -> None:
    cfg = FusionConfig(**tiny_kwargs)
    assert cfg.text_conditioned
    q = {g: estimate_costs(cfg, SHAPES, gallery=g)["query_gflops"] for g in (10, 100, 1000)}
    slope = (q[1000] - q[100]) / 900
    assert slope > 0
    assert q[100] - q[10] == pytest.approx(90 * slope, rel=1e-9)
    # nearly all of it is the G fused passes: the text side is a small intercept
    assert q[1000] == pytest.approx(1000 * slope, rel=0.01)


def test_pair_cost_matches_a_direct_count_of_g_fused_passes(tiny_kwargs) -> None:
    """The extrapolation from 2 and 4 pairs equals counting a 12-pair batch directly."""
    from nas.model import build_model

    cfg = FusionConfig(**tiny_kwargs).replace(video_dim=64, audio_dim=48, text_dim=40, max_frames=8)
    prof = flop_profile(cfg, SHAPES)
    model = build_model(cfg).eval()
    clips, texts = random_inputs(SHAPES, 12, 1)
    with torch.no_grad():
        enc, tenc = model.encode_clips(clips), model.encode_texts(texts)
        direct = count_flops(lambda: model.score_pairs(enc, tenc, torch.arange(12),
                                                       torch.zeros(12, dtype=torch.long)))
        text = count_flops(lambda: model.encode_texts(texts))
    assert prof.query_flops(12) == pytest.approx(direct + text, rel=1e-12)


def test_rerank_k_reduces_query_cost(tiny_kwargs) -> None:
    exact = estimate_costs(FusionConfig(**tiny_kwargs), SHAPES)
    rerank = estimate_costs(FusionConfig(**tiny_kwargs, rerank_k=50), SHAPES)
    assert rerank["fused_pairs"] == 50 and exact["fused_pairs"] == 1000
    assert rerank["first_stage_gflops"] > 0 and exact["first_stage_gflops"] == 0
    # 50 fused passes + a cheap first stage over 1000 clips: about 20x less
    assert 10 < exact["query_gflops"] / rerank["query_gflops"] < 20
    assert rerank["index_gflops"] == exact["index_gflops"]


def test_text_agnostic_config_costs_orders_of_magnitude_less(tiny_kwargs) -> None:
    cond = estimate_costs(FusionConfig(**tiny_kwargs), SHAPES)
    agn_cfg = FusionConfig(**tiny_kwargs, gate_inputs="va", query_fusion="none")
    assert not agn_cfg.text_conditioned
    agn = estimate_costs(agn_cfg, SHAPES)
    assert cond["query_gflops"] / agn["query_gflops"] > 100
    # the fusion moved to the index side: text-agnostic clips cost more to index
    assert agn["index_gflops"] > cond["index_gflops"]
    # its query is the text encoding plus G dot products over F frames (+ global)
    d, f = agn_cfg.width, SHAPES.frames
    assert agn["pair_gflops"] * 1e9 == pytest.approx(2 * d * (f + 1), rel=1e-9)


def test_costs_are_pure_cached_and_dims_follow_the_shapes(tiny_kwargs) -> None:
    cfg = FusionConfig(**tiny_kwargs)  # dims 512/768/512: fitted to SHAPES
    torch.manual_seed(123)
    a = estimate_costs(cfg, SHAPES)
    torch.manual_seed(456)
    b = estimate_costs(cfg, SHAPES)
    assert a == b and flop_profile(cfg, SHAPES) is flop_profile(cfg, SHAPES)
    wide = estimate_costs(cfg, None)  # default: the config's dims and MSR-VTT-like tokens
    assert wide["params"] > a["params"]


def test_routing_skip_reports_saved_cost(tiny_kwargs) -> None:
    cfg = FusionConfig(**tiny_kwargs, routing=True, routing_skip_threshold=0.5)
    c = estimate_costs(cfg, SHAPES, skip_fraction=[0.5, 0.0])
    assert 0 < c["query_gflops_skipped"] < c["query_gflops"] / 2
    assert c["query_gflops_routed"] == pytest.approx(c["query_gflops"] - c["query_gflops_skipped"])
    assert estimate_costs(cfg, SHAPES)["query_gflops_skipped"] == 0.0


def test_latency_is_measured_when_asked(tiny_kwargs) -> None:
    c = estimate_costs(FusionConfig(**tiny_kwargs, rerank_k=20), SHAPES, gallery=100,
                       measure_latency=True)
    assert c["latency_ms"] > 0


ALL_ON = dict(query_fusion="per_head", layer_decay="learnable", attn_temperature="per_head",
              residual_gate=True, text_audio="keys_values", dual_path=True, routing=True,
              routing_skip_threshold=0.1, pooling="attention", hierarchical_gates=True,
              uncertainty_gates=True, uncertainty_samples=3, attn_reweighting=True,
              temporal_gates=True, rerank_k=3)


@pytest.mark.parametrize("variants", [{}, ALL_ON, dict(gate_inputs="va", query_fusion="none"),
                                      dict(gate_inputs="va", query_fusion="none", layers=3,
                                           pooling="attention", hierarchical_gates=True)],
                         ids=["reference", "all_on", "text_agnostic", "agnostic_variants"])
def test_the_counter_counts_what_torchs_flop_counter_counts(tiny_kwargs, variants) -> None:
    """``nas.cost``'s own counting mode (cheaper than ``FlopCounterMode``) gives the same
    totals, and the same total inside the fusion blocks, on every pass the cost model
    counts, and on a training step's backward."""
    from torch.utils.flop_counter import FlopCounterMode

    from nas.cost import _FlopCount
    from nas.model import build_model
    from nas.model.block import FusionBlock

    cfg = FusionConfig(**{**tiny_kwargs, **variants}).replace(
        video_dim=64, audio_dim=48, text_dim=40, max_frames=8)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    clips, texts = random_inputs(SHAPES, 5, 2)
    blocks = [m for m in model.modules() if isinstance(m, FusionBlock)]
    assert blocks
    with torch.no_grad():
        enc, tenc = model.encode_clips(clips), model.encode_texts(texts)
    passes = {
        "encode_clips": lambda: model.encode_clips(clips),
        "encode_texts": lambda: model.encode_texts(texts),
        "agnostic_scores": lambda: model.agnostic_scores(enc, tenc),
    }
    if cfg.text_conditioned:
        passes["score_pairs"] = lambda: model.score_pairs(
            enc, tenc, torch.arange(5), torch.tensor([0, 1, 0, 1, 0]))
    else:
        passes["dense_scores"] = lambda: model.dense_scores(enc, tenc)
    seen_blocks = 0
    for name, fn in passes.items():
        with torch.no_grad():
            with FlopCounterMode(display=False) as ref:
                fn()
            with _FlopCount(scope=blocks) as ours:
                fn()
        in_blocks = sum(ref.get_flop_counts().get("FusionBlock", {}).values())
        assert ref.get_total_flops() > 0, name
        assert (ours.total, ours.scoped) == (ref.get_total_flops(), in_blocks), name
        seen_blocks += in_blocks
    assert seen_blocks > 0  # the fusion blocks ran under the counters
    model.train()

    def step() -> None:
        model.training_loss(clips.index(slice(0, 2)), texts, torch.arange(2)).loss.backward()

    torch.manual_seed(1)
    with FlopCounterMode(display=False) as ref:
        step()
    torch.manual_seed(1)
    with _FlopCount() as ours:
        step()
    assert ours.total == ref.get_total_flops() > 0

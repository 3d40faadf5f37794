"""Scores stay in float32 under bf16 autocast (``Trainer.evaluate`` on CUDA runs under it).

bf16 keeps 8 mantissa bits: scores rounded to it collapse neighbouring clips into ties,
and ties count against the target in the retrieval metrics, so reranked and text-agnostic
configurations would be penalised on GPU only. CPU autocast to bf16 emulates it here.
"""

from __future__ import annotations

import pytest
import torch

from nas.evaluate import similarity
from nas.model import build_model

from model_helpers import make_clips, make_texts, randomize, tiny_config

CASES = {
    "text_agnostic": {"gate_inputs": "va", "query_fusion": "none"},
    "rerank": {"rerank_k": 8},
    "exact_text_conditioned": {},
}


def _distinct_per_row(S: torch.Tensor) -> float:
    return float(sum(len(torch.unique(r)) for r in S) / S.shape[0])


@pytest.mark.parametrize("name", list(CASES))
def test_scores_are_float32_under_bf16_autocast(name: str) -> None:
    cfg = tiny_config(**CASES[name])
    torch.manual_seed(0)
    model = build_model(cfg)
    randomize(model, seed=3, std=0.2)
    clips, texts = make_clips(80, cfg, seed=4), make_texts(6, cfg, seed=5)
    exact = similarity(model, texts, clips)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        S = similarity(model, texts, clips)
    assert S.dtype == torch.float32
    # no ties made by rounding: as many distinct scores per row as without autocast
    assert _distinct_per_row(S) == _distinct_per_row(exact) == 80
    # and the scores are the fp32 scores up to the bf16 inputs of the fusion
    both = torch.ones_like(S, dtype=torch.bool)
    if cfg.rerank_k:
        # the first stage reads bf16 encodings: a near-tie at the k-th place may swap one
        # clip in or out of a text's top k (a reranked clip scores far above the rest)
        # (|score| <= bound; a clip outside the top k scores below -bound - 1)
        bound = model.score_bound()
        fused, fused_exact = S >= -bound - 0.5, exact >= -bound - 0.5
        assert (fused_exact.sum(1) == cfg.rerank_k).all() and (fused.sum(1) == cfg.rerank_k).all()
        assert ((fused & fused_exact).sum(1) >= cfg.rerank_k - 1).all()
        both = fused == fused_exact
    assert torch.allclose(S[both], exact[both], atol=0.5, rtol=0.05)


def test_float64_models_keep_float64_scores() -> None:
    cfg = tiny_config(rerank_k=4)
    model = build_model(cfg).double()
    S = similarity(model, make_texts(3, cfg, dtype=torch.float64),
                   make_clips(9, cfg, dtype=torch.float64))
    assert S.dtype == torch.float64


def test_training_loss_similarity_is_float32_under_autocast() -> None:
    cfg = tiny_config(gate_inputs="va", query_fusion="none")
    model = build_model(cfg)
    clips, texts = make_clips(8, cfg), make_texts(8, cfg)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        enc, tenc = model.encode_clips(clips), model.encode_texts(texts)
        assert model.dense_scores(enc, tenc).dtype == torch.float32

"""Specific mechanics: temperature, silent-clip fallback, reranking, gate statistics."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from nas.evaluate import GateRecorder, gate_statistics, similarity
from nas.model import build_model
from nas.model.attention import MultiHeadAttention, NoTemperature, Temperature

from model_helpers import COMBOS, make_clips, make_texts, randomize, tiny_config

# ----------------------------------------------------------------------------------
# variant 2: temperature changes the attention weights
# ----------------------------------------------------------------------------------

def _plan_version_probs(attn: MultiHeadAttention, x, mem, mask, tau: float) -> torch.Tensor:
    """The plan's snippet: divides the (additive) mask by tau, not the logits."""
    q, (k, _) = attn.project_q(x), attn.project_kv(mem)
    logits = q @ k.transpose(-1, -2) / math.sqrt(attn.head_dim)
    add_mask = torch.zeros(mask.shape, dtype=logits.dtype).masked_fill(~mask, -1e9) / tau
    return (logits + add_mask[:, None, None, :]).softmax(-1)


def test_temperature_changes_attention_probabilities() -> None:
    torch.manual_seed(0)
    plain = MultiHeadAttention(16, 2, NoTemperature())
    temp = MultiHeadAttention(16, 2, Temperature(2, per_head=True))
    temp.load_state_dict(plain.state_dict(), strict=False)
    x, mem = torch.randn(3, 4, 16), torch.randn(3, 5, 16)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[0, 3:] = False
    p1 = plain.probabilities(x, mem, mask)
    torch.testing.assert_close(temp.probabilities(x, mem, mask), p1)  # tau = 1 at init
    with torch.no_grad():
        temp.temperature.theta.copy_(torch.tensor([math.log(2.0), math.log(0.5)]))
    p2 = temp.probabilities(x, mem, mask)
    assert (p2 - p1).abs().max() > 1e-3
    # tau > 1 flattens (higher entropy), tau < 1 sharpens
    ent = lambda p: -(p.clamp_min(1e-12).log() * p).sum(-1).mean()  # noqa: E731
    assert ent(p2[:, 0]) > ent(p1[:, 0]) and ent(p2[:, 1]) < ent(p1[:, 1])
    assert p2[0, :, :, 3:].abs().max() == 0  # the mask still holds
    # the attention output follows the probabilities
    assert not torch.allclose(temp(x, mem, mask), plain(x, mem, mask))
    # the plan's version would not change anything: the test above distinguishes them
    torch.testing.assert_close(_plan_version_probs(plain, x, mem, mask, 2.0), p1)


def test_temperature_is_recorded() -> None:
    cfg = tiny_config(attn_temperature="scalar", layer_decay="fixed")
    model = build_model(cfg)
    rec = GateRecorder()
    similarity(model, make_texts(2, cfg), make_clips(3, cfg), gate_records=rec)
    stats = gate_statistics(rec)
    assert stats["temperature"] == [[1.0], [1.0]]
    assert stats["decay"] == [1.0, 0.5]


# ----------------------------------------------------------------------------------
# variant 3: silent clips fall back to video only
# ----------------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [{}, {"dual_path": True, "attn_reweighting": True,
                                        "pooling": "attention", "routing": True}])
def test_residual_gate_silent_clip_ignores_audio(extra) -> None:
    cfg = tiny_config(residual_gate=True, residual_mix=0.5, **extra)
    torch.manual_seed(0)
    model = build_model(cfg).double()
    randomize(model)
    clips = make_clips(4, cfg, dtype=torch.float64)
    texts = make_texts(3, cfg, dtype=torch.float64)
    other_audio = replace(clips, audio=torch.randn_like(clips.audio))
    silent = replace(clips, has_audio=torch.zeros(4, dtype=torch.bool))
    silent_other = replace(other_audio, has_audio=torch.zeros(4, dtype=torch.bool))
    torch.testing.assert_close(similarity(model, texts, silent),
                               similarity(model, texts, silent_other), rtol=1e-12, atol=1e-10)
    audible = replace(clips, has_audio=torch.ones(4, dtype=torch.bool))
    audible_other = replace(other_audio, has_audio=torch.ones(4, dtype=torch.bool))
    change = similarity(model, texts, audible) - similarity(model, texts, audible_other)
    assert change.abs().max() > 1e-4


# ----------------------------------------------------------------------------------
# two-stage reranking
# ----------------------------------------------------------------------------------

def test_rerank_all_equals_exact_and_small_k_only_changes_the_rest() -> None:
    cfg = tiny_config(residual_mix=0.5)
    torch.manual_seed(0)
    model = build_model(cfg).double()
    randomize(model)
    clips = make_clips(12, cfg, dtype=torch.float64)
    texts = make_texts(6, cfg, dtype=torch.float64)
    exact = similarity(model, texts, clips, rerank_k=0)
    torch.testing.assert_close(similarity(model, texts, clips, rerank_k=12), exact)
    k = 4
    S = similarity(model, texts, clips, rerank_k=k, chunk_size=5)
    with torch.no_grad():
        first = model.agnostic_scores(model.encode_clips(clips), model.encode_texts(texts))
    top = first.topk(k, dim=1).indices
    in_top = torch.zeros_like(S, dtype=torch.bool).scatter_(1, top, True)
    torch.testing.assert_close(S[in_top], exact[in_top])  # top-k: exact fused scores
    assert S[~in_top].max() < S[in_top].min()  # the rest: below every reranked score
    # ... in first-stage order
    rest_s, rest_f = S.masked_fill(in_top, float("nan")), first.masked_fill(in_top, float("nan"))
    for i in range(S.shape[0]):
        m = ~in_top[i]
        assert torch.equal(rest_s[i, m].argsort(), rest_f[i, m].argsort())
    # the config's rerank_k is the default
    model.cfg = cfg.replace(rerank_k=k)
    torch.testing.assert_close(similarity(model, texts, clips), S)


# ----------------------------------------------------------------------------------
# gate statistics
# ----------------------------------------------------------------------------------

def test_gate_statistics_on_known_values() -> None:
    rec = GateRecorder(bins=4)
    rec.add("layer0/attn", torch.tensor([-1.0, -0.995, 0.0]), "tanh")
    rec.add("layer0/attn", torch.tensor([0.5, 0.995]), "tanh")  # streamed in two chunks
    rec.add("layer1/residual", torch.tensor([0.001, 0.999, 0.995, 0.5]), "sigmoid")
    rec.set_values("decay", 0, [1.0])
    rec.set_values("decay", 1, [0.5])
    st = gate_statistics(rec)
    json.dumps(st)  # JSON-able
    a = st["layer0/attn"]
    v = torch.tensor([-1.0, -0.995, 0.0, 0.5, 0.995], dtype=torch.float64)
    assert a["kind"] == "tanh" and a["count"] == 5
    assert a["mean"] == pytest.approx(float(v.mean()))
    assert a["std"] == pytest.approx(float(v.std(unbiased=False)))
    assert a["saturation"] == pytest.approx(3 / 5)
    assert a["edges"] == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert a["hist"] == [2, 0, 1, 2]
    assert len(a["quantiles"]) == 21
    assert a["quantiles"][0] == -1.0 and a["quantiles"][10] == 0.0
    assert a["quantiles"][-1] == pytest.approx(0.995)
    r = st["layer1/residual"]
    assert r["kind"] == "sigmoid" and r["saturation"] == pytest.approx(3 / 4)
    assert r["edges"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert st["decay"] == [1.0, 0.5]
    assert len(st["warnings"]) == 2 and all("gate saturation" in w for w in st["warnings"])
    assert "layer1/residual" in st["warnings"][1]


def test_gate_statistics_sample_is_bounded_and_uniform() -> None:
    rec = GateRecorder(max_samples=2000)
    for chunk in torch.linspace(-0.9, 0.9, 20000).split(1000):
        rec.add("layer0/ff", chunk, "tanh")
    st = gate_statistics(rec)["layer0/ff"]
    assert rec.streams["layer0/ff"].sample.numel() == 2000
    assert st["count"] == 20000 and st["saturation"] == 0.0
    assert st["quantiles"][10] == pytest.approx(0.0, abs=0.06)
    assert st["quantiles"][1] == pytest.approx(-0.81, abs=0.06)
    assert gate_statistics(rec)["warnings"] == []


def test_model_gate_records_cover_every_gate_kind() -> None:
    cfg = tiny_config(hierarchical_gates=True, temporal_gates=True, routing=True,
                      residual_gate=True, dual_path=True, attn_reweighting=True,
                      routing_skip_threshold=0.5)
    model = build_model(cfg)
    rec = GateRecorder()
    clips, texts = make_clips(5, cfg), make_texts(4, cfg)
    similarity(model, texts, clips, gate_records=rec)
    st = gate_statistics(rec)
    for kind in ("query", "attn", "ff", "attn_fine", "ff_fine", "residual", "path", "routing",
                 "routing_skip"):
        assert f"layer0/{kind}" in st and f"layer1/{kind}" in st, kind
    assert "layer0/reweight" in st and "layer1/reweight" not in st
    # per-frame gates: only valid frames are recorded
    assert st["layer0/attn"]["count"] == int(clips.video_mask.sum()) * len(texts)
    assert st["layer0/query"]["count"] == len(texts) * len(clips)
    assert len(st["routing"]) == 2 and len(st["routing_skipped"]) == 2


# ----------------------------------------------------------------------------------
# unpadded batches: attention without a mask gives the masked result
# ----------------------------------------------------------------------------------

@pytest.mark.parametrize("changes", [{}, {"attn_reweighting": True}, {"dual_path": True},
                                     {"pooling": "attention", "routing": True},
                                     COMBOS["agnostic_mix"]])
def test_unpadded_pairs_skip_the_mask_and_score_the_same(changes, monkeypatch) -> None:
    """With nothing padded the fusion passes no mask to attention and to the frame pooling
    (``key_padding``: a plain mean, softmax); the scores and the training loss equal those
    with the all-true mask applied, and the mask path is still taken when one frame or
    token is padded."""
    import nas.model.block as block

    cfg = tiny_config(**changes)
    model = build_model(cfg)
    randomize(model)
    clips = make_clips(6, cfg, seed=3)
    clips = replace(clips, video_mask=torch.ones_like(clips.video_mask),
                    audio_mask=torch.ones_like(clips.audio_mask))
    texts = make_texts(5, cfg, seed=4)
    seen = []
    orig = block.key_padding
    monkeypatch.setattr(block, "key_padding", lambda m: seen.append(orig(m)) or orig(m))
    fast = similarity(model, texts, clips)
    assert seen and all(s is None for s in seen)
    n = min(len(texts.text), len(clips.video))
    loss = model.training_loss(clips.index(slice(0, n)), texts.index(slice(0, n)),
                               torch.arange(n)).loss
    monkeypatch.setattr(block, "key_padding", lambda m: m)  # always the mask
    torch.testing.assert_close(similarity(model, texts, clips), fast, rtol=1e-5, atol=1e-5)
    masked = model.training_loss(clips.index(slice(0, n)), texts.index(slice(0, n)),
                                 torch.arange(n)).loss
    torch.testing.assert_close(masked, loss, rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(block, "key_padding", lambda m: seen.append(orig(m)) or orig(m))
    seen.clear()
    padded = make_clips(6, cfg, seed=3)
    similarity(model, texts, padded)
    assert any(s is not None for s in seen)

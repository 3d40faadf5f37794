"""Forward and backward over every variant alone and in combinations (tiny sizes)."""

from __future__ import annotations

import pytest
import torch

from nas.errors import UserError
from nas.evaluate import similarity
from nas.model import FusionRetrievalModel, build_model

from model_helpers import COMBOS, VARIANTS, make_clips, make_texts, tiny_config

# captions per clip: clips 0 and 1 have two captions (multi-positive, variant 8 positives)
TEXT_CLIP = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1])


def _run(cfg, negatives: int = 0):
    torch.manual_seed(0)
    model = build_model(cfg)
    clips, texts = make_clips(6, cfg), make_texts(len(TEXT_CLIP), cfg)
    out = model.training_loss(clips, texts, TEXT_CLIP, negatives=negatives)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert all(torch.isfinite(torch.tensor(v)) for v in out.parts.values())
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name
    return model, out, clips, texts


def _own_grad(model: torch.nn.Module, cls_name: str) -> float:
    mods = [m for m in model.modules() if type(m).__name__ == cls_name]
    assert mods, f"no {cls_name} module was built"
    if cls_name == "FrameInput":  # per-frame gates: the MLPs of the heads that read frames
        mods = [h.coarse for h in model.modules()
                if type(h).__name__ == "GateHead" and type(h.inputs).__name__ == "FrameInput"]
    return max(float(p.grad.abs().max()) for m in mods for p in m.parameters()
               if p.grad is not None)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_alone(name: str) -> None:
    changes, cls_name = VARIANTS[name]
    cfg = tiny_config(**changes)
    model, out, clips, texts = _run(cfg)
    if cls_name is not None:
        assert _own_grad(model, cls_name) > 0, f"{name}: no gradient reaches {cls_name}"
    # evaluation path: shapes and finiteness
    S = similarity(model, texts, clips, chunk_size=5)
    assert S.shape == (len(texts), len(clips)) and torch.isfinite(S).all()


@pytest.mark.parametrize("name", list(COMBOS))
def test_combinations(name: str) -> None:
    cfg = tiny_config(**COMBOS[name])
    model, out, clips, texts = _run(cfg)
    for _, cls_name in VARIANTS.values():
        if cls_name is not None and any(type(m).__name__ == cls_name for m in model.modules()):
            assert _own_grad(model, cls_name) > 0, cls_name
    S = similarity(model, texts, clips, chunk_size=7)
    assert S.shape == (len(texts), len(clips)) and torch.isfinite(S).all()


@pytest.mark.parametrize("name", ["base", "all_on"])
def test_sampled_negatives(name: str) -> None:
    cfg = tiny_config(**COMBOS.get(name, {}))
    _, out, _, _ = _run(cfg, negatives=2)
    assert out.parts["infonce"] > 0


def test_variant_losses_are_reported() -> None:
    cfg = tiny_config(**COMBOS["all_on"])
    _, out, _, _ = _run(cfg)
    for part in ("infonce", "gate_contrastive", "uncertainty_kl", "temporal_smooth",
                 "routing_sparsity"):
        assert part in out.parts and out.parts[part] > 0, part
    assert "layer0/attn" in out.gates and "layer1/routing" in out.gates


def test_gate_contrastive_gradient_reaches_gates() -> None:
    # variant 8 has no parameters of its own: its loss must move the gate heads. Same
    # weights with and without it: the gate MLP gradients differ by the loss's gradient.
    torch.manual_seed(0)
    on = build_model(tiny_config(gate_contrastive_weight=0.1))
    off = build_model(tiny_config())
    off.load_state_dict(on.state_dict())
    clips, texts = make_clips(6, on.cfg), make_texts(len(TEXT_CLIP), on.cfg)
    grads = []
    for model in (on, off):
        out = model.training_loss(clips, texts, TEXT_CLIP)
        out.loss.backward()
        grads.append(model.blocks[0].attn_gate.coarse.mlp[0].weight.grad.clone())
    assert out.parts.get("gate_contrastive") is None
    assert (grads[0] - grads[1]).abs().max() > 0


def test_fixed_decay_changes_output() -> None:
    # 1A has no parameters: check it scales the gates (same weights, different scores).
    torch.manual_seed(0)
    base = build_model(tiny_config())
    dec = build_model(tiny_config(layer_decay="fixed"))
    dec.load_state_dict(base.state_dict())
    clips, texts = make_clips(4, base.cfg), make_texts(3, base.cfg)
    assert not torch.allclose(similarity(base, texts, clips), similarity(dec, texts, clips))


def test_variants_chosen_at_construction() -> None:
    base = build_model(tiny_config())
    names = {type(m).__name__ for m in base.modules()}
    assert not names & {"Temperature", "FiLM", "DualPath", "LayerRouter", "FineGate",
                        "UncertainGate", "KeyReweighting", "AttentionPool", "ReliabilityGate"}
    assert isinstance(base, FusionRetrievalModel)


def test_input_dimension_errors_name_the_field() -> None:
    cfg = tiny_config()
    model = build_model(cfg)
    clips = make_clips(2, tiny_config(video_dim=7))
    with pytest.raises(UserError, match="video_dim"):
        model.encode_clips(clips)
    with pytest.raises(UserError, match="max_frames"):
        model.encode_clips(make_clips(2, cfg, frames=9))


@pytest.mark.parametrize("values", [False, True])
def test_film_through_queries_and_output_equals_modulated_keys_and_values(values: bool) -> None:
    """Variant 5 is defined on the keys (and values): k' = k (1 + gamma) + beta. The fusion
    applies it to the queries and to the attention output instead, so the clip's keys and
    values are shared by every text; the result is the literal definition's."""
    from nas.model.attention import FiLM, MultiHeadAttention

    g = torch.Generator().manual_seed(0)
    attn, film = MultiHeadAttention(16, 4), FiLM(16, 4, values=values)
    with torch.no_grad():
        for p in list(attn.parameters()) + list(film.parameters()):
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5)
    attn, film = attn.double(), film.double()
    x = torch.randn(5, 3, 16, generator=g).double()
    mem = torch.randn(5, 7, 16, generator=g).double()
    t_hat = torch.randn(5, 16, generator=g).double()
    mask = torch.arange(7)[None] < torch.tensor([7, 4, 1, 6, 2])[:, None]
    q, (k, v) = attn.project_q(x), attn.project_kv(mem)
    literal = attn.attend(q, *film.modulate(k, v, t_hat), mask)
    fused = attn.attend(film.queries(q, t_hat), k, v, mask, None, film.values(t_hat))
    torch.testing.assert_close(fused, literal, rtol=1e-10, atol=1e-12)
    plain = attn.attend(q, k, v, mask)
    assert (literal - plain).abs().max() > 1e-2  # the modulation does change the output


def test_gate_contrastive_reads_each_texts_own_pair() -> None:
    # variant 8 on the B x B grid: the gate rows it contrasts are those of the (text, own
    # clip) pairs, the same as fusing only the aligned pairs (the grid's pair order is the
    # grid's business)
    torch.manual_seed(0)
    cfg = tiny_config(gate_contrastive_weight=1.0, hierarchical_gates=True)
    model = build_model(cfg)
    clips, texts = make_clips(6, cfg), make_texts(len(TEXT_CLIP), cfg)
    out = model.training_loss(clips, texts, TEXT_CLIP)
    from nas.model.context import FusionContext

    enc, tenc = model.encode_clips(clips), model.encode_texts(texts)
    ctx = FusionContext(collect_gates=True)
    model._score_conditioned(enc, tenc, TEXT_CLIP, torch.arange(len(TEXT_CLIP)), ctx)
    labels = TEXT_CLIP if clips.labels is None else clips.labels[TEXT_CLIP]
    want = model.gate_contrast(ctx.gate_matrix(), labels)
    assert want is not None
    assert out.parts["gate_contrastive"] == pytest.approx(float(want.detach()), rel=1e-5)

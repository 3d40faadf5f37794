"""CPU inference on packed weights (``nas.model.packed``): the same scores as the plain
kernels, used only where it applies, and every module put back afterwards."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nas.model.attention as attention
import nas.model.packed as packed
from nas.evaluate import similarity
from nas.model import build_model
from nas.model.packed import packed_inference, packing_applies

from model_helpers import (
    COMBOS,
    make_clips,
    make_texts,
    randomize,
    text_conditioned_configs,
    tiny_config,
)

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(),
                                reason="this torch has no oneDNN")

CONFIGS = {**text_conditioned_configs(),
           "text_agnostic": tiny_config(**COMBOS["agnostic_mix"])}


def _swapped(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if "forward" in m.__dict__]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_packed_scores_equal_plain_scores(name: str, monkeypatch) -> None:
    cfg = CONFIGS[name]
    torch.manual_seed(0)
    model = build_model(cfg)
    randomize(model, seed=1, std=0.2)  # FiLM, gates etc. start at zero: make them act
    clips, texts = make_clips(9, cfg, seed=2), make_texts(7, cfg, seed=3)
    monkeypatch.setenv("NAS_PACKED_LINEAR", "0")
    plain = similarity(model, texts, clips, chunk_size=16)
    monkeypatch.setenv("NAS_PACKED_LINEAR", "1")
    monkeypatch.setattr(packed, "MIN_ROWS", 0)  # every product through oneDNN, however small
    monkeypatch.setattr(packed, "KEY_MULTIPLE", 5)  # pad these short keys (4 -> 5, 5 -> 5)
    calls: list[int] = []
    call = packed._PackedLinear.__call__
    monkeypatch.setattr(packed._PackedLinear, "__call__",
                        lambda self, x: calls.append(1) or call(self, x))
    pads: list[int] = []
    pad = attention._pad_keys
    monkeypatch.setattr(attention, "_pad_keys", lambda *a: pads.append(1) or pad(*a))
    S = similarity(model, texts, clips, chunk_size=16)
    assert calls, "the packed kernels were not used"
    assert pads, "the attention keys were not padded"
    torch.testing.assert_close(S, plain, rtol=1e-5, atol=1e-5)


def _attend_inputs(keys: int, mask: str, groups: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    c, h, n, d = 6, 2, 3, 8
    q = torch.randn(c * groups, h, n, d, generator=g)
    k, v = torch.randn(c, h, keys, d, generator=g), torch.randn(c, h, keys, d, generator=g)
    key_mask = key_bias = None
    if mask in ("bool", "both"):
        key_mask = torch.arange(keys)[None] < torch.randint(1, keys + 1, (c,), generator=g)[:, None]
    if mask in ("bias", "both"):
        key_bias = torch.randn(c * groups, keys, generator=g)
    return q, k, v, key_mask, key_bias


@pytest.mark.parametrize("keys", [1, 4, 12, 13, 16, 20, 30])
@pytest.mark.parametrize("mask", ["none", "bool", "bias", "both"])
@pytest.mark.parametrize("groups", [1, 3])
def test_padded_keys_give_the_same_attention(keys: int, mask: str, groups: int,
                                             monkeypatch) -> None:
    """Keys padded to a multiple of 16 inside ``packed_inference`` (where 4 or fewer are
    missing): the padding gets no weight, whatever mask the call has (none, padding, an
    additive bias, both) and for a grid of texts folded against each clip (``groups``)."""
    torch.manual_seed(0)
    attn = attention.MultiHeadAttention(16, 2).eval()
    q, k, v, key_mask, key_bias = _attend_inputs(keys, mask, groups)
    with torch.no_grad():
        ref = attn.attend(q, k, v, key_mask, key_bias)
        monkeypatch.setattr(packed, "MIN_ROWS", 0)
        pads: list[int] = []
        pad = attention._pad_keys
        monkeypatch.setattr(attention, "_pad_keys", lambda *a: pads.append(1) or pad(*a))
        with packed_inference(attn) as on:
            assert on
            out = attn.attend(q, k, v, key_mask, key_bias)
        assert packed.padded_keys(keys) == keys  # only inside the block
    assert bool(pads) == (keys in (12, 13, 30))  # 4 or fewer keys short of a multiple of 16
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_which_key_counts_are_padded() -> None:
    assert [packed.padded_keys(m) for m in (4, 12, 16, 28, 33)] == [4, 12, 16, 28, 33]
    with torch.no_grad(), packed_inference(nn.Linear(2, 2)) as on:
        assert on
        assert [packed.padded_keys(m) for m in (4, 6, 10, 12, 15, 16, 20, 28, 33)] == \
            [4, 6, 10, 16, 16, 16, 20, 32, 33]
    with torch.enable_grad(), packed_inference(nn.Linear(2, 2)) as on:
        assert not on and packed.padded_keys(12) == 12  # training: never


def test_padded_keys_are_masked_out() -> None:
    """``_pad_keys`` itself: the padded keys and values are zeros and masked (-inf, False)."""
    q, k, v, key_mask, key_bias = _attend_inputs(12, "both", 1)
    k2, v2, m = attention._pad_keys(k, v, None, 16)
    assert k2.shape[2] == v2.shape[2] == m.shape[-1] == 16
    assert torch.equal(k2[:, :, :12], k) and not k2[:, :, 12:].any() and not v2[:, :, 12:].any()
    assert (m[..., :12] == 0).all() and torch.isinf(m[..., 12:]).all()
    _, _, mb = attention._pad_keys(k, v, key_mask[:, None, None, :], 16)
    assert torch.equal(mb[..., :12], key_mask[:, None, None, :]) and not mb[..., 12:].any()
    bias = key_bias[:, None, None, :]
    _, _, mf = attention._pad_keys(k, v, bias, 16)
    assert torch.equal(mf[..., :12], bias) and (mf[..., 12:] == float("-inf")).all()


def test_small_inputs_keep_the_plain_kernels() -> None:
    cfg = tiny_config()
    model = build_model(cfg)
    clips, texts = make_clips(3, cfg), make_texts(2, cfg)
    with torch.no_grad():
        enc, tenc = model.encode_clips(clips), model.encode_texts(texts)
        ref = model.score_pairs(enc, tenc, torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]))
        with packed_inference(model) as on:
            assert on
            S = model.score_pairs(enc, tenc, torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]))
    assert torch.equal(S, ref)  # 15 rows < MIN_ROWS: bit for bit the plain path


def test_modules_are_put_back_even_after_an_error() -> None:
    model = build_model(tiny_config())
    with torch.no_grad():
        with packed_inference(model) as on:
            assert on
            names = _swapped(model)
            assert "blocks.0.mlp" in names and "blocks.0.cross_attn.q_proj" in names
            assert "blocks.0.mlp.0" not in names  # the MLP's layers run inside its kernel
        assert _swapped(model) == []
        with packed_inference(model):  # nested: the inner block leaves the outer's swap
            with packed_inference(model) as inner:
                assert inner
            assert "blocks.0.mlp" in _swapped(model)
        assert _swapped(model) == []
        with pytest.raises(RuntimeError, match="boom"):
            with packed_inference(model):
                raise RuntimeError("boom")
    assert _swapped(model) == []
    # and training works as before: gradients reach the weights
    cfg = model.cfg
    out = model.training_loss(make_clips(4, cfg), make_texts(4, cfg), torch.arange(4))
    out.loss.backward()
    assert model.blocks[0].mlp[0].weight.grad is not None


def test_it_applies_only_to_float32_cpu_inference(monkeypatch) -> None:
    model = build_model(tiny_config())
    assert not packing_applies(model)  # gradients are recorded
    with torch.no_grad():
        assert packing_applies(model)
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            assert not packing_applies(model)
        assert not packing_applies(build_model(tiny_config()).double())
        monkeypatch.setenv("NAS_PACKED_LINEAR", "0")
        assert not packing_applies(model)
        with packed_inference(model) as on:
            assert not on and _swapped(model) == []

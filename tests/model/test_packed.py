"""CPU inference on packed weights (``nas.model.packed``): the same scores as the plain
kernels, used only where it applies, and every module put back afterwards."""

from __future__ import annotations

import pytest
import torch
from torch import nn

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
    calls: list[int] = []
    call = packed._PackedLinear.__call__
    monkeypatch.setattr(packed._PackedLinear, "__call__",
                        lambda self, x: calls.append(1) or call(self, x))
    S = similarity(model, texts, clips, chunk_size=16)
    assert calls, "the packed kernels were not used"
    torch.testing.assert_close(S, plain, rtol=1e-5, atol=1e-5)


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

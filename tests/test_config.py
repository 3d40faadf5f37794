"""FusionConfig / TrainConfig: validation, YAML round trip, stable ids, derived properties."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from nas.config import (
    ConfigError,
    FusionConfig,
    TrainConfig,
    config_to_yaml,
    load_config_file,
    save_config_file,
)
from nas.errors import UserError


def test_defaults_are_the_reference_and_text_conditioned() -> None:
    cfg = FusionConfig()
    assert cfg.query_fusion == "scalar" and cfg.gate_inputs == "vat"
    assert cfg.text_conditioned
    assert cfg.active_components == ["query_fusion", "text_in_gates", "resampler"]


@pytest.mark.parametrize("changes, conditioned", [
    ({"query_fusion": "none", "gate_inputs": "va"}, False),
    ({"query_fusion": "none", "gate_inputs": "vat"}, True),
    ({"query_fusion": "none", "gate_inputs": "va", "text_audio": "keys"}, True),
    ({"query_fusion": "none", "gate_inputs": "va", "dual_path": True}, True),
    ({"query_fusion": "per_head", "gate_inputs": "va"}, True),
    ({"query_fusion": "none", "gate_inputs": "va", "routing": True, "pooling": "attention",
      "attn_reweighting": True, "residual_gate": True}, False),
])
def test_text_conditioned_property(changes: dict, conditioned: bool) -> None:
    assert FusionConfig(**changes).text_conditioned is conditioned


@pytest.mark.parametrize("kwargs, needle", [
    ({"width": 30, "heads": 4}, "heads"),
    ({"width": -8}, "width"),
    ({"layers": 0}, "layers"),
    ({"resampler_layers": 5}, "resampler_layers"),
    ({"residual_mix": 1.5}, "residual_mix"),
    ({"rerank_k": -1}, "rerank_k"),
    ({"logit_scale_init": 200.0}, "logit_scale_init"),
])
def test_invalid_fusion_values_name_the_field(kwargs: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        FusionConfig(**kwargs)


def test_invalid_train_values_name_the_field() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(batch_size=1)
    with pytest.raises(ConfigError, match="device"):
        TrainConfig(device="tpu")


def test_from_dict_rejects_unknown_and_wrong_types() -> None:
    with pytest.raises(ConfigError, match="unknown field.*'widht'"):
        FusionConfig.from_dict({"widht": 64})
    with pytest.raises(ConfigError, match="layer_decay.*'sometimes'"):
        FusionConfig.from_dict({"layer_decay": "sometimes"})
    with pytest.raises(ConfigError, match="residual_gate.*true/false"):
        FusionConfig.from_dict({"residual_gate": "yes please"})
    with pytest.raises(ConfigError, match="layers.*integer"):
        FusionConfig.from_dict({"layers": 2.5})
    # YAML's `off` is False: accepted for 'none' choices.
    assert FusionConfig.from_dict({"layer_decay": False}).layer_decay == "none"
    assert issubclass(ConfigError, UserError)


def test_yaml_round_trip_and_stable_id(tmp_path) -> None:
    cfg = FusionConfig(width=64, heads=4, layers=2, layer_decay="learnable", routing=True,
                       rerank_k=16, residual_mix=0.1)
    tcfg = TrainConfig(lr=3e-4, epochs=1.5, seed=7)
    path = save_config_file(tmp_path / "c.yaml", cfg, tcfg, meta={"study": "s"})
    cfg2, tcfg2 = load_config_file(path)
    assert cfg2 == cfg and tcfg2 == tcfg
    assert cfg2.fusion_id == cfg.fusion_id
    assert cfg.replace(width=128).fusion_id != cfg.fusion_id
    # The id depends on content only, not on key order in the file.
    doc = yaml.safe_load(config_to_yaml(cfg, tcfg))
    reordered = {"train": doc["train"], "fusion": dict(reversed(list(doc["fusion"].items())))}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(reordered, sort_keys=False))
    assert load_config_file(tmp_path / "r.yaml")[0].fusion_id == cfg.fusion_id
    assert len(cfg.fusion_id) == 12


def test_config_file_errors_name_the_file(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("fusion: {width: 64, heads: 4, colour: red}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*colour"):
        load_config_file(bad)
    bad.write_text("fusion: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*'fusion' must be a mapping"):
        load_config_file(bad)
    bad.write_text("fusoin: {}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*fusoin"):
        load_config_file(bad)
    bad.write_text("fusion: {width: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*not valid YAML"):
        load_config_file(bad)
    with pytest.raises(ConfigError, match="file not found"):
        load_config_file(tmp_path / "missing.yaml")


def test_without_removes_one_component() -> None:
    cfg = FusionConfig(layer_decay="fixed", residual_gate=True)
    assert "layer_decay" in cfg.active_components
    ab = cfg.without("layer_decay")
    assert ab.layer_decay == "none" and ab.residual_gate
    assert "layer_decay" not in ab.active_components
    with pytest.raises(ConfigError, match="unknown component"):
        cfg.without("warp_drive")


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path) -> None:
    save_config_file(tmp_path / "c.yaml", FusionConfig())
    assert [p.name for p in tmp_path.iterdir()] == ["c.yaml"]


def test_settings_that_cannot_act_are_canonicalised_and_compute_the_same_model() -> None:
    """One layer: 1A's fixed decay is 1 - 0/1 = 1 and variant 12 biases only a next layer.
    Such a configuration's canonical form (the search's dedupe key) is the plain one, and
    both models give the same scores from the same weights; with two layers, or the
    learnable decay, nothing is canonicalised (the settings act)."""
    import torch

    from nas.config import TrainConfig, canonical_key, config_key
    from nas.evaluate import similarity
    from nas.model import build_model

    sys.path.insert(0, str(Path(__file__).parent / "model"))
    from model_helpers import make_clips, make_texts, randomize, tiny_config

    noop = tiny_config(layers=1, layer_decay="fixed", attn_reweighting=True)
    plain = tiny_config(layers=1)
    assert noop.canonical() == plain and plain.canonical() is plain
    train = TrainConfig()
    assert canonical_key(noop, train) == config_key(plain, train) != config_key(noop, train)
    acting = [tiny_config(layers=2, layer_decay="fixed"),
              tiny_config(layers=2, attn_reweighting=True),
              tiny_config(layers=1, layer_decay="learnable")]
    assert all(c.canonical() == c for c in acting)

    clips, texts = make_clips(5, plain), make_texts(4, plain)
    a, b = build_model(noop), build_model(plain)
    randomize(b)
    a.load_state_dict(b.state_dict())  # the same parameters: nothing missing or extra
    torch.testing.assert_close(similarity(a, texts, clips), similarity(b, texts, clips),
                               rtol=0, atol=0)
    c = build_model(acting[2])  # learnable decay at one layer: 2 sigmoid(theta) acts
    c.load_state_dict(b.state_dict(), strict=False)
    with torch.no_grad():
        for name, p in c.named_parameters():
            if "decay" in name:
                p.fill_(1.0)
    assert not torch.allclose(similarity(c, texts, clips), similarity(b, texts, clips))

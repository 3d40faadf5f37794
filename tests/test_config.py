"""FusionConfig / TrainConfig: validation, YAML round trip, stable ids, derived properties."""

from __future__ import annotations

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

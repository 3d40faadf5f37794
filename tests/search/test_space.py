"""Search-space files: the shipped spaces load; each kind of error names file, dim, problem."""

from __future__ import annotations

import random
import textwrap
from pathlib import Path

import pytest

from nas.errors import SpaceError
from nas.search.space import InvalidCombination, load_space, parse_space

GOOD = """
name: t
base: {fusion: {width: 32, heads: 2}}
dimensions:
  width: {choices: [32, 64]}
  layers: {type: int, low: 1, high: 3}
  lr: {type: float, low: 1e-4, high: 3.0e-3, log: true}
  routing: {choices: [false, true]}
  routing_sparsity: {type: float, low: 0.001, high: 0.1, log: true, when: {routing: true}}
proxy: {min_budget: 0.5, max_budget: 2, eta: 2}
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "space.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def _err(tmp_path: Path, text: str) -> str:
    p = _write(tmp_path, text)
    with pytest.raises(SpaceError) as e:
        load_space(p)
    msg = str(e.value)
    assert str(p) in msg, msg  # every error names the file
    return msg


@pytest.mark.parametrize("name", ["quick", "gated_fusion"])
def test_shipped_spaces_load_and_have_no_impossible_pairs(name: str) -> None:
    s = load_space(name)
    assert s.dimensions and s.proxy.rungs()[-1] == s.proxy.max_budget
    assert s.check_pairs() == []
    assert s.reference() is not None


def test_an_unknown_space_name_lists_the_shipped_ones(tmp_path: Path, capsys,
                                                      monkeypatch) -> None:
    from nas.cli import main
    from nas.search.space import shipped_spaces

    assert list(shipped_spaces()) == ["gated_fusion", "quick"]
    monkeypatch.chdir(tmp_path)
    for argv in (["search", "--space", "doesnotexist"], ["spaces", "show", "doesnotexist"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.endswith("doesnotexist: file not found, and no shipped space of that "
                            "name (shipped: gated_fusion, quick)"), err
        assert len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # nothing written (no studies.db)


def test_gated_fusion_covers_every_variant_of_model_md() -> None:
    names = {d.name for d in load_space("gated_fusion").dimensions}
    for f in ["gate_inputs", "query_fusion", "layer_decay", "attn_temperature", "residual_gate",
              "text_audio", "dual_path", "routing", "gate_contrastive_weight", "pooling",
              "hierarchical_gates", "uncertainty_gates", "attn_reweighting", "temporal_gates",
              "width", "layers", "heads", "resampler_layers", "rerank_k", "lr"]:
        assert f in names, f


def test_suggest_respects_conditions_and_types(tmp_path: Path) -> None:
    s = load_space(_write(tmp_path, GOOD))
    assert s.dimensions[2].low == pytest.approx(1e-4)  # YAML's "1e-4" string accepted
    rng = random.Random(0)
    seen_cond = set()
    for _ in range(40):
        def pick(name, dist):
            if hasattr(dist, "choices"):
                return rng.choice(dist.choices)
            if type(dist).__name__ == "IntDistribution":
                return rng.randint(dist.low, dist.high)
            return rng.uniform(dist.low, dist.high)
        params, fusion, train = s.suggest(pick)
        assert ("routing_sparsity" in params) == params["routing"]
        seen_cond.add("routing_sparsity" in params)
        assert fusion.width == params["width"] and train.lr == params["lr"]
        assert train.epochs == 2.0  # the proxy's full budget
        if not params["routing"]:
            assert fusion.routing_sparsity == 0.0  # base value when inactive
    assert seen_cond == {True, False}


def test_invalid_combination_is_reported(tmp_path: Path) -> None:
    s = load_space(_write(tmp_path, """
        base: {fusion: {width: 48, heads: 2}}
        dimensions:
          width: {choices: [48, 64]}
          heads: {choices: [2, 3]}
        """))
    assert any("heads" in p for p in s.check_pairs())
    with pytest.raises(InvalidCombination, match="do not divide"):
        s.suggest(lambda n, d: {"width": 64, "heads": 3}[n])


def test_params_of_round_trip(tmp_path: Path) -> None:
    s = load_space(_write(tmp_path, GOOD))
    f, t = s.reference()
    p = s.params_of(f, t)
    assert p is not None and s.build(p) == (f, t)
    assert s.params_of(f.replace(pooling="attention"), t) is None  # not searched


# --- errors: one test each --------------------------------------------------------------

def test_error_unknown_field(tmp_path: Path) -> None:
    msg = _err(tmp_path, "dimensions: {widht: {choices: [32]}}")
    assert "'widht'" in msg and "unknown field" in msg


def test_error_empty_choices(tmp_path: Path) -> None:
    msg = _err(tmp_path, "dimensions: {width: {choices: []}}")
    assert "'width'" in msg and "non-empty" in msg


def test_error_low_not_below_high(tmp_path: Path) -> None:
    msg = _err(tmp_path, "dimensions: {layers: {type: int, low: 3, high: 3}}")
    assert "'layers'" in msg and "low 3 must be < high 3" in msg


def test_error_log_with_nonpositive_low(tmp_path: Path) -> None:
    msg = _err(tmp_path, "dimensions: {weight_decay: {type: float, low: 0, high: 0.1, log: true}}")
    assert "'weight_decay'" in msg and "log scale needs low > 0" in msg


def test_error_choice_of_wrong_type(tmp_path: Path) -> None:
    msg = _err(tmp_path, "dimensions: {residual_gate: {choices: [yes_please, true]}}")
    assert "'residual_gate'" in msg and "wrong type" in msg


def test_error_choice_invalid_for_field(tmp_path: Path) -> None:
    msg = _err(tmp_path, "dimensions: {query_fusion: {choices: [none, per_layer]}}")
    assert "'query_fusion'" in msg and "per_layer" in msg


def test_error_condition_on_unknown_dimension(tmp_path: Path) -> None:
    msg = _err(tmp_path, """
        dimensions:
          routing_sparsity: {type: float, low: 0.001, high: 0.1, when: {routng: true}}
        """)
    assert "'routing_sparsity'" in msg and "'routng'" in msg


def test_error_condition_on_later_dimension(tmp_path: Path) -> None:
    msg = _err(tmp_path, """
        dimensions:
          routing_sparsity: {type: float, low: 0.001, high: 0.1, when: {routing: true}}
          routing: {choices: [false, true]}
        """)
    assert "later dimension 'routing'" in msg


def test_error_malformed_yaml(tmp_path: Path) -> None:
    msg = _err(tmp_path, "dimensions: {width: [32, 64}\n")
    assert "not valid YAML" in msg


def test_error_int_range_for_float_field_type(tmp_path: Path) -> None:
    msg = _err(tmp_path, "dimensions: {layers: {type: float, low: 1, high: 3}}")
    assert "'layers'" in msg and "integer" in msg


def test_error_data_field_not_searchable(tmp_path: Path) -> None:
    msg = _err(tmp_path, "dimensions: {video_dim: {choices: [32, 64]}}")
    assert "'video_dim'" in msg and "set from the data" in msg


def test_error_bad_proxy_budget(tmp_path: Path) -> None:
    msg = _err(tmp_path, "dimensions: {width: [32]}\nproxy: {min_budget: 1, max_budget: 2, eta: 1}")
    assert "eta must be > 1" in msg


def test_error_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match="file not found"):
        load_space(tmp_path / "nope.yaml")


def test_parse_space_names_source() -> None:
    with pytest.raises(SpaceError, match="^mem.yaml: "):
        parse_space("dimensions: 3", "mem.yaml")


def test_cli_spaces(tmp_path: Path, capsys) -> None:
    from nas.cli import main

    assert main(["spaces", "validate", "quick"]) == 0
    assert main(["spaces", "show", "gated_fusion"]) == 0
    assert "temporal_gates" in capsys.readouterr().out
    bad = _write(tmp_path, "dimensions: {width: {choices: []}}")
    assert main(["spaces", "validate", str(bad)]) == 2
    assert "dimension 'width'" in capsys.readouterr().err


def test_rerank_k_is_canonical_for_text_agnostic_configs() -> None:
    """rerank_k only changes text-conditioned scoring: text-agnostic configs get 0, so
    they share one config id (deduplicated), text-conditioned ones keep their value."""
    from nas.search.searcher import config_key

    s = parse_space(textwrap.dedent("""
        name: r
        base: {fusion: {width: 32, heads: 2, gate_inputs: va}}
        dimensions:
          query_fusion: {choices: [none, scalar]}
          rerank_k: {choices: [0, 16, 64]}
    """))
    agnostic = [s.build({"query_fusion": "none", "rerank_k": k}) for k in (0, 16, 64)]
    assert {f.rerank_k for f, _ in agnostic} == {0}
    assert len({config_key(f, t) for f, t in agnostic}) == 1
    cond = [s.build({"query_fusion": "scalar", "rerank_k": k}) for k in (0, 16, 64)]
    assert [f.rerank_k for f, _ in cond] == [0, 16, 64]
    assert len({config_key(f, t) for f, t in cond}) == 3

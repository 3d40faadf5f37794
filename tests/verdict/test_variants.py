"""The registry of switchable components (nas.variants), shared by verdict and ablate."""

from __future__ import annotations

import pytest

from nas.config import ConfigError, FusionConfig
from nas.variants import ablation_components, get, parse_variant_names, plan_variants

SMALL = dict(width=32, layers=2, heads=2, video_dim=16, audio_dim=16, text_dim=16,
             max_frames=4, resampler_queries=4)


def test_the_plan_is_the_reference_and_13_variants() -> None:
    plan = plan_variants()
    assert [v.plan for v in plan] == ["ref", *map(str, range(1, 14))]
    assert plan[0].name == "text_guidance"


@pytest.mark.parametrize("v", plan_variants(), ids=lambda v: v.name)
def test_each_variant_turns_on_and_off(v) -> None:
    """Off in AVIGATE (text-agnostic) and in the reference, it is added; added, it is on
    and removing it turns it off again; the configs stay valid."""
    avigate = FusionConfig(**SMALL, gate_inputs="va", query_fusion="none")
    reference = FusionConfig(**SMALL)
    for base in (avigate, reference):
        if v.is_on(base):  # only the reference's own text guidance
            assert v.name == "text_guidance" and base is reference
            continue
        action, on = v.toggle(base)
        assert action == "add" and v.is_on(on) and on.fusion_id != base.fusion_id
        action, off = v.toggle(on)
        assert action == "remove" and not v.is_on(off)


def test_text_guidance_and_multi_head_query_fusion() -> None:
    ref = FusionConfig(**SMALL)
    assert get("text_guidance").is_on(ref) and not get("multi_head_query_fusion").is_on(ref)
    off = get("text_guidance").remove(ref)
    assert not off.text_conditioned
    per_head = get("multi_head_query_fusion").add(off)
    assert per_head.query_fusion == "per_head" and per_head.text_conditioned
    assert get("multi_head_query_fusion").remove(per_head).query_fusion == "scalar"
    # the registry also reads a trial's stored fusion dict
    assert get("text_guidance").is_on(ref.to_dict())


def test_ablation_keeps_its_components_and_order() -> None:
    assert [v.name for v in ablation_components()] == [
        "query_fusion", "text_in_gates", "layer_decay", "attn_temperature", "residual_gate",
        "text_audio", "dual_path", "routing", "gate_contrastive", "adaptive_pooling",
        "hierarchical_gates", "uncertainty_gates", "attn_reweighting", "temporal_gates",
        "resampler", "margin", "reranking"]
    cfg = FusionConfig(**SMALL, residual_gate=True)
    assert cfg.active_components == ["query_fusion", "text_in_gates", "residual_gate",
                                     "resampler"]
    assert cfg.without("residual_gate") == cfg.replace(residual_gate=False)
    # on but unable to act (one layer: no next layer to bias) is not an active component
    assert "attn_reweighting" in cfg.replace(attn_reweighting=True).active_components
    assert "attn_reweighting" not in cfg.replace(attn_reweighting=True,
                                                 layers=1).active_components
    with pytest.raises(ConfigError, match="unknown component 'warp'"):
        cfg.without("warp")


def test_parse_variant_names() -> None:
    assert len(parse_variant_names(None)) == 14 == len(parse_variant_names("all"))
    assert [v.name for v in parse_variant_names("dual_path, routing,dual_path")] == \
        ["dual_path", "routing"]
    with pytest.raises(KeyError, match="'resampler'.*the plan's are: text_guidance"):
        parse_variant_names("resampler")


def test_a_variant_that_cannot_act_is_not_trained() -> None:
    """Variant 12 biases the next layer's attention: with one layer it builds nothing, so
    the verdict leaves it untested with the reason instead of training the same model
    twice; with two layers it is added as usual."""
    from nas.config import TrainConfig
    from nas.verdict.jobs import plan

    v = get("attn_reweighting")
    one, two = FusionConfig(**{**SMALL, "layers": 1}), FusionConfig(**SMALL)
    assert v.why_inert(v.add(one)) and v.why_inert(v.add(two)) is None
    jobs, toggles = plan(one, TrainConfig(), [v], seeds=2, data="synthetic", rungs=[1.0])
    assert toggles[0].fusion is None and "one layer" in (toggles[0].reason or "")
    assert [j.role for j in jobs] == ["base", "base"]
    jobs, toggles = plan(two, TrainConfig(), [v], seeds=2, data="synthetic", rungs=[1.0])
    assert toggles[0].action == "add" and len(jobs) == 4

"""The registry of switchable components: how to turn each one on and off in a FusionConfig.

One entry per component, written once and used by:

- ``nas verdict`` (``plan_variants()``): the reference's text guidance and the 13 variants
  of the research plan (model.md section 3), each ADDED to a configuration where it is off
  and REMOVED where it is on;
- ``nas ablate`` and ``FusionConfig.active_components`` / ``FusionConfig.without``
  (``ablation_components()``): what differs from a plain text-agnostic AVIGATE model,
  removed one at a time. Ablation keeps the reference's two text paths apart
  (``query_fusion``, ``text_in_gates``) and also removes the resampler, the margin term and
  two-stage reranking, which are not plan variants.

A component is *on* in a config when any of its ``off`` fields differs from the off value
(``active`` overrides that where "off" is not the field's null value: multi-head query fusion
is off when query fusion is the reference's scalar one, and also when there is none).
``add`` sets the ``on`` fields (sensible defaults: the plan's recommended setting) and
leaves the component's other parameters (e.g. ``uncertainty_kl``) as the config has them.
Pure: imports neither torch, Optuna nor Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

__all__ = ["Variant", "VARIANTS", "ablation_components", "get", "parse_variant_names",
           "plan_variants"]


@dataclass(frozen=True)
class Variant:
    """One switchable component of the model family."""

    name: str  # registry key, e.g. "residual_gate"
    plan: str | None  # model.md label ("ref", "1".."13"), None: not a plan variant
    title: str  # human name
    on: Mapping[str, Any]  # field changes that switch it on
    off: Mapping[str, Any]  # field changes that switch it off
    ablate: bool = True  # one of nas ablate's components
    active: Callable[[Any], bool] | None = None  # overrides "an off field differs"
    # why it cannot act in a config where it is on (the model is then the same as without
    # it), or None: the verdict does not train such a toggle
    inert: Callable[[Any], str | None] | None = None

    def is_on(self, cfg: Any) -> bool:
        """Whether ``cfg`` (a FusionConfig, or a mapping of its fields) has it on."""
        get = cfg.get if isinstance(cfg, Mapping) else (lambda k: getattr(cfg, k))
        if self.active is not None:
            return self.active(get)
        return any(get(k) != v for k, v in self.off.items())

    def add(self, cfg: Any) -> Any:
        """``cfg`` with this component on (validated again by ``FusionConfig.replace``)."""
        return cfg.replace(**self.on)

    def remove(self, cfg: Any) -> Any:
        """``cfg`` with this component off."""
        return cfg.replace(**self.off)

    def why_inert(self, cfg: Any) -> str | None:
        """Why this component, on in ``cfg``, computes nothing there (None: it acts)."""
        return None if self.inert is None else self.inert(cfg)

    def toggle(self, cfg: Any) -> tuple[str, Any]:
        """``("remove", cfg without it)`` when on, else ``("add", cfg with it)``."""
        return ("remove", self.remove(cfg)) if self.is_on(cfg) else ("add", self.add(cfg))

    @property
    def label(self) -> str:
        """``"3 residual_gate"``; ``"ref text_guidance"`` for the reference."""
        return f"{self.plan} {self.name}" if self.plan else self.name


def _per_head(get: Callable[[str], Any]) -> bool:
    return get("query_fusion") == "per_head"


def _no_next_layer(cfg: Any) -> str | None:
    return ("it biases the next layer's cross-attention, and the configuration has one layer"
            if cfg.layers == 1 else None)


# Order: the verdict table's (reference, then 1..13) and the ablation table's (filtered).
VARIANTS: tuple[Variant, ...] = (
    Variant("text_guidance", "ref", "text-guided query fusion and 3-way gates (the reference)",
            on={"gate_inputs": "vat", "query_fusion": "scalar"},
            off={"gate_inputs": "va", "query_fusion": "none"}, ablate=False),
    Variant("query_fusion", None, "query fusion", on={"query_fusion": "scalar"},
            off={"query_fusion": "none"}),
    Variant("text_in_gates", None, "text in the gates", on={"gate_inputs": "vat"},
            off={"gate_inputs": "va"}),
    Variant("layer_decay", "1", "layer-aware gate decay (1B learnable)",
            on={"layer_decay": "learnable"}, off={"layer_decay": "none"}),
    Variant("attn_temperature", "2", "cross-attention temperature",
            on={"attn_temperature": "scalar"}, off={"attn_temperature": "none"}),
    Variant("residual_gate", "3", "residual reliability gate", on={"residual_gate": True},
            off={"residual_gate": False}),
    Variant("multi_head_query_fusion", "4", "multi-head query fusion",
            on={"query_fusion": "per_head"}, off={"query_fusion": "scalar"}, ablate=False,
            active=_per_head),
    Variant("text_audio", "5", "text-conditioned audio (FiLM of the keys)",
            on={"text_audio": "keys"}, off={"text_audio": "none"}),
    Variant("dual_path", "6", "dual-path fusion", on={"dual_path": True},
            off={"dual_path": False}),
    Variant("routing", "7", "dynamic layer allocation", on={"routing": True},
            off={"routing": False}),
    Variant("gate_contrastive", "8", "contrastive gate learning (weight 0.05)",
            on={"gate_contrastive_weight": 0.05}, off={"gate_contrastive_weight": 0.0}),
    Variant("adaptive_pooling", "9", "adaptive (attention) pooling",
            on={"pooling": "attention"}, off={"pooling": "mean"}),
    Variant("hierarchical_gates", "10", "hierarchical gating",
            on={"hierarchical_gates": True}, off={"hierarchical_gates": False}),
    Variant("uncertainty_gates", "11", "uncertainty-aware gating",
            on={"uncertainty_gates": True}, off={"uncertainty_gates": False}),
    Variant("attn_reweighting", "12", "cross-modal attention reweighting",
            on={"attn_reweighting": True}, off={"attn_reweighting": False},
            inert=_no_next_layer),
    Variant("temporal_gates", "13", "temporal gate smoothing (per-frame gates)",
            on={"temporal_gates": True}, off={"temporal_gates": False}),
    Variant("resampler", None, "audio resampler", on={"resampler_layers": 1},
            off={"resampler_layers": 0}),
    Variant("margin", None, "margin term of the loss", on={"margin": True},
            off={"margin": False}),
    Variant("reranking", None, "two-stage reranking", on={"rerank_k": 16},
            off={"rerank_k": 0}),
)

_BY_NAME = {v.name: v for v in VARIANTS}


def get(name: str) -> Variant:
    """The registry entry ``name`` (KeyError listing the known names)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown component {name!r}; known: {sorted(_BY_NAME)}") from None


def plan_variants() -> list[Variant]:
    """The reference's text guidance and the plan's 13 variants, in plan order."""
    return [v for v in VARIANTS if v.plan is not None]


def ablation_components() -> list[Variant]:
    """What ``nas ablate`` removes one at a time, in table order."""
    return [v for v in VARIANTS if v.ablate]


def parse_variant_names(text: str | None) -> list[Variant]:
    """``"residual_gate,dual_path"`` -> plan variants (all of them for None or "all");
    raises KeyError naming an unknown or non-plan name."""
    plan = plan_variants()
    if text is None or text.strip() in ("", "all"):
        return plan
    names = [n.strip() for n in text.split(",") if n.strip()]
    by_name = {v.name: v for v in plan}
    bad = [n for n in names if n not in by_name]
    if bad:
        raise KeyError(f"unknown variant(s) {', '.join(map(repr, bad))}; the plan's are: "
                       f"{', '.join(by_name)}")
    return [by_name[n] for n in dict.fromkeys(names)]

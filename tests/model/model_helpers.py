"""Shared helpers of the model tests: tiny configs, random batches, the variant list."""

from __future__ import annotations

from typing import Any

import torch

from nas.batch import ClipBatch, TextBatch
from nas.config import FusionConfig

TINY = dict(video_dim=12, audio_dim=10, text_dim=8, max_frames=5, width=16, layers=2, heads=2,
            resampler_layers=1, resampler_queries=3)

# name -> (config changes, class name of the variant's own module or None)
VARIANTS: dict[str, tuple[dict[str, Any], str | None]] = {
    "1A_decay_fixed": ({"layer_decay": "fixed"}, None),
    "1B_decay_learnable": ({"layer_decay": "learnable"}, "LearnableDecay"),
    "2_temperature_scalar": ({"attn_temperature": "scalar"}, "Temperature"),
    "2_temperature_per_head": ({"attn_temperature": "per_head"}, "Temperature"),
    "3_residual_gate": ({"residual_gate": True}, "ReliabilityGate"),
    "4_per_head_query": ({"query_fusion": "per_head"}, "PerHeadQueryFusion"),
    "5_film_keys": ({"text_audio": "keys"}, "FiLM"),
    "5_film_keys_values": ({"text_audio": "keys_values"}, "FiLM"),
    "6_dual_path": ({"dual_path": True}, "DualPath"),
    "7_routing": ({"routing": True, "routing_sparsity": 0.01, "routing_skip_threshold": 0.5},
                  "LayerRouter"),
    "8_gate_contrastive": ({"gate_contrastive_weight": 0.1}, None),
    "9_attention_pooling": ({"pooling": "attention"}, "AttentionPool"),
    "10_hierarchical": ({"hierarchical_gates": True}, "FineGate"),
    "11_uncertainty": ({"uncertainty_gates": True, "uncertainty_samples": 3}, "UncertainGate"),
    "12_reweighting": ({"attn_reweighting": True}, "KeyReweighting"),
    "13_temporal": ({"temporal_gates": True}, "FrameInput"),
}

COMBOS: dict[str, dict[str, Any]] = {
    "all_on": {k: v for changes, _ in VARIANTS.values() for k, v in changes.items()}
              | {"layer_decay": "learnable", "attn_temperature": "per_head",
                 "text_audio": "keys_values", "margin": True},
    "text_paths": {"query_fusion": "per_head", "dual_path": True, "text_audio": "keys_values",
                   "temporal_gates": True, "hierarchical_gates": True, "uncertainty_gates": True},
    "agnostic_mix": {"gate_inputs": "va", "query_fusion": "none", "routing": True,
                     "pooling": "attention", "attn_reweighting": True, "residual_gate": True,
                     "gate_contrastive_weight": 0.05},
    "decay_temp_margin": {"layer_decay": "fixed", "attn_temperature": "scalar", "margin": True,
                          "gate_contrastive_weight": 0.1, "resampler_layers": 0},
}


def tiny_config(**changes: Any) -> FusionConfig:
    return FusionConfig(**{**TINY, **changes})


def text_conditioned_configs() -> dict[str, FusionConfig]:
    """Every variant (on top of the reference) and combo that is text-conditioned."""
    out = {"base": tiny_config()}
    out.update({n: tiny_config(**c) for n, (c, _) in VARIANTS.items()})
    out.update({n: tiny_config(**c) for n, c in COMBOS.items()})
    return {n: c for n, c in out.items() if c.text_conditioned}


def make_clips(n: int, cfg: FusionConfig, seed: int = 0, frames: int = 4, tokens: int = 6,
               dtype: torch.dtype = torch.float32) -> ClipBatch:
    """Random clips with padded frames / audio tokens, some silent clips, labels."""
    g = torch.Generator().manual_seed(seed)
    vmask = torch.ones(n, frames, dtype=torch.bool)
    amask = torch.ones(n, tokens, dtype=torch.bool)
    n_frames = torch.randint(1, frames + 1, (n,), generator=g)
    n_tok = torch.randint(2, tokens + 1, (n,), generator=g)
    vmask &= torch.arange(frames)[None] < n_frames[:, None]
    amask &= torch.arange(tokens)[None] < n_tok[:, None]
    return ClipBatch(
        video=torch.randn(n, frames, cfg.video_dim, generator=g, dtype=dtype),
        video_mask=vmask,
        audio=torch.randn(n, tokens, cfg.audio_dim, generator=g, dtype=dtype),
        audio_mask=amask,
        has_audio=torch.rand(n, generator=g) > 0.2,
        labels=torch.randint(0, 3, (n,), generator=g),
    )


def make_texts(m: int, cfg: FusionConfig, seed: int = 1, tokens: int = 3,
               dtype: torch.dtype = torch.float32) -> TextBatch:
    g = torch.Generator().manual_seed(seed)
    n_tok = torch.randint(1, tokens + 1, (m,), generator=g)
    return TextBatch(text=torch.randn(m, tokens, cfg.text_dim, generator=g, dtype=dtype),
                     text_mask=torch.arange(tokens)[None] < n_tok[:, None])


def randomize(model: torch.nn.Module, seed: int = 0, std: float = 0.3) -> None:
    """Perturb every parameter, so zero-initialised paths (FiLM, pooling) are active."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 0:
                continue  # logit scale, learnable decay: keep their init
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)

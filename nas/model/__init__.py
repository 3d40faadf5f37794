"""The gated audio-video-text fusion retrieval model (model.md), built from a FusionConfig.

Modules, one per variant family: ``attention`` (attention with masks, temperature 2,
FiLM 5, reweighting 12), ``gates`` (gate heads, hierarchical 10, uncertainty 11, temporal 13,
decay 1A/1B, reliability gate 3), ``pooling`` (9), ``resampler``, ``block`` (the fusion
block, query fusion 4, dual path 6), ``routing`` (7), ``losses`` (InfoNCE, margin, 8),
``model`` (the whole model), ``packed`` (float32 CPU inference on packed oneDNN weights).
"""

from nas.model.context import FusionContext
from nas.model.model import (
    ClipEncoding,
    FusionRetrievalModel,
    LossOutput,
    TextEncoding,
    build_model,
)

__all__ = [
    "ClipEncoding", "FusionContext", "FusionRetrievalModel", "LossOutput", "TextEncoding",
    "build_model",
]

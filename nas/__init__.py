"""nas: architecture search for gated audio-video-text fusion transformers.

Public entry points:
- ``nas.config``: ``FusionConfig``, ``TrainConfig`` (the single source of truth)
- ``nas.model.build_model(cfg)``: the retrieval model
- ``nas.evaluate``: honest similarity, retrieval metrics, gate statistics
- ``nas.data``: synthetic data and feature directories
- ``nas.train``: proxy and full training (no Optuna, no Ray)
- ``nas.cost``: params, FLOPs, latency
- ``nas.search``: the Optuna/Ray search
"""

from nas.config import ConfigError, FusionConfig, TrainConfig

__version__ = "0.1.0"

# Where studies live unless --storage says otherwise (the current folder).
DEFAULT_STORAGE = "sqlite:///studies.db"
__all__ = ["DEFAULT_STORAGE", "ConfigError", "FusionConfig", "TrainConfig", "__version__"]

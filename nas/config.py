"""The single source of truth: ``FusionConfig`` (architecture) and ``TrainConfig``.

Every option of ``docs/model.md`` is a field here. The model is built only
from a ``FusionConfig``; the search maps trial suggestions onto these fields; export
writes them back to YAML in exactly the format ``nas train --config`` reads.

A config file is a YAML mapping with two optional sections::

    fusion: {width: 128, layers: 2, ...}
    train:  {lr: 0.001, epochs: 3, ...}

Unknown keys, wrong types and impossible values are errors that name the file, the
field and the problem (``ConfigError``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, Mapping, get_args, get_origin, get_type_hints

import yaml

from nas._io import atomic_write_text
from nas.errors import UserError

__all__ = [
    "COST_GALLERY",
    "ConfigError",
    "FusionConfig",
    "TrainConfig",
    "atomic_write_text",
    "config_key",
    "config_to_yaml",
    "load_config_file",
    "save_config_file",
]

# The gallery size the query cost is counted at (query_gflops, latency_ms): the search,
# the verdict and the cost model's defaults all use this one number.
COST_GALLERY = 1000

GateInputs = Literal["va", "vat"]
QueryFusion = Literal["none", "scalar", "per_head"]
LayerDecay = Literal["none", "fixed", "learnable"]
Temperature = Literal["none", "scalar", "per_head"]
TextAudio = Literal["none", "keys", "keys_values"]
Pooling = Literal["mean", "attention"]


class ConfigError(UserError):
    """A configuration value is invalid. The message names the source, field and problem."""


def _check(cond: bool, field_name: str, msg: str, source: str = "") -> None:
    if not cond:
        where = f"{source}: " if source else ""
        raise ConfigError(f"{where}field '{field_name}': {msg}")


_HINTS: dict[type, dict[str, Any]] = {}


def _type_hints(cls: type) -> dict[str, Any]:
    """``get_type_hints`` of a config class, resolved once: the search builds a config per
    candidate it weighs (hundreds a run), and resolving the annotations was most of that."""
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


class _Base:
    """Shared behaviour of the two frozen configs: dict/YAML round trip and validation."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, source: str = "") -> Any:
        """Build from a mapping, rejecting unknown keys and coercing simple types."""
        data = dict(data or {})
        known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
        hints = _type_hints(cls)
        unknown = sorted(set(data) - set(known))
        if unknown:
            where = f"{source}: " if source else ""
            raise ConfigError(
                f"{where}unknown field(s) {', '.join(map(repr, unknown))} in {cls.__name__}; "
                f"known fields: {', '.join(sorted(known))}"
            )
        kwargs = {k: _coerce(k, v, hints[k], source) for k, v in data.items()}
        try:
            return cls(**kwargs)
        except ConfigError as e:
            if source and not str(e).startswith(source):
                raise ConfigError(f"{source}: {e}") from None
            raise

    def replace(self, **changes: Any) -> Any:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def _coerce(name: str, value: Any, hint: Any, source: str) -> Any:
    """Coerce YAML scalars to the declared field type, or raise a ConfigError."""
    origin = get_origin(hint)
    if origin is Literal:
        choices = get_args(hint)
        # YAML reads `none` as a string but `off`/`no` as False: accept False for "none".
        if value is False and "none" in choices:
            value = "none"
        _check(value in choices, name, f"{value!r} is not one of {list(choices)}", source)
        return value
    if hint is bool:
        _check(isinstance(value, bool), name, f"expected true/false, got {value!r}", source)
        return value
    if hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if isinstance(value, float) and value.is_integer():
            value, ok = int(value), True
        _check(ok, name, f"expected an integer, got {value!r}", source)
        return value
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        _check(ok, name, f"expected a number, got {value!r}", source)
        _check(math.isfinite(float(value)), name, f"must be finite, got {value!r}", source)
        return float(value)
    return value


@dataclass(frozen=True)
class FusionConfig(_Base):
    """One architecture of the gated audio-video-text fusion family (model.md).

    Defaults are the reference model of model.md section 1 (text-guided query fusion,
    3-way gates reading [x̄; ā; t̄]) with every variant of section 3 off.
    """

    # --- input feature dims (set from the data) and sequence limits --------------
    video_dim: int = 512
    audio_dim: int = 768
    text_dim: int = 512
    max_frames: int = 12

    # --- sizes -----------------------------------------------------------------
    width: int = 512  # D
    layers: int = 4  # L
    heads: int = 8  # H
    resampler_layers: int = 1  # 0..4; 0 = projected audio tokens used directly
    resampler_queries: int = 12  # Q

    # --- reference gating --------------------------------------------------------
    gate_inputs: GateInputs = "vat"  # "va" = original AVIGATE gates (no text)
    query_fusion: QueryFusion = "scalar"  # "per_head" = variant 4
    residual_mix: float = 0.05  # fused = mix*fusion_out + (1-mix)*x0

    # --- variants (model.md section 3), all off by default ------------------------
    layer_decay: LayerDecay = "none"  # 1A fixed, 1B learnable
    attn_temperature: Temperature = "none"  # 2
    residual_gate: bool = False  # 3
    text_audio: TextAudio = "none"  # 5: FiLM of audio keys (and values) by the text
    dual_path: bool = False  # 6
    routing: bool = False  # 7
    routing_sparsity: float = 0.0  # 7: lambda * sum(w)
    routing_skip_threshold: float = 0.0  # 7: layers with w below it are skipped at inference
    gate_contrastive_weight: float = 0.0  # 8: 0 = off; plan suggests 0.01-0.1
    gate_contrastive_tau: float = 0.1  # 8
    pooling: Pooling = "mean"  # 9: "attention" = adaptive pooling
    hierarchical_gates: bool = False  # 10
    uncertainty_gates: bool = False  # 11
    uncertainty_kl: float = 1e-3  # 11: beta_KL
    uncertainty_samples: int = 1  # 11: K samples at test time (1 = tanh(mu))
    attn_reweighting: bool = False  # 12
    temporal_gates: bool = False  # 13: per-frame gates
    temporal_smooth_weight: float = 0.1  # 13: lambda

    # --- similarity and loss -----------------------------------------------------
    local_lambda: float = 1.0  # lambda of the local logsumexp similarity
    logit_scale_init: float = 100.0
    margin: bool = False  # the reference's no-grad margin term
    margin_beta: float = 0.2
    margin_delta: float = 0.1

    # --- scoring -------------------------------------------------------------------
    rerank_k: int = 0  # two-stage scoring for text-conditioned configs; 0 = exact (all)

    def __post_init__(self) -> None:
        for name in ("video_dim", "audio_dim", "text_dim", "max_frames", "width", "heads",
                     "resampler_queries", "uncertainty_samples"):
            _check(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        _check(self.layers >= 1, "layers", f"must be >= 1, got {self.layers}")
        _check(0 <= self.resampler_layers <= 4, "resampler_layers",
               f"must be in 0..4, got {self.resampler_layers}")
        _check(self.width % self.heads == 0, "heads",
               f"{self.heads} heads do not divide width {self.width}")
        _check(self.width % 2 == 0, "width", f"must be even (gate MLPs use D/2), got {self.width}")
        _check(0.0 <= self.residual_mix <= 1.0, "residual_mix",
               f"must be in [0, 1], got {self.residual_mix}")
        for name in ("routing_sparsity", "gate_contrastive_weight", "uncertainty_kl",
                     "temporal_smooth_weight", "margin_beta", "margin_delta"):
            _check(getattr(self, name) >= 0, name, f"must be >= 0, got {getattr(self, name)}")
        _check(0.0 <= self.routing_skip_threshold < 1.0, "routing_skip_threshold",
               f"must be in [0, 1), got {self.routing_skip_threshold}")
        _check(self.gate_contrastive_tau > 0, "gate_contrastive_tau",
               f"must be > 0, got {self.gate_contrastive_tau}")
        _check(self.local_lambda > 0, "local_lambda", f"must be > 0, got {self.local_lambda}")
        _check(0 < self.logit_scale_init <= 100, "logit_scale_init",
               f"must be in (0, 100], got {self.logit_scale_init}")
        _check(self.rerank_k >= 0, "rerank_k", f"must be >= 0 (0 = exact), got {self.rerank_k}")

    # ------------------------------------------------------------------------------
    @property
    def text_conditioned(self) -> bool:
        """True when the fused video depends on the text (a cross-encoder, model.md §3).

        Query fusion (base and 4), gates reading t̄ (which also feed the router of 7, the
        hierarchical/uncertainty/per-frame gates of 10, 11, 13), FiLM audio (5) and the
        dual path (6) make the fused clip a function of the text being scored.
        """
        return (
            self.query_fusion != "none"
            or self.gate_inputs == "vat"
            or self.text_audio != "none"
            or self.dual_path
        )

    @functools.cached_property
    def fusion_id(self) -> str:
        """Id of the architecture: 12 hex chars of the SHA-256 of the canonical JSON form.

        Not to be confused with a configuration's ``config_id`` (:func:`config_key`: the
        architecture and its training settings), which studies, exports and ``runs/`` use.
        """
        return _hash12(self.to_dict())

    @property
    def active_components(self) -> list[str]:
        """Names of the components that differ from a plain text-agnostic AVIGATE model.

        Used by ablation: each one is removed by ``without``. The components and what
        switching each off means live in one registry, ``nas.variants``. A component that
        is on but cannot act here (``Variant.why_inert``: attention reweighting with one
        layer) is not active: removing it would train the same model.
        """
        from nas.variants import ablation_components

        return [v.name for v in ablation_components()
                if v.is_on(self) and v.why_inert(self) is None]

    def without(self, component: str) -> "FusionConfig":
        """This config with one component removed (see ``active_components``)."""
        from nas.variants import get

        try:
            return get(component).remove(self)
        except KeyError as e:
            raise ConfigError(str(e.args[0])) from None


@dataclass(frozen=True)
class TrainConfig(_Base):
    """Everything that is not architecture: optimisation, budget, seeds, device."""

    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 64
    epochs: float = 3.0  # the full budget; may be fractional
    warmup_frac: float = 0.05
    grad_clip: float = 1.0  # 0 = off
    seed: int = 0
    negatives: int = 0  # text-conditioned loss: 0 = all B² in-batch pairs, K = K per text
    eval_chunk: int = 4096  # (text, clip) pairs fused per chunk when scoring
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_threads: int = 0  # torch CPU threads; 0 = torch default

    def __post_init__(self) -> None:
        _check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        _check(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        _check(self.batch_size >= 2, "batch_size",
               f"must be >= 2 for a contrastive loss, got {self.batch_size}")
        _check(self.epochs > 0, "epochs", f"must be > 0, got {self.epochs}")
        _check(0 <= self.warmup_frac < 1, "warmup_frac",
               f"must be in [0, 1), got {self.warmup_frac}")
        _check(self.grad_clip >= 0, "grad_clip", f"must be >= 0, got {self.grad_clip}")
        _check(self.negatives >= 0, "negatives", f"must be >= 0, got {self.negatives}")
        _check(self.eval_chunk >= 1, "eval_chunk", f"must be >= 1, got {self.eval_chunk}")
        _check(self.num_threads >= 0, "num_threads", f"must be >= 0, got {self.num_threads}")
        ok = self.device in ("auto", "cpu", "cuda") or (
            self.device.startswith("cuda:") and self.device[5:].isdigit())
        _check(ok, "device", f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")


# ----------------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------------

def _hash12(doc: Mapping[str, Any]) -> str:
    canon = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:12]


def config_key(fusion: FusionConfig, train: TrainConfig) -> str:
    """The ``config_id`` of a configuration: architecture and training settings together.

    A study's trials are deduplicated by it (lr etc. are searched), the front table, the
    report and ``nas export``'s ``meta.config_id`` show it, and ``nas train`` / ``nas ablate``
    name their ``runs/`` folders after it. ``FusionConfig.fusion_id`` is the architecture's.
    """
    return _hash12({"fusion": fusion.to_dict(), "train": train.to_dict()})


def load_config_file(path: str | os.PathLike[str]) -> tuple[FusionConfig, TrainConfig]:
    """Read a config file (``fusion:`` and ``train:`` sections) with ``yaml.safe_load``."""
    p = Path(path)
    src = str(p)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{src}: file not found") from None
    except OSError as e:
        raise ConfigError(f"{src}: cannot read: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{src}: not valid YAML: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{src}: expected a mapping with 'fusion' and 'train' sections, "
                          f"got {type(data).__name__}")
    unknown = sorted(set(data) - {"fusion", "train", "meta"})
    if unknown:
        raise ConfigError(f"{src}: unknown top-level key(s) {unknown}; expected 'fusion', "
                          "'train' (and optional 'meta')")
    for sec in ("fusion", "train"):
        if data.get(sec) is not None and not isinstance(data[sec], dict):
            raise ConfigError(f"{src}: section '{sec}' must be a mapping")
    fusion = FusionConfig.from_dict(data.get("fusion"), source=f"{src} [fusion]")
    train = TrainConfig.from_dict(data.get("train"), source=f"{src} [train]")
    return fusion, train


def config_to_yaml(fusion: FusionConfig, train: TrainConfig | None = None,
                   meta: Mapping[str, Any] | None = None) -> str:
    """The canonical YAML text of a config (what ``save_config_file`` writes)."""
    doc: dict[str, Any] = {}
    if meta:
        doc["meta"] = dict(meta)
    doc["fusion"] = fusion.to_dict()
    doc["train"] = (train or TrainConfig()).to_dict()
    return yaml.safe_dump(doc, sort_keys=False)


def save_config_file(path: str | os.PathLike[str], fusion: FusionConfig,
                     train: TrainConfig | None = None,
                     meta: Mapping[str, Any] | None = None) -> Path:
    """Write a config file atomically (temp file + rename: never half-written)."""
    p = Path(path)
    text = config_to_yaml(fusion, train, meta)
    atomic_write_text(p, text)
    return p

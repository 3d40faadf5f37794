"""Self-describing checkpoints: the configs travel with the weights.

A checkpoint is one ``torch.save`` file holding only tensors, dicts, lists, tuples and
primitives, so it loads with ``torch.load(weights_only=True)`` (user files are never
unpickled). Layout (``version`` 1)::

    {"format": "nas-checkpoint", "version": 1,
     "fusion": FusionConfig dict, "train": TrainConfig dict,
     "model": state_dict, "optimizer": state_dict | None, "scheduler": state_dict | None,
     "step": int, "epoch": float, "total_steps": int,
     "rng": {"torch": ByteTensor, "cuda": [ByteTensor, ...]},
     "history": [metrics dict per evaluation], "best_recall": float | None,
     "extra": {...}}            # free-form JSON-like metadata (data spec, ...)

``build_model_from_checkpoint(path)`` rebuilds the model with nothing else needed.
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch

from nas._io import atomic_open
from nas.config import ConfigError, FusionConfig, TrainConfig
from nas.errors import UserError

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "build_model_from_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "nas-checkpoint"
CHECKPOINT_VERSION = 1
_REQUIRED = ("fusion", "train", "model", "step", "epoch")


class CheckpointError(UserError):
    """A file is not a (readable) nas checkpoint. The message names the file."""


def save_checkpoint(path: str | os.PathLike[str], *, fusion: FusionConfig, train: TrainConfig,
                    model_state: Mapping[str, torch.Tensor],
                    optimizer_state: Mapping[str, Any] | None = None,
                    scheduler_state: Mapping[str, Any] | None = None,
                    step: int = 0, epoch: float = 0.0, total_steps: int = 0,
                    rng: Mapping[str, Any] | None = None,
                    history: list[dict[str, Any]] | None = None,
                    best_recall: float | None = None,
                    extra: Mapping[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically (temp file in the same folder + ``os.replace``).

    Tensors are moved to CPU so the file loads on a machine without the training device.
    """
    p = Path(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "fusion": fusion.to_dict(),
        "train": train.to_dict(),
        "model": {k: v.detach().cpu() for k, v in model_state.items()},
        "optimizer": _to_cpu(optimizer_state) if optimizer_state is not None else None,
        "scheduler": dict(scheduler_state) if scheduler_state is not None else None,
        "step": int(step),
        "epoch": float(epoch),
        "total_steps": int(total_steps),
        "rng": _to_cpu(dict(rng)) if rng is not None else {},
        "history": list(history or []),
        "best_recall": None if best_recall is None else float(best_recall),
        "extra": dict(extra or {}),
    }
    with atomic_open(p, "wb") as f:
        torch.save(payload, f)
    return p


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
                    ) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` and check its layout.

    Returns the payload dict with ``fusion`` and ``train`` turned back into
    ``FusionConfig`` / ``TrainConfig`` objects. Anything else (missing file, a pickle of
    arbitrary objects, a plain state_dict, a corrupt zip) raises ``CheckpointError``
    "PATH is not a nas checkpoint: ...".
    """
    p = Path(path)

    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"{p} is not a nas checkpoint: {why}")

    if not p.exists():
        raise bad("file not found")
    if p.is_dir():
        raise bad("it is a directory")
    try:
        with warnings.catch_warnings():
            # a foreign pickle makes torch warn about its protocol before refusing it
            warnings.simplefilter("ignore", UserWarning)
            data = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to parse means "not ours"
        # weights_only refuses arbitrary objects with UnpicklingError; a truncated or
        # non-torch file gives RuntimeError/EOFError/BadZipFile.
        # Keep only torch's first line, and never pass on its advice to retry with
        # weights_only=False: that would mean unpickling a file we do not trust.
        lines = [ln for ln in str(e).strip().splitlines() if "weights_only" not in ln]
        first = lines[0] if lines else type(e).__name__
        if isinstance(e, pickle.UnpicklingError):
            first = "it holds objects other than tensors and plain containers"
        raise bad(f"cannot be read safely ({type(e).__name__}: {first[:200]}); it was "
                  "not unpickled") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise bad("no 'format: nas-checkpoint' marker (is it a plain state_dict?)")
    if data.get("version") != CHECKPOINT_VERSION:
        raise bad(f"unsupported version {data.get('version')!r} (this nas reads "
                  f"{CHECKPOINT_VERSION})")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise bad(f"missing key(s) {missing}")
    try:
        data["fusion"] = FusionConfig.from_dict(data["fusion"], source=f"{p} [fusion]")
        data["train"] = TrainConfig.from_dict(data["train"], source=f"{p} [train]")
    except ConfigError as e:
        raise bad(f"its config is invalid: {e}") from None
    if not isinstance(data["model"], dict):
        raise bad("'model' is not a state_dict")
    return data


def build_model_from_checkpoint(path: str | os.PathLike[str],
                                map_location: str | torch.device = "cpu"):
    """The model of a checkpoint, weights loaded, in eval mode; and the payload."""
    from nas.model import build_model

    ck = load_checkpoint(path, map_location=map_location)
    model = build_model(ck["fusion"])
    try:
        model.load_state_dict(ck["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the model its config builds: "
                              f"{str(e).splitlines()[0]}") from None
    model.to(map_location).eval()
    return model, ck


def _to_cpu(obj: Any) -> Any:
    """Recursively move tensors to CPU (optimizer states may live on the GPU)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, Mapping):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_cpu(v) for v in obj)
    return obj

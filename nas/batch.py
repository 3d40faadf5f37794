"""Plain tensor containers shared by data, model, evaluation and training.

Clips and texts travel separately: the honest scorer pairs them itself, so nothing
here ever couples a clip with "its own" caption.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

__all__ = ["ClipBatch", "TextBatch"]


class _TensorBundle:
    def to(self, device: torch.device | str, dtype: torch.dtype | None = None):
        """Move every tensor to ``device``; float tensors are cast to ``dtype`` if given."""
        out = {}
        for f in fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if isinstance(v, Tensor):
                cast = dtype if (dtype is not None and v.is_floating_point()) else None
                v = v.to(device, dtype=cast, non_blocking=True)
            out[f.name] = v
        return replace(self, **out)  # type: ignore[type-var]

    def index(self, idx: Tensor | slice):
        """Rows ``idx`` of every tensor (first dimension)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]
        return replace(self, **{k: v[idx] if isinstance(v, Tensor) else v  # type: ignore[type-var]
                                for k, v in values.items()})

    def __len__(self) -> int:
        first = getattr(self, fields(self)[0].name)  # type: ignore[arg-type]
        return int(first.shape[0])


@dataclass(frozen=True)
class ClipBatch(_TensorBundle):
    """N clips: frames [N,F,Dv], audio tokens [N,A,Da], masks (True = valid)."""

    video: Tensor  # [N, F, Dv] float
    video_mask: Tensor  # [N, F] bool
    audio: Tensor  # [N, A, Da] float
    audio_mask: Tensor  # [N, A] bool
    has_audio: Tensor  # [N] bool (False = silent / noise-only clip)
    labels: Tensor | None = None  # [N] int64 class labels (variant 8), optional


@dataclass(frozen=True)
class TextBatch(_TensorBundle):
    """M captions: tokens [M,T,Dt] and mask (True = valid)."""

    text: Tensor  # [M, T, Dt] float
    text_mask: Tensor  # [M, T] bool

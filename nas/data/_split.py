"""The in-memory (or memory-mapped) form of a retrieval dataset: Split, RetrievalData,
DataShapes."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nas.batch import ClipBatch, TextBatch

if TYPE_CHECKING:
    from nas.config import FusionConfig

__all__ = ["Split", "RetrievalData", "DataShapes"]


def _as_index(idx) -> np.ndarray:
    if isinstance(idx, torch.Tensor):
        idx = idx.detach().cpu().numpy()
    return np.asarray(idx, dtype=np.int64).reshape(-1)


def _tensor(a: np.ndarray, device, dtype: torch.dtype | None) -> torch.Tensor:
    # np.asarray turns a memmap slice into a plain array; from_numpy shares it, .to copies once.
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.to(device=device, dtype=dtype) if (dtype is not None or device is not None) else t


@dataclass(eq=False)
class Split:
    """One split: clips (video, audio) and captions, as numpy arrays.

    Arrays of feature directories are ``np.memmap``; batches are gathered from them on demand
    by :meth:`clip_batch` / :meth:`text_batch`. Masks are True where an entry is valid.
    """

    video: np.ndarray  # [N, F, Dv] float16/float32
    video_mask: np.ndarray  # [N, F] bool
    audio: np.ndarray  # [N, A, Da]
    audio_mask: np.ndarray  # [N, A] bool
    text: np.ndarray  # [M, T, Dt]
    text_mask: np.ndarray  # [M, T] bool
    text_clip: np.ndarray  # [M] int64, caption -> clip index
    has_audio: np.ndarray  # [N] bool
    labels: np.ndarray | None = None  # [N] int64

    @property
    def n_clips(self) -> int:
        """N, the number of clips."""
        return int(self.video.shape[0])

    @property
    def n_texts(self) -> int:
        """M, the number of captions."""
        return int(self.text.shape[0])

    def clip_batch(self, idx, device: torch.device | str | None = None,
                   dtype: torch.dtype = torch.float32) -> ClipBatch:
        """Clips ``idx`` (array of clip indices) as a :class:`ClipBatch` on ``device``."""
        i = _as_index(idx)
        return ClipBatch(
            video=_tensor(self.video[i], device, dtype),
            video_mask=_tensor(self.video_mask[i], device, None),
            audio=_tensor(self.audio[i], device, dtype),
            audio_mask=_tensor(self.audio_mask[i], device, None),
            has_audio=_tensor(self.has_audio[i], device, None),
            labels=None if self.labels is None else _tensor(self.labels[i], device, None),
        )

    def text_batch(self, idx, device: torch.device | str | None = None,
                   dtype: torch.dtype = torch.float32) -> TextBatch:
        """Captions ``idx`` (array of caption indices) as a :class:`TextBatch` on ``device``."""
        i = _as_index(idx)
        return TextBatch(text=_tensor(self.text[i], device, dtype),
                         text_mask=_tensor(self.text_mask[i], device, None))

    # ---- caption lookup -------------------------------------------------------------------
    @cached_property
    def _caption_csr(self) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(self.text_clip, kind="stable")
        counts = np.bincount(self.text_clip, minlength=self.n_clips)
        return order, np.concatenate([[0], np.cumsum(counts)])

    def captions_of(self, clip: int) -> np.ndarray:
        """Caption indices of one clip (possibly empty)."""
        order, offsets = self._caption_csr
        return order[offsets[clip]:offsets[clip + 1]]

    @property
    def clips_with_text(self) -> np.ndarray:
        """Indices of clips that have at least one caption."""
        _, offsets = self._caption_csr
        return np.flatnonzero(np.diff(offsets) > 0)

    def sample_captions(self, clips, rng: np.random.Generator) -> np.ndarray:
        """One random caption per clip in ``clips`` (every clip must have a caption)."""
        order, offsets = self._caption_csr
        c = _as_index(clips)
        counts = offsets[c + 1] - offsets[c]
        if (counts == 0).any():
            raise ValueError(f"clip {int(c[counts == 0][0])} has no caption")
        pick = (rng.random(len(c)) * counts).astype(np.int64)
        return order[offsets[c] + pick]

    def subset(self, clips) -> "Split":
        """A new split with clips ``clips`` (in that order) and all their captions.

        Gathers into memory (fancy indexing a memmap copies the rows).
        """
        c = _as_index(clips)
        remap = np.full(self.n_clips, -1, dtype=np.int64)
        remap[c] = np.arange(len(c))
        keep = np.flatnonzero(remap[self.text_clip] >= 0)
        return Split(
            video=np.asarray(self.video[c]), video_mask=self.video_mask[c],
            audio=np.asarray(self.audio[c]), audio_mask=self.audio_mask[c],
            text=np.asarray(self.text[keep]), text_mask=self.text_mask[keep],
            text_clip=remap[self.text_clip[keep]], has_audio=self.has_audio[c],
            labels=None if self.labels is None else self.labels[c],
        )


@dataclass(frozen=True)
class DataShapes:
    """Feature dims and sequence lengths the model and the cost model are built for."""

    video_dim: int
    audio_dim: int
    text_dim: int
    frames: int
    audio_tokens: int
    text_tokens: int


def model_inputs(shapes: Any) -> dict[str, int]:
    """The FusionConfig fields that must match the data (its feature widths and frame count).

    ``shapes`` is a :class:`DataShapes` or anything with the same attributes. The one
    place that maps data shapes onto model input sizes (training, cost model, search, benches).
    """
    return {"video_dim": int(shapes.video_dim), "audio_dim": int(shapes.audio_dim),
            "text_dim": int(shapes.text_dim), "max_frames": max(int(shapes.frames), 1)}


def fit_to_data(fusion: FusionConfig, shapes: Any) -> tuple[FusionConfig, list[str]]:
    """The config with its input sizes set from the data; and what changed, in words.

    ``video_dim``, ``audio_dim``, ``text_dim`` must equal the feature widths, and
    ``max_frames`` the data's frame count (it sizes the frame position embedding).
    Training and the cost model both build their model from this config.
    """
    changes = {k: v for k, v in model_inputs(shapes).items() if getattr(fusion, k) != v}
    notes = [f"{k}: {getattr(fusion, k)} -> {v} (from the data)" for k, v in changes.items()]
    return (fusion.replace(**changes) if changes else fusion), notes


@dataclass(eq=False)
class RetrievalData:
    """A dataset: train and val splits (test optional), and the spec it was loaded from."""

    name: str
    train: Split
    val: Split
    test: Split | None = None

    @property
    def splits(self) -> dict[str, Split]:
        """The splits present, by name."""
        out = {"train": self.train, "val": self.val}
        if self.test is not None:
            out["test"] = self.test
        return out

    @property
    def shapes(self) -> DataShapes:
        """Dims (equal across splits) and the longest sequence lengths over all splits."""
        s = list(self.splits.values())
        return DataShapes(
            video_dim=int(self.train.video.shape[2]),
            audio_dim=int(self.train.audio.shape[2]),
            text_dim=int(self.train.text.shape[2]),
            frames=max(int(x.video.shape[1]) for x in s),
            audio_tokens=max(int(x.audio.shape[1]) for x in s),
            text_tokens=max(int(x.text.shape[1]) for x in s),
        )

"""Feature directories: the on-disk format of real data, its reader, validator and writer.

Layout (one ``.npy`` per array; N clips, M captions)::

    DIR/train/            required
    DIR/val/              optional: carved from train when absent (see below)
    DIR/test/             optional
        video.npy       [N, F, Dv]  float16 or float32          required
        audio.npy       [N, A, Da]  float16 or float32          required
        text.npy        [M, T, Dt]  float16 or float32          required
        text_clip.npy   [M]   integer, caption -> clip in [0, N)   (identity when absent; M == N)
        video_mask.npy  [N, F] bool or 0/1 integers, True = valid  (all valid when absent)
        audio_mask.npy  [N, A]
        text_mask.npy   [M, T]
        has_audio.npy   [N]   bool or 0/1 (all True when absent)
        labels.npy      [N]   integer class ids (variant 8; None when absent)

Files are opened with ``np.load(mmap_mode="r", allow_pickle=False)``: features stay
memory-mapped, nothing is ever unpickled (object arrays are refused). Masks, indices and
flags are small and are loaded into memory as bool / int64.

Everything is checked before any training starts, and each problem raises
:class:`nas.errors.DataError` naming the file and the problem: missing file or split
directory, unreadable / object / pickled array, wrong rank, shape mismatch between arrays,
wrong dtype, NaN or inf (scanned in chunks, so big memmaps are never loaded whole), caption
index out of range, empty split, a video or text mask row with no valid entry, and an audio
mask row with no valid entry on a clip flagged has-audio. (A has-audio = 0 clip with an
empty audio mask gets its first token marked valid, so attention over it stays defined;
the has-audio flag already tells the model to ignore it.) Feature dims must agree across
splits; frame / token counts may differ (``RetrievalData.shapes`` reports the largest).

**Missing val split**: carved deterministically from train: a permutation of the train
clips by ``np.random.default_rng(0)``, its last 10% (at least one clip) become val with all
their captions, both parts keep file order. Carving gathers both parts into memory; give an
explicit ``val/`` for data too big for that.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Literal, overload

import numpy as np

from nas.data._split import RetrievalData, Split
from nas.errors import DataError

__all__ = ["read_feature_dir", "read_split", "write_feature_dir", "carve_val",
           "VAL_FRACTION", "VAL_SEED"]

VAL_FRACTION = 0.1
VAL_SEED = 0
_FLOATS = (np.dtype(np.float16), np.dtype(np.float32))
_SCAN_ELEMENTS = 1 << 23  # elements per chunk of the NaN/inf scan (32 MiB of float32)


# ------------------------------------------------------------------------------- reading --
@overload
def _load(d: str, fname: str, required: Literal[True]) -> np.ndarray: ...


@overload
def _load(d: str, fname: str, required: Literal[False]) -> np.ndarray | None: ...


def _load(d: str, fname: str, required: bool) -> np.ndarray | None:
    path = os.path.join(d, fname)
    if not os.path.exists(path):
        if required:
            raise DataError(f"{path}: missing file")
        return None
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        mmap_error = e
    except OSError as e:
        raise DataError(f"{path}: cannot be read as a .npy array ({e})") from None
    # np.memmap refuses empty arrays: read those plainly (still never unpickling).
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataError(f"{path}: not a plain numeric .npy array ({e}); object arrays and "
                        "pickles are refused") from None
    if arr.dtype.hasobject:
        raise DataError(f"{path}: object arrays are refused ({mmap_error})")
    return arr


def _rank(a: np.ndarray, path: str, ndim: int, dims: str) -> None:
    if a.ndim != ndim:
        raise DataError(f"{path}: wrong rank: expected {ndim}-D {dims}, got shape {a.shape}")


def _float(a: np.ndarray, path: str) -> None:
    if a.dtype not in _FLOATS:
        raise DataError(f"{path}: wrong dtype {a.dtype}: features must be float16 or float32")


def _finite(a: np.ndarray, path: str, what: str) -> None:
    rows = max(1, _SCAN_ELEMENTS // max(1, int(np.prod(a.shape[1:]))))
    for s in range(0, a.shape[0], rows):
        block = np.asarray(a[s:s + rows])
        ok = np.isfinite(block).reshape(len(block), -1).all(axis=1)
        if not ok.all():
            first = s + int(np.argmin(ok))
            raise DataError(f"{path}: contains NaN or inf (first at {what} {first})")


def _flags(a: np.ndarray, path: str) -> np.ndarray:
    """A bool array from bool or 0/1 integer data."""
    if a.dtype == np.bool_:
        return np.array(a, dtype=bool)  # a writable in-memory copy, not a memmap view
    if not np.issubdtype(a.dtype, np.integer):
        raise DataError(f"{path}: wrong dtype {a.dtype}: expected bool or 0/1 integers")
    v = np.asarray(a)
    if v.size and (v.min() < 0 or v.max() > 1):
        raise DataError(f"{path}: values must be 0 or 1, found {int(v.min())}..{int(v.max())}")
    return v.astype(bool)


def _shape(a: np.ndarray, path: str, want: tuple[int, ...], names: str, other: str) -> None:
    if tuple(a.shape) != tuple(want):
        raise DataError(f"{path}: shape mismatch: expected {names} = {tuple(want)} to match "
                        f"{other}, got {tuple(a.shape)}")


def read_split(d: str) -> Split:
    """Read and validate one split directory (``DIR/train`` etc.)."""
    p = lambda f: os.path.join(d, f)  # noqa: E731
    video = _load(d, "video.npy", True)
    audio = _load(d, "audio.npy", True)
    text = _load(d, "text.npy", True)
    _rank(video, p("video.npy"), 3, "[N, F, Dv]")
    _rank(audio, p("audio.npy"), 3, "[N, A, Da]")
    _rank(text, p("text.npy"), 3, "[M, T, Dt]")
    for a, f in ((video, "video.npy"), (audio, "audio.npy"), (text, "text.npy")):
        _float(a, p(f))
    n, f_, _ = video.shape
    m, t, _ = text.shape
    if n == 0:
        raise DataError(f"{p('video.npy')}: empty split: 0 clips")
    if m == 0:
        raise DataError(f"{p('text.npy')}: empty split: 0 captions")
    if audio.shape[0] != n:
        raise DataError(f"{p('audio.npy')}: shape mismatch: {audio.shape[0]} clips, "
                        f"video.npy has {n}")
    a_ = audio.shape[1]
    if f_ == 0 or a_ == 0 or t == 0:
        raise DataError(f"{d}: frames F={f_}, audio tokens A={a_}, text tokens T={t}: "
                        "each must be >= 1")

    # ---- caption -> clip index ------------------------------------------------------------
    tc = _load(d, "text_clip.npy", False)
    if tc is None:
        if m != n:
            raise DataError(f"{p('text_clip.npy')}: missing file: required when text.npy has "
                            f"a different number of captions ({m}) than clips ({n})")
        text_clip = np.arange(n, dtype=np.int64)
    else:
        _rank(tc, p("text_clip.npy"), 1, "[M]")
        if not np.issubdtype(tc.dtype, np.integer):
            raise DataError(f"{p('text_clip.npy')}: wrong dtype {tc.dtype}: expected integers")
        _shape(tc, p("text_clip.npy"), (m,), "[M]", "text.npy")
        text_clip = np.asarray(tc).astype(np.int64)
        bad = np.flatnonzero((text_clip < 0) | (text_clip >= n))
        if len(bad):
            raise DataError(f"{p('text_clip.npy')}: caption index out of range: caption "
                            f"{int(bad[0])} points to clip {int(text_clip[bad[0]])}, "
                            f"valid clips are 0..{n - 1}")

    # ---- masks and flags --------------------------------------------------------------------
    def mask(fname: str, want: tuple[int, int], names: str, other: str) -> np.ndarray:
        raw = _load(d, fname, False)
        if raw is None:
            return np.ones(want, dtype=bool)
        _rank(raw, p(fname), 2, names)
        _shape(raw, p(fname), want, names, other)
        return _flags(raw, p(fname))

    video_mask = mask("video_mask.npy", (n, f_), "[N, F]", "video.npy")
    audio_mask = mask("audio_mask.npy", (n, a_), "[N, A]", "audio.npy")
    text_mask = mask("text_mask.npy", (m, t), "[M, T]", "text.npy")
    for mk, fname, what in ((video_mask, "video_mask.npy", "clip"),
                            (text_mask, "text_mask.npy", "caption")):
        empty_rows = np.flatnonzero(~mk.any(axis=1))
        if len(empty_rows):
            raise DataError(f"{p(fname)}: {what} {int(empty_rows[0])} has no valid entry "
                            f"({len(empty_rows)} such rows)")
    raw = _load(d, "has_audio.npy", False)
    if raw is None:
        has_audio = np.ones(n, dtype=bool)
    else:
        _rank(raw, p("has_audio.npy"), 1, "[N]")
        _shape(raw, p("has_audio.npy"), (n,), "[N]", "video.npy")
        has_audio = _flags(raw, p("has_audio.npy"))
    empty = ~audio_mask.any(axis=1)
    if (empty & has_audio).any():
        i = int(np.flatnonzero(empty & has_audio)[0])
        raise DataError(f"{p('audio_mask.npy')}: clip {i} has no valid audio token but "
                        "has_audio is true (set has_audio.npy to 0 for silent clips)")
    audio_mask[empty, 0] = True  # silent clips: keep attention defined, has_audio says ignore
    labels = _load(d, "labels.npy", False)
    if labels is not None:
        _rank(labels, p("labels.npy"), 1, "[N]")
        if not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"{p('labels.npy')}: wrong dtype {labels.dtype}: expected integers")
        _shape(labels, p("labels.npy"), (n,), "[N]", "video.npy")
        labels = np.asarray(labels).astype(np.int64)

    # ---- values last: the scan reads every byte ---------------------------------------------
    _finite(video, p("video.npy"), "clip")
    _finite(audio, p("audio.npy"), "clip")
    _finite(text, p("text.npy"), "caption")
    return Split(video=video, video_mask=video_mask, audio=audio, audio_mask=audio_mask,
                 text=text, text_mask=text_mask, text_clip=text_clip, has_audio=has_audio,
                 labels=labels)


def carve_val(train: Split, fraction: float = VAL_FRACTION, seed: int = VAL_SEED,
              source: str = "train") -> tuple[Split, Split]:
    """Split ``train`` into (train, val): the last ``fraction`` of a seeded clip permutation."""
    n = train.n_clips
    if n < 2:
        raise DataError(f"{source}: cannot carve a validation split from {n} clip(s); "
                        "add a val/ directory or more clips")
    n_val = min(n - 1, max(1, int(round(fraction * n))))
    perm = np.random.default_rng(seed).permutation(n)
    return train.subset(np.sort(perm[:-n_val])), train.subset(np.sort(perm[-n_val:]))


def read_feature_dir(path: str, name: str | None = None) -> RetrievalData:
    """Read and validate a feature directory (module docstring); carve val if absent."""
    path = os.path.expanduser(path)
    if not os.path.isdir(path):
        raise DataError(f"{path}: not a directory")
    splits: dict[str, Split] = {}
    for s in ("train", "val", "test"):
        d = os.path.join(path, s)
        if os.path.isdir(d):
            splits[s] = read_split(d)
        elif s == "train":
            raise DataError(f"{d}: missing split directory (train/ is required)")
    ref = splits["train"]
    for s, sp in splits.items():
        for arr, f in ((sp.video, "video.npy"), (sp.audio, "audio.npy"), (sp.text, "text.npy")):
            want = getattr(ref, f[:-4]).shape[2]
            if arr.shape[2] != want:
                raise DataError(f"{os.path.join(path, s, f)}: feature dim {arr.shape[2]} differs "
                                f"from train/{f} ({want})")
        if (sp.labels is None) != (ref.labels is None):
            raise DataError(f"{os.path.join(path, s, 'labels.npy')}: labels present in some "
                            "splits only")
    if "val" not in splits:
        splits["train"], splits["val"] = carve_val(splits["train"],
                                                   source=os.path.join(path, "train"))
    return RetrievalData(name=name or path, train=splits["train"], val=splits["val"],
                         test=splits.get("test"))


# ------------------------------------------------------------------------------- writing --
def _write_split(split: Split, d: str) -> None:
    os.makedirs(d, exist_ok=True)
    arrays = {"video": split.video, "audio": split.audio, "text": split.text,
              "text_clip": np.asarray(split.text_clip, dtype=np.int64),
              "video_mask": split.video_mask, "audio_mask": split.audio_mask,
              "text_mask": split.text_mask, "has_audio": split.has_audio}
    if split.labels is not None:
        arrays["labels"] = np.asarray(split.labels, dtype=np.int64)
    for k, v in arrays.items():
        np.save(os.path.join(d, f"{k}.npy"), np.asarray(v), allow_pickle=False)


def write_feature_dir(data: RetrievalData | Split, path: str, overwrite: bool = False) -> str:
    """Write a dataset (``DIR/{train,val[,test]}/``) or one split (files in ``DIR``).

    Written to a temporary sibling directory first and renamed into place, so a crash never
    leaves a half-written directory. An existing non-empty ``path`` is replaced only with
    ``overwrite=True``. Returns ``path``.
    """
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)) and not overwrite:
        raise DataError(f"{path}: already exists and is not empty (pass overwrite=True)")
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    try:
        if isinstance(data, Split):
            _write_split(data, tmp)
        else:
            for s, sp in data.splits.items():
                _write_split(sp, os.path.join(tmp, s))
        old = None
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=parent)
            os.replace(path, os.path.join(old, "x"))
        os.replace(tmp, path)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path

"""``--data digits``: a tri-modal retrieval set from real signals, shipped with the package.

Clips show three handwritten digits (scikit-learn's bundled 8x8 digit images) one after the
other, each for two frames with a small random shift, and most of them play a spoken digit
(a Free Spoken Digit Dataset recording, CC BY-SA 4.0: see ``digits/NOTICE.md``). Captions
name what is seen and what is heard ("shows 3 5 7 says five"); silent clips (has_audio = 0)
have captions without sound words, and 40% of the clips come in pairs with the same frames
and a different spoken digit, told apart only by their sound. Speakers are disjoint across
splits; images are disjoint too (contiguous blocks of the file order, a proxy for writers).
docs/data.md has the construction, the licence and the validation figures.

Specs: ``digits`` or ``digits:train_clips=600,val_clips=200,test_clips=0`` (the first clips
of each split, for fast runs; ``test_clips=0`` drops the test split) and ``file=PATH`` (a
copy built with ``nas data build-digits``; default: the shipped one). The file's sha256
must match its ``.sha256`` beside it.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from nas.data._split import RetrievalData, Split
from nas.errors import DataError

__all__ = ["DigitsSpec", "load_digits_data", "shipped_path", "digits_spec_from_options",
           "read_checked"]

_SPLITS = ("train", "val", "test")
REBUILD = ("rebuild it with `nas data build-digits --fsdd DIR` (DIR: the Free Spoken Digit "
           "Dataset's recordings/ folder) or reinstall nas")


def shipped_path() -> Path:
    """The copy inside the package: ``nas/data/digits/digits.npz``."""
    return Path(__file__).resolve().parent / "digits" / "digits.npz"


@dataclass(frozen=True)
class DigitsSpec:
    """Which clips of the digits set to load (None = all of that split) and from which file."""

    train_clips: int | None = None
    val_clips: int | None = None
    test_clips: int | None = None
    file: str | None = None

    def __post_init__(self) -> None:
        for k, low in (("train_clips", 2), ("val_clips", 1), ("test_clips", 0)):
            v = getattr(self, k)
            if v is not None and v < low:
                raise DataError(f"digits data: {k}={v}: must be >= {low}")


def digits_spec_from_options(options: dict[str, str], source: str = "digits") -> DigitsSpec:
    """A :class:`DigitsSpec` from ``key=value`` strings; DataError naming a bad key or value."""
    values: dict[str, Any] = {}
    for key, raw in options.items():
        if key == "file":
            values[key] = raw
        elif key in ("train_clips", "val_clips", "test_clips"):
            try:
                values[key] = int(raw)
            except ValueError:
                raise DataError(f"{source}: {key}={raw!r} is not a valid int") from None
        else:
            raise DataError(f"{source}: unknown key {key!r}; known keys: train_clips, "
                            "val_clips, test_clips, file")
    try:
        return DigitsSpec(**values)
    except DataError as e:
        raise DataError(f"{source}: {str(e).removeprefix('digits data: ')}") from None


def read_checked(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a digits ``.npz`` whose sha256 matches ``path.sha256``; DataError if not."""
    if not path.is_file():
        raise DataError(f"{path}: digits data file does not exist; {REBUILD}")
    sidecar = path.with_name(path.name + ".sha256")
    if not sidecar.is_file():
        raise DataError(f"{sidecar}: checksum file missing; {REBUILD}")
    data = path.read_bytes()
    want = (sidecar.read_text().split() or [""])[0]
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise DataError(f"{path}: checksum mismatch (sha256 {got[:16]}..., expected "
                        f"{want[:16] or 'nothing'}...): the file is damaged or was changed; "
                        f"{REBUILD}")
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@lru_cache(maxsize=2)
def _tables(path: str) -> dict[str, np.ndarray]:
    # Cached per process (search workers load the same spec for every trial); read-only.
    arrays = read_checked(Path(path))
    for a in arrays.values():
        a.flags.writeable = False
    return arrays


def _frames(images: np.ndarray, frame_image: np.ndarray, frame_shift: np.ndarray) -> np.ndarray:
    """Video ``[N, F, 64]`` float16: each frame's 8x8 image shifted by (dy, dx), zero-filled,
    divided by 16."""
    padded = np.pad(images.reshape(-1, 8, 8), ((0, 0), (1, 1), (1, 1)))
    out = np.zeros(frame_image.shape + (8, 8), dtype=np.uint8)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            sel = (frame_shift[..., 0] == dy) & (frame_shift[..., 1] == dx)
            out[sel] = padded[frame_image[sel], 1 - dy:9 - dy, 1 - dx:9 - dx]
    return (out.reshape(frame_image.shape + (64,)) / np.float32(16.0)).astype(np.float16)


def _split(t: dict[str, np.ndarray], name: str, n: int | None) -> tuple[Split, np.ndarray]:
    fi, fs = t[f"{name}.frame_image"], t[f"{name}.frame_shift"]
    rec, kind = t[f"{name}.clip_rec"], t[f"{name}.clip_kind"]
    cap_clip, cap_words = t[f"{name}.caption_clip"], t[f"{name}.caption_words"]
    total = len(rec)
    if n is not None:
        if n > total:
            raise DataError(f"digits data: {name}_clips={n}: the {name} split has {total} clips")
        keep = cap_clip < n
        fi, fs, rec, kind = fi[:n], fs[:n], rec[:n], kind[:n]
        cap_clip, cap_words = cap_clip[keep], cap_words[keep]
    has_audio = rec >= 0
    audio = t["audio"][np.maximum(rec, 0)] * has_audio[:, None, None].astype(np.float16)
    audio_mask = np.repeat(has_audio[:, None], audio.shape[1], axis=1)
    audio_mask[:, 0] = True  # a silent clip keeps one (zero) valid token: attention stays defined
    words = cap_words.astype(np.int64)
    text_mask = words >= 0
    text = t["word_vectors"][np.maximum(words, 0)] * text_mask[..., None].astype(np.float16)
    split = Split(video=_frames(t["images"], fi, fs), video_mask=np.ones(fi.shape, dtype=bool),
                  audio=audio, audio_mask=audio_mask, text=text, text_mask=text_mask,
                  text_clip=cap_clip.astype(np.int64), has_audio=has_audio,
                  labels=t["image_digit"][fi[:, 0]].astype(np.int64))
    return split, kind.astype(np.int64)


def load_digits_data(spec: DigitsSpec | None = None, name: str = "digits",
                     return_kinds: bool = False):
    """The digits data set of ``spec`` as :class:`RetrievalData` (float16 features).

    With ``return_kinds`` also returns ``{split: kinds}`` per clip (0 ordinary, 1 one of a
    sound-only pair, 2 silent) for analysis and tests.
    """
    spec = spec or DigitsSpec()
    path = Path(spec.file).expanduser() if spec.file else shipped_path()
    t = _tables(str(path.resolve()))
    sizes = {"train": spec.train_clips, "val": spec.val_clips, "test": spec.test_clips}
    splits, kinds = {}, {}
    for s in _SPLITS:
        if sizes[s] != 0:
            splits[s], kinds[s] = _split(t, s, sizes[s])
    data = RetrievalData(name=name, train=splits["train"], val=splits["val"],
                         test=splits.get("test"))
    return (data, kinds) if return_kinds else data

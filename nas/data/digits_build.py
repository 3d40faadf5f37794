"""The builder of the shipped ``digits`` data set: real handwritten and spoken digits.

``build_digits(fsdd_dir, out)`` reads the Free Spoken Digit Dataset WAVs and scikit-learn's
bundled handwritten digits, computes the features and composes the clips, and writes one
``.npz`` (plus a ``.sha256`` beside it). Same inputs, same bytes: arrays in a fixed order,
an uncompressed zip with fixed timestamps, features computed in float64 and rounded once to
float16, clip composition from a fixed seed. The loader (:mod:`nas.data.digits`) assembles
clips from the stored tables; docs/data.md describes the construction and its reasons.

What is stored (compact: each image and each recording once, clips as index tables):

- ``images`` ``[1797, 64]`` uint8 (8x8 pixels, 0..16) and ``image_digit``;
- ``audio`` ``[3000, A, 2*N_MELS]`` float16, one row of audio tokens per recording
  (standardised with the training speakers' mean and std), with
  ``rec_digit``, ``rec_speaker`` (index into ``speakers``), ``rec_index``;
- ``words`` and ``word_vectors`` ``[V, TEXT_DIM]`` float16: the caption vocabulary;
- per split ``S``: ``S.frame_image`` / ``S.frame_shift`` ``[N, F(, 2)]`` (which image each
  frame shows, shifted by how many pixels), ``S.clip_rec`` ``[N]`` (recording heard, -1 =
  silent), ``S.clip_kind`` ``[N]`` (0 ordinary, 1 sound-only pair, 2 silent),
  ``S.caption_clip`` ``[M]`` and ``S.caption_words`` ``[M, T]`` (word ids, -1 = padding).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import wave
import zipfile
from pathlib import Path

import numpy as np

from nas._io import atomic_open
from nas.errors import DataError, UserError

__all__ = ["build_arrays", "build_digits", "npz_bytes", "log_mel", "audio_tokens", "read_wav",
           "list_recordings", "FORMAT_VERSION", "SPEAKERS", "CLIPS", "IMAGE_SPLIT"]

FORMAT_VERSION = 1
SEED = 0

# ---- audio features (8 kHz speech) ---------------------------------------------------------
SAMPLE_RATE = 8000
WIN, HOP, NFFT = 200, 80, 256  # 25 ms Hann windows every 10 ms
N_MELS = 32
TRIM_DB = 30.0  # keep the span of frames within 30 dB of the loudest one
AUDIO_TOKENS = 8  # A: the trimmed word cut into 8 equal segments
CONTEXT_SEGMENTS, CONTEXT_BANDS = 4, 8  # the whole word's coarse outline, in every token

# ---- splits -------------------------------------------------------------------------------
# Speakers: disjoint across splits (alphabetical order; 4 / 1 / 1 of FSDD's 6 speakers).
SPEAKERS = {"train": ("george", "jackson", "lucas", "nicolas"), "val": ("theo",),
            "test": ("yweweler",)}
ALL_SPEAKERS = SPEAKERS["train"] + SPEAKERS["val"] + SPEAKERS["test"]  # speaker id = position
RECORDINGS_PER_DIGIT = 50  # per speaker: {digit}_{speaker}_{0..49}.wav
# Images: contiguous blocks of scikit-learn's file order (a writer proxy, see docs/data.md).
N_IMAGES = 1797
IMAGE_SPLIT = {"train": (0, 1078), "val": (1078, 1348), "test": (1348, 1797)}
CLIPS = {"train": 2000, "val": 500, "test": 1000}

# ---- clip composition ---------------------------------------------------------------------
SEEN = 3  # digits shown per clip, one after the other
FRAMES_PER_DIGIT = 2
FRAMES = SEEN * FRAMES_PER_DIGIT
PAIR_SHARE = 0.4  # clips in sound-only pairs: same frames, different spoken digit
SILENT_SHARE = 0.2  # has_audio = 0; captions do not mention sound
ORDINARY, SOUND_ONLY, SILENT = 0, 1, 2

# ---- captions -------------------------------------------------------------------------------
TEXT_DIM = 64
NUMERALS = tuple(str(d) for d in range(10))  # what is seen: "3"
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SEEN_VERBS, HEARD_VERBS = ("shows", "displays"), ("says", "speaks")
WORDS = NUMERALS + NUMBER_WORDS + SEEN_VERBS + HEARD_VERBS
TEXT_TOKENS = 1 + SEEN + 2  # verb, three numerals, verb, number word
CAPTIONS_PER_CLIP = 2
SHARED_DIGIT = 0.5  # weight of the component "3" and "three" share


# ------------------------------------------------------------------------------- the WAVs --
_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


def list_recordings(fsdd_dir: str | os.PathLike[str]) -> list[tuple[Path, int, int, int]]:
    """The expected recordings ``(path, digit, speaker id, index)`` in the fixed build order.

    Raises :class:`DataError` if the folder is missing, holds no ``.wav`` file, or lacks one
    of the 3,000 expected ones (other files are ignored).
    """
    d = Path(fsdd_dir).expanduser()
    if not d.is_dir():
        what = "is not a directory" if d.exists() else "does not exist"
        raise DataError(f"{d}: FSDD recordings folder {what}")
    present = {p.name for p in d.iterdir() if p.suffix == ".wav"}
    if not present:
        raise DataError(f"{d}: FSDD recordings folder is empty (no .wav files; expected "
                        f"{{digit}}_{{speaker}}_{{index}}.wav)")
    out, missing = [], []
    for sid, spk in enumerate(ALL_SPEAKERS):
        for digit in range(10):
            for index in range(RECORDINGS_PER_DIGIT):
                name = f"{digit}_{spk}_{index}.wav"
                if name not in present:
                    missing.append(name)
                out.append((d / name, digit, sid, index))
    if missing:
        raise DataError(f"{d / missing[0]}: missing recording ({len(missing)} of the {len(out)} "
                        f"expected FSDD files are absent)")
    return out


def read_wav(path: Path) -> np.ndarray:
    """Samples of an 8 kHz mono 16-bit WAV as float64 in [-1, 1); DataError naming the file."""
    try:
        with wave.open(str(path), "rb") as w:
            ch, width = w.getnchannels(), w.getsampwidth()
            rate, n = w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError, OSError) as e:
        raise DataError(f"{path}: not a readable WAV file ({str(e) or type(e).__name__})") from None
    if rate != SAMPLE_RATE:
        raise DataError(f"{path}: sample rate {rate} Hz, expected {SAMPLE_RATE} Hz")
    if ch != 1 or width != 2:
        raise DataError(f"{path}: {ch} channel(s) of {8 * width}-bit samples, expected mono 16-bit")
    if len(raw) != 2 * n or n < WIN:
        raise DataError(f"{path}: truncated or too short ({len(raw) // 2} of {n} samples; at "
                        f"least {WIN} needed)")
    return np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0


def _mel_filterbank() -> np.ndarray:
    """Triangular filters ``[N_MELS, NFFT/2+1]`` evenly spaced on the mel scale, 0..4 kHz."""
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)  # noqa: E731
    edges = hz(np.linspace(mel(0.0), mel(SAMPLE_RATE / 2), N_MELS + 2))
    bins = np.fft.rfftfreq(NFFT, 1.0 / SAMPLE_RATE)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.clip(np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)), 0.0, None)


_FILTERS = _mel_filterbank()
_WINDOW = np.hanning(WIN)


def log_mel(x: np.ndarray) -> np.ndarray:
    """Log-mel frames ``[n, N_MELS]`` (natural log of mel power) of float64 samples."""
    x = x - x.mean()
    n = 1 + (len(x) - WIN) // HOP
    frames = x[np.arange(WIN)[None, :] + HOP * np.arange(n)[:, None]] * _WINDOW
    power = np.abs(np.fft.rfft(frames, NFFT)) ** 2
    return np.log(power @ _FILTERS.T + 1e-6)


def _segment_means(m: np.ndarray, k: int) -> np.ndarray:
    """``k`` equal time segments of ``m [n, B]`` (overlapping by a frame when n < k), averaged."""
    b = np.linspace(0.0, len(m), k + 1)
    lo = np.floor(b[:-1]).astype(int)
    hi = np.maximum(lo + 1, np.ceil(b[1:]).astype(int))
    return np.stack([m[a:z].mean(0) for a, z in zip(lo, hi)])


def audio_tokens(x: np.ndarray) -> np.ndarray:
    """Audio tokens ``[AUDIO_TOKENS, 2*N_MELS]`` of one spoken word (float64 samples).

    Log-mel frames, trimmed to the frames within ``TRIM_DB`` of the loudest, minus their mean
    (removes the recording's gain). Token j = [mean log-mel of the j-th of A equal segments
    of the word ; the word's coarse outline (4 segments x 8 band groups)]; the outline is
    the same in every token, as a contextual audio encoder's tokens carry the whole clip.
    """
    m = log_mel(x)
    energy = m.max(1)
    keep = np.flatnonzero(energy > energy.max() - TRIM_DB * np.log(10.0) / 10.0)
    m = m[keep[0]:keep[-1] + 1]
    m = m - m.mean()
    seg = _segment_means(m, AUDIO_TOKENS)
    outline = _segment_means(m, CONTEXT_SEGMENTS).reshape(CONTEXT_SEGMENTS, CONTEXT_BANDS, -1)
    outline = outline.mean(-1).reshape(-1)  # [4 * 8] = N_MELS values
    return np.concatenate([seg, np.broadcast_to(outline, (AUDIO_TOKENS, outline.size))], axis=1)


# --------------------------------------------------------------------------- the images --
def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UserError("building the digits data needs scikit-learn: "
                        "pip install 'nas[data]'") from None
    d = load_digits()
    images = np.asarray(d.data).astype(np.uint8)
    if images.shape != (N_IMAGES, 64):
        raise DataError(f"sklearn.datasets.load_digits: expected {N_IMAGES} 8x8 images, got "
                        f"{images.shape}")
    return images, np.asarray(d.target).astype(np.int8)


# ---------------------------------------------------------------------------- captions --
def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _word_vectors(rng: np.random.Generator) -> np.ndarray:
    """A seeded vector per word; "3" and "three" share a digit component (weight SHARED_DIGIT)."""
    digit = _unit(rng.standard_normal((10, TEXT_DIM)))
    own = _unit(rng.standard_normal((len(WORDS), TEXT_DIM)))
    shared = np.zeros_like(own)
    shared[:10] = shared[10:20] = digit
    return _unit(own + SHARED_DIGIT * shared)


def _caption_words(seen: np.ndarray, heard: int, variant: int) -> list[int]:
    """Word ids of one caption: "shows 3 5 7 says five" (no sound words when ``heard`` < 0)."""
    order = seen if variant % 2 == 0 else seen[::-1]
    words = [WORDS.index(SEEN_VERBS[variant])] + [int(d) for d in order]
    if heard >= 0:
        words += [WORDS.index(HEARD_VERBS[variant]), 10 + heard]
    return words + [-1] * (TEXT_TOKENS - len(words))


# ------------------------------------------------------------------------- composition --
def _compose(rng: np.random.Generator, n: int, unique: bool) -> tuple[list, np.ndarray]:
    """Plans of ``n`` clips: (seen digits [SEEN], heard digit or -1, kind, pair partner or -1).

    With ``unique``, no two clips share a caption (the multiset of seen digits and the heard
    digit), so a perfect model ranks every caption's clip first: no ties.
    """
    pairs, silent = round(PAIR_SHARE * n / 2), round(SILENT_SHARE * n)
    used: set[tuple] = set()

    def key(seen: np.ndarray, heard: int) -> tuple:
        return tuple(sorted(int(d) for d in seen)) + (heard,)

    def draw(heards: int) -> tuple[np.ndarray, list[int]]:
        for _ in range(10_000):
            seen = rng.integers(0, 10, size=SEEN)
            heard = [int(h) for h in rng.permutation(10)[:heards]] if heards else [-1]
            keys = [key(seen, h) for h in heard]
            if not unique or not used.intersection(keys):
                used.update(keys)
                return seen, heard
        raise RuntimeError("digits builder: cannot compose unique captions; lower CLIPS")

    plans: list[tuple[np.ndarray, int, int, int]] = []
    for _ in range(pairs):
        seen, (h1, h2) = draw(2)
        i = len(plans)
        plans += [(seen, h1, SOUND_ONLY, i + 1), (seen, h2, SOUND_ONLY, i)]
    plans += [(s, h[0], ORDINARY, -1) for s, h in (draw(1) for _ in range(n - 2 * pairs - silent))]
    plans += [(s, -1, SILENT, -1) for s, _ in (draw(0) for _ in range(silent))]
    return plans, rng.permutation(n)


def _split_tables(rng: np.random.Generator, split: str, n: int, image_digit: np.ndarray,
                  rec_digit: np.ndarray, rec_speaker: np.ndarray) -> dict[str, np.ndarray]:
    plans, order = _compose(rng, n, unique=split != "train")
    a, z = IMAGE_SPLIT[split]
    pool = [a + np.flatnonzero(image_digit[a:z] == d) for d in range(10)]
    ids = [ALL_SPEAKERS.index(s) for s in SPEAKERS[split]]
    recs = [np.flatnonzero((rec_digit == d) & np.isin(rec_speaker, ids)) for d in range(10)]
    rec_queue = [rng.permutation(r) for r in recs]
    rec_used = [0] * 10

    frame_image = np.zeros((n, FRAMES), dtype=np.int16)
    frame_shift = np.zeros((n, FRAMES, 2), dtype=np.int8)
    clip_rec = np.full(n, -1, dtype=np.int16)
    kind = np.zeros(n, dtype=np.int8)
    for i, (seen, heard, k, partner) in enumerate(plans):
        kind[i] = k
        if k == SOUND_ONLY and partner < i:  # the second of a pair: the same frames
            frame_image[i], frame_shift[i] = frame_image[partner], frame_shift[partner]
        else:
            picks = [pool[d][rng.integers(len(pool[d]))] for d in seen]
            frame_image[i] = np.repeat(picks, FRAMES_PER_DIGIT)
            frame_shift[i] = rng.integers(-1, 2, size=(FRAMES, 2))
        if heard >= 0:  # recordings of a digit are used in turn, so reuse is even
            q = rec_queue[heard]
            clip_rec[i] = q[rec_used[heard] % len(q)]
            rec_used[heard] += 1

    captions = [(i, _caption_words(seen, heard, v)) for i, (seen, heard, _, _) in enumerate(plans)
                for v in range(CAPTIONS_PER_CLIP)]
    # Clip order shuffled so pairs and kinds are not contiguous; captions follow their clip.
    new = np.empty(n, dtype=np.int64)
    new[order] = np.arange(n)
    cap_clip = new[np.array([c for c, _ in captions])]
    cap_order = np.argsort(cap_clip, kind="stable")
    return {
        f"{split}.frame_image": frame_image[order],
        f"{split}.frame_shift": frame_shift[order],
        f"{split}.clip_rec": clip_rec[order],
        f"{split}.clip_kind": kind[order],
        f"{split}.caption_clip": cap_clip[cap_order].astype(np.int32),
        f"{split}.caption_words": np.array([w for _, w in captions], dtype=np.int8)[cap_order],
    }


# ------------------------------------------------------------------------------- build --
def build_arrays(fsdd_dir: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every array of the data set, in the fixed order they are stored (validates the WAVs)."""
    recordings = list_recordings(fsdd_dir)
    audio = np.stack([audio_tokens(read_wav(p)) for p, *_ in recordings])
    rec_digit = np.array([r[1] for r in recordings], dtype=np.int8)
    rec_speaker = np.array([r[2] for r in recordings], dtype=np.int8)
    # Standardise each feature with the training speakers' statistics (mean 0, std 1 there).
    fit = audio[rec_speaker < len(SPEAKERS["train"])].reshape(-1, audio.shape[-1])
    audio = ((audio - fit.mean(0)) / fit.std(0)).astype(np.float16)
    rec_index = np.array([r[3] for r in recordings], dtype=np.int8)
    images, image_digit = _sklearn_digits()
    text_seq, *split_seqs = np.random.SeedSequence(SEED).spawn(4)
    arrays: dict[str, np.ndarray] = {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "images": images, "image_digit": image_digit,
        "audio": audio, "rec_digit": rec_digit, "rec_speaker": rec_speaker,
        "rec_index": rec_index,
        "speakers": np.array(ALL_SPEAKERS),
        "words": np.array(WORDS),
        "word_vectors": _word_vectors(np.random.default_rng(text_seq)).astype(np.float16),
    }
    for split, seq in zip(("train", "val", "test"), split_seqs):
        arrays.update(_split_tables(np.random.default_rng(seq), split, CLIPS[split],
                                    image_digit, rec_digit, rec_speaker))
    return arrays


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` (readable by ``np.load``) whose bytes depend only on the arrays.

    ``np.savez`` stamps each member with the current time; here every member has a fixed
    date and is stored uncompressed (no dependence on the zlib version either).
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for name, a in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(a), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = 0o644 << 16
            z.writestr(info, member.getvalue())
    return buf.getvalue()


def build_digits(fsdd_dir: str | os.PathLike[str], out: str | os.PathLike[str]) -> tuple[Path, str]:
    """Build the data set and write ``out`` and ``out.sha256``; returns (path, sha256).

    Everything is read and checked before anything is written, and each file is written
    atomically, so a bad input leaves ``out`` as it was.
    """
    out = Path(out).expanduser()
    if out.is_dir():
        raise UserError(f"--out {out}: is a directory; give the .npz file to write")
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: folder {out.parent} does not exist")
    data = npz_bytes(build_arrays(fsdd_dir))
    digest = hashlib.sha256(data).hexdigest()
    with atomic_open(out, "wb") as f:
        f.write(data)
    with atomic_open(out.with_name(out.name + ".sha256"), "w") as f:
        f.write(f"{digest}  {out.name}\n")
    return out, digest

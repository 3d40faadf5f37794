"""The embedded synthetic tri-modal retrieval set, generated in memory from a seed.

The generative story (all parameters are fields of :class:`SyntheticSpec`):

- **Concepts.** ``visual_concepts`` + ``audio_concepts`` random unit vectors in a shared
  latent space of ``latent_dim``. Each modality sees them through its own fixed random
  projection (latent -> video_dim / audio_dim / text_dim), so a model has to *learn* the
  alignment between modalities; raw features of different modalities are not comparable.
- **Clips.** Every clip shows three visual concepts (its main concept, which is also its
  class label for variant 8, and two secondary ones) in contiguous runs of frames, in a
  random order: different frames show different concepts. Each clip has a random valid
  length of ``ceil(min_valid * F)`` .. ``F`` frames (the rest is zero padding, masked), a
  clip-specific "style" offset and per-frame noise.
- **Audio.** An audible clip has one audio concept, heard in its valid audio tokens (random
  valid length like frames, random per-token loudness, plus noise). Clip kinds:
  * ``audio_decisive_share`` of the clips come in groups of ``twins`` clips that show the
    *same* three visual concepts and differ only by their (distinct) audio concepts; their
    captions always name the sound. Without audio these clips are confusable (at best one
    in ``twins`` retrieved at rank 1).
  * ``silent_share`` of the clips have ``has_audio = False``: half of them silent (near
    zero audio), half noise-only (noise of the audio noise level, no concept); their
    captions never mention sound.
  * the rest are ordinary audible clips whose captions name the sound with probability
    ``audio_mention``.
- **Captions.** ``min_captions`` .. ``max_captions`` per clip. A caption names the main
  visual concept, each secondary one with probability ``secondary_mention``, and the sound
  as above, in random order. Named concepts are spread over the first ``min(T, #named)``
  text tokens (several concepts share a token when T is small, e.g. T = 1 as with CLIP's
  end-of-text embedding); with room left, one filler (noise-only) token may follow. Text
  noise is added to every valid token; padding tokens are zero and masked.

Arrays are float16 by default (``dtype``) and generated in chunks of clips, so the memory
peak stays near the size of the result. :meth:`SyntheticSpec.nbytes` estimates it and
generation refuses specs above ``max_gib``. Presets: ``default`` (a few seconds of proxy
training on a 2-core CPU) and ``msrvtt`` (MSR-VTT-like shapes for performance work: 9000 /
1000 / 1000 clips, F = 12, D = 512, T = 32, A = 128 audio tokens; ``audio_tokens=1370``
works too with fewer clips, about 1.4 MB per clip at width 512).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from nas.data._split import RetrievalData, Split
from nas.errors import DataError

__all__ = ["SyntheticSpec", "PRESETS", "make_synthetic", "make_split", "linear_probe",
           "probe_scores", "world_of"]

# Clip kinds.
NORMAL, DECISIVE, SILENT = 0, 1, 2


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of the synthetic set (defaults: the small set for CPU proxy searches)."""

    seed: int = 0
    clips: int = 600  # train clips
    val_clips: int = 200
    test_clips: int = 200  # 0 = no test split
    frames: int = 8  # F
    audio_tokens: int = 16  # A
    text_tokens: int = 4  # T
    video_dim: int = 64
    audio_dim: int = 64
    text_dim: int = 64
    latent_dim: int = 32
    visual_concepts: int = 48
    audio_concepts: int = 24
    min_captions: int = 3
    max_captions: int = 5
    audio_decisive_share: float = 0.3
    twins: int = 3  # clips per visually identical group among the audio-decisive clips
    silent_share: float = 0.2
    audio_mention: float = 0.6  # P(caption of an ordinary audible clip names the sound)
    secondary_mention: float = 0.5  # P(caption names a given secondary visual concept)
    audio_strength: float = 1.0  # norm of the audio concept in an audio token
    frame_noise: float = 0.6  # noise norms (per token)
    audio_noise: float = 0.6
    text_noise: float = 0.3
    style_noise: float = 0.3  # per-clip offset shared by all its frames
    min_valid: float = 0.5  # shortest valid length as a fraction of F and A
    dtype: str = "float16"
    max_gib: float = 8.0  # refuse to generate more than this

    def __post_init__(self) -> None:
        def need(ok: bool, key: str, why: str) -> None:
            if not ok:
                raise DataError(f"synthetic data: {key}={getattr(self, key)!r}: {why}")

        for k in ("frames", "audio_tokens", "text_tokens", "video_dim", "audio_dim",
                  "text_dim", "latent_dim", "visual_concepts", "audio_concepts", "min_captions",
                  "twins"):
            need(getattr(self, k) >= 1, k, "must be >= 1")
        need(self.clips >= 2, "clips", "must be >= 2")
        need(self.val_clips >= 1, "val_clips", "must be >= 1")
        need(self.test_clips >= 0, "test_clips", "must be >= 0")
        need(self.max_captions >= self.min_captions, "max_captions",
             f"must be >= min_captions ({self.min_captions})")
        need(self.visual_concepts >= 3, "visual_concepts", "must be >= 3 (three per clip)")
        need(self.audio_concepts >= self.twins, "audio_concepts",
             f"must be >= twins ({self.twins}): twins need distinct sounds")
        for k in ("audio_decisive_share", "silent_share", "audio_mention", "secondary_mention",
                  "min_valid"):
            need(0.0 <= getattr(self, k) <= 1.0, k, "must be in [0, 1]")
        need(self.audio_decisive_share + self.silent_share <= 1.0, "silent_share",
             f"audio_decisive_share + silent_share must be <= 1, got "
             f"{self.audio_decisive_share} + {self.silent_share}")
        for k in ("audio_strength", "frame_noise", "audio_noise", "text_noise", "style_noise",
                  "max_gib"):
            need(getattr(self, k) >= 0.0, k, "must be >= 0")
        need(self.dtype in ("float16", "float32"), "dtype", "must be float16 or float32")

    def nbytes(self) -> int:
        """Expected size of the generated arrays in bytes (features; masks are minor)."""
        item = np.dtype(self.dtype).itemsize
        n = self.clips + self.val_clips + self.test_clips
        m = n * (self.min_captions + self.max_captions) / 2
        per_clip = self.frames * self.video_dim + self.audio_tokens * self.audio_dim
        return int(item * (n * per_clip + m * self.text_tokens * self.text_dim))


PRESETS: dict[str, dict] = {
    "default": {},
    "msrvtt": dict(clips=9000, val_clips=1000, test_clips=1000, frames=12, audio_tokens=128,
                   text_tokens=32, video_dim=512, audio_dim=512, text_dim=512, latent_dim=128,
                   visual_concepts=400, audio_concepts=150, min_captions=1, max_captions=2),
}


# ----------------------------------------------------------------------------- the world --
@dataclass
class _World:
    """What all splits of one seed share: concepts and the per-modality projections."""

    vis_video: np.ndarray  # [K, Dv] visual concepts as frames show them
    aud_audio: np.ndarray  # [K', Da] audio concepts as audio tokens carry them
    vis_text: np.ndarray  # [K, Dt] visual concepts as captions name them
    aud_text: np.ndarray  # [K', Dt]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _projection(rng: np.random.Generator, d_in: int, d_out: int) -> np.ndarray:
    # Orthonormal when d_out >= d_in: unit latent vectors stay unit vectors.
    g = rng.standard_normal((d_out, d_in))
    if d_out >= d_in:
        q, _ = np.linalg.qr(g)
        return q.T  # [d_in, d_out]
    return g.T / math.sqrt(d_out)


def _world(spec: SyntheticSpec, rng: np.random.Generator) -> _World:
    vis = _unit(rng.standard_normal((spec.visual_concepts, spec.latent_dim)))
    aud = _unit(rng.standard_normal((spec.audio_concepts, spec.latent_dim)))
    pv = _projection(rng, spec.latent_dim, spec.video_dim)
    pa = _projection(rng, spec.latent_dim, spec.audio_dim)
    pt = _projection(rng, spec.latent_dim, spec.text_dim)
    return _World(vis_video=vis @ pv, aud_audio=aud @ pa, vis_text=vis @ pt, aud_text=aud @ pt)


def _noise(rng: np.random.Generator, shape: tuple[int, ...], norm: float) -> np.ndarray:
    # Gaussian noise whose expected norm over the last dim is ``norm``.
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(norm / math.sqrt(shape[-1]))


def _valid_lengths(rng: np.random.Generator, n: int, full: int, min_frac: float) -> np.ndarray:
    lo = max(1, math.ceil(min_frac * full))
    return rng.integers(lo, full + 1, size=n)


# ----------------------------------------------------------------------------- one split --
def _clip_plan(spec: SyntheticSpec, n: int, rng: np.random.Generator):
    """Kinds, visual concepts [n,3] (main first), audio concept (-1 = none) per clip."""
    t = spec.twins
    n_groups = int(spec.audio_decisive_share * n) // t
    n_dec = n_groups * t
    n_sil = min(int(round(spec.silent_share * n)), n - n_dec)
    kinds = np.full(n, NORMAL, dtype=np.int64)
    kinds[:n_dec] = DECISIVE
    kinds[n_dec:n_dec + n_sil] = SILENT
    K, Ka = spec.visual_concepts, spec.audio_concepts
    # Three distinct visual concepts per clip: the first few of a random permutation.
    vis = np.argsort(rng.random((n, K)), axis=1)[:, :3]
    aud = rng.integers(0, Ka, size=n)
    # Twins: one visual triple per group, distinct sounds within the group.
    group_vis = vis[:n_dec:t]
    vis[:n_dec] = np.repeat(group_vis, t, axis=0)
    if n_groups:
        aud[:n_dec] = np.argsort(rng.random((n_groups, Ka)), axis=1)[:, :t].reshape(-1)
    aud[kinds == SILENT] = -1
    # Shuffle clip order so kinds and twins are not contiguous.
    perm = rng.permutation(n)
    return kinds[perm], vis[perm], aud[perm]


def make_split(spec: SyntheticSpec, world: _World, n: int, rng: np.random.Generator,
               chunk: int = 1024) -> tuple[Split, np.ndarray]:
    """Generate one split of ``n`` clips; also returns the clip kinds (0 normal, 1 decisive,
    2 silent)."""
    dt = np.dtype(spec.dtype)
    F, A, T = spec.frames, spec.audio_tokens, spec.text_tokens
    kinds, vis, aud = _clip_plan(spec, n, rng)

    # ---- video: three concepts in contiguous runs over the valid frames -----------------
    video = np.zeros((n, F, spec.video_dim), dtype=dt)
    lv = _valid_lengths(rng, n, F, spec.min_valid)
    video_mask = np.arange(F)[None, :] < lv[:, None]
    order = np.argsort(rng.random((n, 3)), axis=1)  # which concept comes first, second, third
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        c = e - s
        seg = np.minimum((np.arange(F)[None, :] * 3) // lv[s:e, None], 2)  # [c, F] run index
        concept = np.take_along_axis(vis[s:e], np.take_along_axis(order[s:e], seg, 1), 1)
        x = world.vis_video[concept].astype(np.float32)  # [c, F, Dv]
        x += _noise(rng, (c, 1, spec.video_dim), spec.style_noise)
        x += _noise(rng, (c, F, spec.video_dim), spec.frame_noise)
        x *= video_mask[s:e, :, None]
        video[s:e] = x

    # ---- audio ----------------------------------------------------------------------------
    audio = np.zeros((n, A, spec.audio_dim), dtype=dt)
    la = _valid_lengths(rng, n, A, spec.min_valid)
    audio_mask = np.arange(A)[None, :] < la[:, None]
    has_audio = kinds != SILENT
    # Half the has-audio = 0 clips are noise-only, the other half (near) silent.
    noise_only = (~has_audio) & (rng.random(n) < 0.5)
    noise_scale = np.where(has_audio | noise_only, 1.0, 0.02).astype(np.float32)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        c = e - s
        # Per-token loudness (0.5..1.5) x strength, zero for has-audio = 0 clips; in-place
        # arithmetic keeps big presets to about one temporary per chunk.
        coef = rng.random((c, A, 1), dtype=np.float32) + np.float32(0.5)
        coef *= np.float32(spec.audio_strength) * has_audio[s:e, None, None]
        x = _noise(rng, (c, A, spec.audio_dim), spec.audio_noise)
        x *= noise_scale[s:e, None, None]
        x += world.aud_audio[np.maximum(aud[s:e], 0)].astype(np.float32)[:, None, :] * coef
        x *= audio_mask[s:e, :, None]
        audio[s:e] = x

    # ---- captions -------------------------------------------------------------------------
    n_cap = rng.integers(spec.min_captions, spec.max_captions + 1, size=n)
    text_clip = np.repeat(np.arange(n), n_cap)
    m = len(text_clip)
    K = spec.visual_concepts
    # Mentions as ids in one table: visual 0..K-1, audio K..K+K'-1; -1 = not named.
    ment = np.full((m, 4), -1, dtype=np.int64)
    ment[:, 0] = vis[text_clip, 0]
    for j in (1, 2):
        named = rng.random(m) < spec.secondary_mention
        ment[named, j] = vis[text_clip[named], j]
    ck = kinds[text_clip]
    say_audio = (ck == DECISIVE) | ((ck == NORMAL) & (rng.random(m) < spec.audio_mention))
    ment[say_audio, 3] = K + aud[text_clip[say_audio]]
    # Random word order, named concepts first.
    key = rng.random((m, 4)) + (ment < 0) * 2.0
    ment = np.take_along_axis(ment, np.argsort(key, axis=1), 1)
    n_named = (ment >= 0).sum(1)
    n_slots = np.minimum(n_named, T)
    filler = (n_slots < T) & (rng.random(m) < 0.3)
    lt = n_slots + filler
    text_mask = np.arange(T)[None, :] < lt[:, None]
    table = np.concatenate([world.vis_text, world.aud_text]).astype(np.float32)
    text = np.zeros((m, T, spec.text_dim), dtype=dt)
    for s in range(0, m, max(1, chunk * 4)):
        e = min(m, s + max(1, chunk * 4))
        c = e - s
        x = np.zeros((c, T, spec.text_dim), dtype=np.float32)
        for j in range(4):  # mention j goes to token j mod (#slots)
            ids = ment[s:e, j]
            rows = np.flatnonzero(ids >= 0)
            slot = j % np.maximum(n_slots[s:e][rows], 1)
            np.add.at(x, (rows, slot), table[ids[rows]])
        x += _noise(rng, (c, T, spec.text_dim), spec.text_noise)
        x *= text_mask[s:e, :, None]
        text[s:e] = x

    split = Split(video=video, video_mask=video_mask, audio=audio, audio_mask=audio_mask,
                  text=text, text_mask=text_mask, text_clip=text_clip.astype(np.int64),
                  has_audio=has_audio, labels=vis[:, 0].astype(np.int64))
    return split, kinds


def world_of(spec: SyntheticSpec) -> _World:
    """The concepts and projections shared by all splits of ``spec`` (for analysis and tests)."""
    return _world(spec, np.random.default_rng(np.random.SeedSequence(spec.seed).spawn(4)[0]))


def make_synthetic(spec: SyntheticSpec | None = None, name: str | None = None,
                   return_kinds: bool = False):
    """Generate the synthetic dataset of ``spec`` (deterministic for ``spec.seed``).

    With ``return_kinds`` also returns ``{split: kinds}`` (0 ordinary, 1 audio-decisive,
    2 has-audio = 0) for analysis and tests.
    """
    spec = spec or SyntheticSpec()
    need = spec.nbytes() / 2**30
    if need > spec.max_gib:
        raise DataError(f"synthetic data: about {need:.1f} GiB of arrays exceeds max_gib="
                        f"{spec.max_gib}; use fewer clips/tokens or raise max_gib")
    world_seq, *split_seqs = np.random.SeedSequence(spec.seed).spawn(4)
    world = _world(spec, np.random.default_rng(world_seq))
    sizes = {"train": spec.clips, "val": spec.val_clips, "test": spec.test_clips}
    splits, kinds = {}, {}
    for (split_name, n), seq in zip(sizes.items(), split_seqs):
        if n > 0:
            splits[split_name], kinds[split_name] = make_split(spec, world, n,
                                                               np.random.default_rng(seq))
    data = RetrievalData(name=name or spec_string(spec), train=splits["train"],
                         val=splits["val"], test=splits.get("test"))
    return (data, kinds) if return_kinds else data


def spec_string(spec: SyntheticSpec) -> str:
    """The shortest spec string that rebuilds ``spec`` (``synthetic`` plus changed fields)."""
    default = SyntheticSpec()
    changed = [f"{f.name}={getattr(spec, f.name)}" for f in fields(spec)
               if getattr(spec, f.name) != getattr(default, f.name)]
    return "synthetic" + (":" + ",".join(changed) if changed else "")


def spec_from_options(options: dict[str, str], source: str = "synthetic") -> SyntheticSpec:
    """Build a spec from ``key=value`` strings: ``preset`` first, then the other keys.

    ``dim`` sets video_dim, audio_dim and text_dim at once. Unknown keys and bad values
    raise :class:`DataError` naming the key.
    """
    opts = dict(options)
    base = SyntheticSpec()
    preset = opts.pop("preset", "default")
    if preset not in PRESETS:
        raise DataError(f"{source}: preset={preset!r} is unknown; choose from {sorted(PRESETS)}")
    values = dict(PRESETS[preset])
    if "dim" in opts:
        d = opts.pop("dim")
        for k in ("video_dim", "audio_dim", "text_dim"):
            opts.setdefault(k, d)
    types = {f.name: type(getattr(base, f.name)) for f in fields(base)}
    for key, raw in opts.items():
        if key not in types:
            raise DataError(f"{source}: unknown key {key!r}; known keys: preset, dim, "
                            + ", ".join(types))
        v: int | float | str
        try:
            t = types[key]
            if t is int:
                v = int(raw)
            elif t is float:
                v = float(raw)
                if not math.isfinite(v):
                    raise ValueError
            else:
                v = str(raw)
        except ValueError:
            raise DataError(f"{source}: {key}={raw!r} is not a valid "
                            f"{types[key].__name__}") from None
        values[key] = v
    try:
        return replace(base, **values)
    except DataError as e:
        raise DataError(f"{source}: {str(e).removeprefix('synthetic data: ')}") from None


def probe_scores(data: RetrievalData, use_audio: bool = True, ridge: float = 1.0,
                 split: str = "val"):
    """Score matrix ``S[M, N]`` of ``split`` by a ridge-regression probe (see
    :func:`linear_probe`)."""
    import torch

    def pool(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        w = mask.astype(np.float64)[..., None]
        return (x * w).sum(1) / np.maximum(w.sum(1), 1.0)

    def feats(s: Split) -> tuple[np.ndarray, np.ndarray]:
        v = pool(s.video, s.video_mask)
        a = pool(s.audio, s.audio_mask) * (s.has_audio[:, None] if use_audio else 0.0)
        return pool(s.text, s.text_mask), np.concatenate([v, a], axis=1)

    xt, yc = feats(data.train)
    y = yc[data.train.text_clip]
    w = np.linalg.solve(xt.T @ xt + ridge * np.eye(xt.shape[1]), xt.T @ y)
    xe, ye = feats(data.splits[split])
    q, g = _unit(xe @ w + 1e-12), _unit(ye + 1e-12)
    return torch.from_numpy(q @ g.T)


def linear_probe(data: RetrievalData, use_audio: bool = True, ridge: float = 1.0,
                 split: str = "val") -> dict[str, float]:
    """A cheap check that audio carries signal: ridge regression text -> clip features.

    Mean-pools (over valid entries) text tokens and clip frames / audio tokens, fits a
    linear map from text to ``[video; audio]`` (audio zeroed when ``use_audio`` is False or
    has-audio = 0) on train, then ranks ``split`` by cosine similarity. Returns the
    retrieval metrics of :func:`nas.metrics.retrieval_metrics`.
    """
    import torch

    from nas.metrics import retrieval_metrics

    S = probe_scores(data, use_audio, ridge, split)
    return retrieval_metrics(S, torch.from_numpy(data.splits[split].text_clip))


def describe(spec: SyntheticSpec) -> dict:
    """The spec as a plain dict (for logs and study attributes)."""
    return asdict(spec)

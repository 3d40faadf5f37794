"""The synthetic generator: determinism, documented shapes and shares, and that audio matters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nas.batch import ClipBatch, TextBatch
from nas.data import SyntheticSpec, linear_probe, make_synthetic
from nas.data.synthetic import DECISIVE, SILENT, probe_scores, world_of
from nas.errors import DataError
from nas.metrics import t2v_ranks

SMALL = SyntheticSpec(clips=90, val_clips=30, test_clips=0, frames=6, audio_tokens=8,
                      text_tokens=3, video_dim=16, audio_dim=12, text_dim=20, latent_dim=8)


def _arrays(data):
    return {f"{s}.{k}": v for s, sp in data.splits.items() for k, v in vars(sp).items()
            if isinstance(v, np.ndarray)}


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b = _arrays(make_synthetic(SMALL)), _arrays(make_synthetic(SMALL))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    c = _arrays(make_synthetic(SyntheticSpec(**{**vars(SMALL), "seed": 1})))
    assert not np.array_equal(a["train.video"], c["train.video"])
    assert not np.array_equal(a["train.text"], c["train.text"])


def test_shapes_dtypes_and_masks_as_documented() -> None:
    data, kinds = make_synthetic(SMALL, return_kinds=True)
    assert data.test is None and set(data.splits) == {"train", "val"}
    s = data.train
    n, m = s.n_clips, s.n_texts
    assert n == 90 and data.val.n_clips == 30
    assert s.video.shape == (n, 6, 16) and s.audio.shape == (n, 8, 12)
    assert s.text.shape == (m, 3, 20)
    assert s.video.dtype == np.float16 and s.text_clip.dtype == np.int64
    assert s.video_mask.dtype == bool and s.audio_mask.dtype == bool and s.text_mask.dtype == bool
    # Every row has a valid entry; the shortest valid length is ceil(min_valid * len).
    for mask, full in ((s.video_mask, 6), (s.audio_mask, 8)):
        lengths = mask.sum(1)
        assert lengths.min() >= 3 and lengths.max() <= full
        assert (mask == (np.arange(full)[None] < lengths[:, None])).all()  # valid prefix
    assert s.text_mask.any(1).all()
    # Padding is zero.
    assert not s.video[~s.video_mask].any() and not s.text[~s.text_mask].any()
    # 3..5 captions per clip; labels are class ids.
    per_clip = np.bincount(s.text_clip, minlength=n)
    assert per_clip.min() >= 3 and per_clip.max() <= 5
    assert s.labels.shape == (n,) and s.labels.max() < SMALL.visual_concepts
    # Shares: 30% audio-decisive (groups of 3), 20% has-audio = 0.
    k = kinds["train"]
    assert (k == DECISIVE).sum() == 27 and (k == SILENT).sum() == 18
    np.testing.assert_array_equal(s.has_audio, k != SILENT)
    # Batches follow the nas.batch contract.
    cb, tb = s.clip_batch(np.array([3, 1])), s.text_batch(torch.tensor([0, 4, 2]))
    assert isinstance(cb, ClipBatch) and isinstance(tb, TextBatch)
    assert cb.video.dtype == torch.float32 and cb.video.shape == (2, 6, 16)
    assert cb.has_audio.dtype == torch.bool and cb.labels.tolist() == s.labels[[3, 1]].tolist()
    assert tb.text.shape == (3, 3, 20) and tb.text_mask.dtype == torch.bool
    assert s.clip_batch([0], dtype=torch.float16).video.dtype == torch.float16


def test_captions_of_has_audio_0_clips_never_name_a_sound() -> None:
    # T = 1, no text noise, latent space wider than the concept count: every caption is a
    # unique 0/1 combination of concept vectors, recovered by least squares.
    spec = SyntheticSpec(clips=200, val_clips=10, test_clips=0, text_tokens=1, text_noise=0.0,
                         latent_dim=96, text_dim=96, video_dim=8, audio_dim=8)
    data, kinds = make_synthetic(spec, return_kinds=True)
    world = world_of(spec)
    s = data.train
    table = np.concatenate([world.vis_text, world.aud_text])  # [K + K', Dt]
    coef, *_ = np.linalg.lstsq(table.T, s.text[:, 0].astype(np.float64).T, rcond=None)
    named_audio = coef[spec.visual_concepts:].max(0) > 0.5  # [M]
    k = kinds["train"][s.text_clip]
    assert not named_audio[k == SILENT].any()
    assert named_audio[k == DECISIVE].all()
    share = named_audio[k == 0].mean()  # ordinary audible clips: audio_mention = 0.6
    assert 0.45 < share < 0.75
    # The main visual concept (the label) is always named.
    assert (coef[s.labels[s.text_clip], np.arange(len(k))] > 0.5).all()


def test_audio_matters_for_a_linear_probe() -> None:
    data, kinds = make_synthetic(SyntheticSpec(), return_kinds=True)
    with_a, without = linear_probe(data, use_audio=True), linear_probe(data, use_audio=False)
    assert with_a["recall"] > without["recall"] + 15, (with_a["recall"], without["recall"])
    assert with_a["t2v_r1"] > without["t2v_r1"] + 10
    # On audio-decisive clips the twins are confusable without audio: R@1 near 1/twins.
    val = data.val
    tc = torch.from_numpy(val.text_clip)
    dec = torch.from_numpy(kinds["val"][val.text_clip] == DECISIVE)
    assert dec.float().mean() > 0.25
    r1 = {}
    for use_audio in (True, False):
        ranks = t2v_ranks(probe_scores(data, use_audio=use_audio), tc)
        r1[use_audio] = (ranks[dec] == 1).float().mean().item()
    assert r1[False] < 0.45 and r1[True] > r1[False] + 0.3, r1


def test_size_guard_and_bad_values() -> None:
    big = SyntheticSpec(clips=9000, val_clips=1000, audio_tokens=1370, audio_dim=512)
    with pytest.raises(DataError, match="GiB.*max_gib"):
        make_synthetic(big)
    with pytest.raises(DataError, match="silent_share"):
        SyntheticSpec(audio_decisive_share=0.9, silent_share=0.2)
    with pytest.raises(DataError, match="max_captions"):
        SyntheticSpec(min_captions=4, max_captions=2)

"""Feature directories: every bad case raises DataError naming the file and the problem."""

from __future__ import annotations

import os
import pickle
import shutil

import numpy as np
import pytest

from nas.data import SyntheticSpec, load_data, make_synthetic, read_feature_dir, write_feature_dir
from nas.data.features import carve_val
from nas.errors import DataError

SPEC = SyntheticSpec(clips=20, val_clips=6, test_clips=4, frames=4, audio_tokens=5,
                     text_tokens=2, video_dim=8, audio_dim=6, text_dim=8, latent_dim=4,
                     min_captions=1, max_captions=3)


@pytest.fixture(scope="module")
def source():
    return make_synthetic(SPEC)


@pytest.fixture()
def fdir(source, tmp_path) -> str:
    return write_feature_dir(source, str(tmp_path / "feats"))


def _save(path: str, arr) -> None:
    np.save(path, arr, allow_pickle=False)


def _load_plain(path: str) -> np.ndarray:
    return np.array(np.load(path, allow_pickle=False))


def _expect(fdir: str, *patterns: str) -> None:
    with pytest.raises(DataError) as e:
        read_feature_dir(fdir)
    for p in patterns:
        assert p in str(e.value), (p, str(e.value))


# ---------------------------------------------------------------- valid directories -------
def test_valid_float16_dir_is_memory_mapped_and_round_trips(source, fdir) -> None:
    data = read_feature_dir(fdir)
    for s in ("train", "val", "test"):
        got, want = getattr(data, s), getattr(source, s)
        for k in ("video", "audio", "text"):
            arr = getattr(got, k)
            assert isinstance(arr, np.memmap) and arr.dtype == np.float16, (s, k)
            np.testing.assert_array_equal(np.asarray(arr), getattr(want, k))
        for k in ("video_mask", "audio_mask", "text_mask", "text_clip", "has_audio", "labels"):
            np.testing.assert_array_equal(getattr(got, k), getattr(want, k), err_msg=(s, k))
    assert data.shapes == source.shapes
    # load_data dispatches paths to the reader.
    assert isinstance(load_data(fdir).train.video, np.memmap)


def test_optional_files_take_defaults_and_int_masks_are_accepted(source, tmp_path) -> None:
    d = tmp_path / "min"
    s = source.train
    one = s.subset(np.arange(s.n_clips))
    for sub in ("train",):
        os.makedirs(d / sub)
        _save(d / sub / "video.npy", one.video.astype(np.float32))
        _save(d / sub / "audio.npy", one.audio)
        # one caption per clip, no text_clip.npy: identity
        _save(d / sub / "text.npy", one.text[one.captions_of(0)[:1].repeat(one.n_clips)])
        _save(d / sub / "video_mask.npy", one.video_mask.astype(np.int8))
    data = read_feature_dir(str(d))
    tr = data.train
    assert data.test is None
    assert tr.video.dtype == np.float32 and tr.labels is None
    assert tr.has_audio.all() and tr.audio_mask.all() and tr.text_mask.all()
    assert tr.video_mask.dtype == bool
    # val carved: 10% of 20 clips, deterministic, disjoint, identity captions follow.
    assert data.val.n_clips == 2 and tr.n_clips == 18
    np.testing.assert_array_equal(tr.text_clip, np.arange(18))
    again = read_feature_dir(str(d))
    np.testing.assert_array_equal(np.asarray(again.val.video), np.asarray(data.val.video))


def test_carved_val_keeps_captions_with_their_clips(source) -> None:
    tr, va = carve_val(source.train)
    assert tr.n_clips + va.n_clips == source.train.n_clips
    assert tr.n_texts + va.n_texts == source.train.n_texts
    # Each val caption's tokens still belong to the clip it points to (via labels).
    full = source.train
    for part in (tr, va):
        for i in range(part.n_texts):
            j = np.flatnonzero((full.text == part.text[i]).all(axis=(1, 2)))
            assert full.labels[full.text_clip[j[0]]] == part.labels[part.text_clip[i]]


def test_write_refuses_to_overwrite_and_replaces_atomically(source, fdir) -> None:
    with pytest.raises(DataError, match="already exists"):
        write_feature_dir(source, fdir)
    write_feature_dir(source.val, fdir, overwrite=True)  # a single split: files at the top
    assert os.path.exists(os.path.join(fdir, "video.npy"))
    assert not os.path.exists(os.path.join(fdir, "train"))
    assert not [n for n in os.listdir(os.path.dirname(fdir)) if ".tmp-" in n or ".old-" in n]


# ---------------------------------------------------------------- one test per bad case ---
def test_missing_required_file(fdir) -> None:
    os.remove(os.path.join(fdir, "train", "audio.npy"))
    _expect(fdir, os.path.join("train", "audio.npy"), "missing file")


def test_missing_train_split_dir(fdir) -> None:
    shutil.rmtree(os.path.join(fdir, "train"))
    _expect(fdir, "train", "missing split directory")


def test_missing_text_clip_when_counts_differ(fdir) -> None:
    os.remove(os.path.join(fdir, "train", "text_clip.npy"))
    _expect(fdir, "text_clip.npy", "missing file", "different number of captions")


def test_wrong_rank(fdir) -> None:
    p = os.path.join(fdir, "val", "video.npy")
    _save(p, _load_plain(p)[:, 0])
    _expect(fdir, os.path.join("val", "video.npy"), "wrong rank", "[N, F, Dv]")


def test_shape_mismatch_between_clip_arrays(fdir) -> None:
    p = os.path.join(fdir, "train", "audio.npy")
    _save(p, _load_plain(p)[:-1])
    _expect(fdir, "audio.npy", "shape mismatch")


def test_shape_mismatch_of_a_mask(fdir) -> None:
    p = os.path.join(fdir, "train", "video_mask.npy")
    _save(p, _load_plain(p)[:, :-1])
    _expect(fdir, "video_mask.npy", "shape mismatch", "[N, F]")


def test_shape_mismatch_of_caption_index(fdir) -> None:
    p = os.path.join(fdir, "test", "text_clip.npy")
    _save(p, _load_plain(p)[:-1])
    _expect(fdir, os.path.join("test", "text_clip.npy"), "shape mismatch")


def test_feature_dim_differs_between_splits(fdir) -> None:
    p = os.path.join(fdir, "val", "text.npy")
    _save(p, _load_plain(p)[..., :-1])
    _expect(fdir, os.path.join("val", "text.npy"), "feature dim 7")


def test_wrong_feature_dtype(fdir) -> None:
    p = os.path.join(fdir, "train", "video.npy")
    _save(p, _load_plain(p).astype(np.float64))
    _expect(fdir, "video.npy", "wrong dtype float64")


def test_wrong_index_dtype(fdir) -> None:
    p = os.path.join(fdir, "train", "text_clip.npy")
    _save(p, _load_plain(p).astype(np.float32))
    _expect(fdir, "text_clip.npy", "wrong dtype float32")


def test_mask_values_not_0_1(fdir) -> None:
    p = os.path.join(fdir, "train", "audio_mask.npy")
    _save(p, _load_plain(p).astype(np.int64) * 2)
    _expect(fdir, "audio_mask.npy", "values must be 0 or 1")


@pytest.mark.parametrize("fname,bad", [("audio.npy", np.nan), ("text.npy", np.inf)])
def test_nan_or_inf(fdir, fname: str, bad: float) -> None:
    p = os.path.join(fdir, "train", fname)
    a = _load_plain(p)
    a[3, 0, 1] = bad
    _save(p, a)
    _expect(fdir, fname, "NaN or inf", "at ", " 3)")


@pytest.mark.parametrize("value", [-1, 10_000])
def test_caption_index_out_of_range(fdir, value: int) -> None:
    p = os.path.join(fdir, "train", "text_clip.npy")
    a = _load_plain(p)
    a[2] = value
    _save(p, a)
    _expect(fdir, "text_clip.npy", "out of range", f"caption 2 points to clip {value}")


def test_empty_split(fdir) -> None:
    d = os.path.join(fdir, "test")
    for f in os.listdir(d):
        a = _load_plain(os.path.join(d, f))
        _save(os.path.join(d, f), a[:0])
    _expect(fdir, os.path.join("test", "video.npy"), "empty split")


@pytest.mark.parametrize("fname", ["video_mask.npy", "text_mask.npy"])
def test_mask_row_without_valid_entry(fdir, fname: str) -> None:
    p = os.path.join(fdir, "train", fname)
    a = _load_plain(p)
    a[1] = False
    _save(p, a)
    _expect(fdir, fname, "1 has no valid entry")


def test_empty_audio_mask_needs_has_audio_0(fdir) -> None:
    p = os.path.join(fdir, "train", "audio_mask.npy")
    a = _load_plain(p)
    a[0] = False
    _save(p, a)
    _save(os.path.join(fdir, "train", "has_audio.npy"), np.ones(a.shape[0], dtype=bool))
    _expect(fdir, "audio_mask.npy", "clip 0 has no valid audio token")
    h = np.ones(a.shape[0], dtype=bool)
    h[0] = False
    _save(os.path.join(fdir, "train", "has_audio.npy"), h)
    data = read_feature_dir(fdir)
    assert data.train.audio_mask[0].tolist() == [True] + [False] * (a.shape[1] - 1)


def test_object_array_is_refused(fdir) -> None:
    p = os.path.join(fdir, "train", "labels.npy")
    np.save(p, np.array([{"x": 1}] * 20, dtype=object), allow_pickle=True)
    _expect(fdir, "labels.npy", "refused")


class _Boom:
    """Unpickling this would create a marker file: the reader must never do it."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_file_is_never_unpickled(fdir, tmp_path) -> None:
    marker = str(tmp_path / "unpickled")
    _Boom.marker = marker
    with open(os.path.join(fdir, "train", "video.npy"), "wb") as f:
        pickle.dump(_Boom(), f)
    _expect(fdir, "video.npy")
    assert not os.path.exists(marker)


def test_not_a_directory(tmp_path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_data(str(tmp_path / "nope"))

"""The shipped digits data set: the builder (bit for bit), the loader, bad input, training.

The FSDD WAVs are found via ``NAS_FSDD_DIR`` or else in the folder ``shared/data/fsdd/recordings``
beside the repository (where CI keeps them).
Tests that need them skip when they are absent, except in CI (``CI=true``), where they fail:
CI has ``shared/`` beside its clone and must check the shipped copy against the WAVs. The
build runs once per session (about 10 s on an idle 2-core machine).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from nas.cli import main
from nas.data import load_data, parse_spec
from nas.data.digits import DigitsSpec, load_digits_data, read_checked, shipped_path
from nas.data.digits_build import (
    ALL_SPEAKERS,
    CLIPS,
    IMAGE_SPLIT,
    SILENT,
    SOUND_ONLY,
    SPEAKERS,
    WORDS,
    build_digits,
)
from nas.errors import DataError

ROOT = Path(__file__).resolve().parents[2]
SOUND_WORDS = {WORDS.index(w) for w in ("says", "speaks")} | set(range(10, 20))


def _fsdd_dir() -> Path:
    env = os.environ.get("NAS_FSDD_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "data" / "fsdd" / "recordings"


@pytest.fixture(scope="session")
def fsdd() -> Path:
    d = _fsdd_dir()
    if not d.is_dir():
        msg = f"FSDD recordings not found at {d} (set NAS_FSDD_DIR)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{msg}: CI must have shared/ beside its clone")
        pytest.skip(msg)
    return d


@pytest.fixture(scope="session")
def built(fsdd: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build from the WAVs per session."""
    out = tmp_path_factory.mktemp("digits") / "digits.npz"
    build_digits(fsdd, out)
    return out


@pytest.fixture(scope="module")
def digits():
    return load_digits_data(return_kinds=True)


# ------------------------------------------------------------------------------ builder --
def test_shipped_copy_is_the_builders_output(built: Path) -> None:
    shipped = shipped_path()
    assert built.read_bytes() == shipped.read_bytes(), (
        "the shipped digits.npz differs from a fresh build: rebuild it with "
        "`nas data build-digits --fsdd DIR` and commit it")
    assert (built.with_name("digits.npz.sha256").read_text()
            == shipped.with_name("digits.npz.sha256").read_text())
    assert shipped.stat().st_size < 5 * 2**20
    assert shipped.with_name("NOTICE.md").read_text().count("CC BY-SA 4.0") >= 2


def test_cli_rebuild_is_the_same_bytes_twice(fsdd: Path, built: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "again.npz"
    assert main(["data", "build-digits", "--fsdd", str(fsdd), "--out", str(out)]) == 0
    assert out.read_bytes() == built.read_bytes()
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert (tmp_path / "again.npz.sha256").read_text() == f"{digest}  again.npz\n"
    assert "CC BY-SA 4.0" in (tmp_path / "NOTICE.md").read_text()  # the licence travels along
    assert digest in capsys.readouterr().out
    # ... and the copy loads like the shipped one.
    a = load_data(f"digits:file={out},train_clips=10,val_clips=5,test_clips=0")
    np.testing.assert_array_equal(a.train.audio, load_digits_data().train.audio[:10])


# ------------------------------------------------------------------------------- loader --
def test_every_split_as_documented(digits) -> None:
    data, kinds = digits
    assert data.name == "digits" and set(data.splits) == {"train", "val", "test"}
    assert data.shapes.frames == 6 and data.shapes.audio_tokens == 8
    t = read_checked(shipped_path())
    for name, s in data.splits.items():
        n, m, k = s.n_clips, s.n_texts, kinds[name]
        assert n == CLIPS[name]
        assert s.video.shape == (n, 6, 64) and s.audio.shape == (n, 8, 64)
        assert s.text.shape == (m, 6, 64) and m == 2 * n
        for a in (s.video, s.audio, s.text):
            assert a.dtype == np.float16 and np.isfinite(a).all()
        assert s.video.min() >= 0 and s.video.max() <= 1
        assert s.video_mask.all() and s.text_mask.any(1).all()
        # caption -> clip: in range, two captions per clip, sorted by clip
        assert s.text_clip.dtype == np.int64 and (np.diff(s.text_clip) >= 0).all()
        np.testing.assert_array_equal(np.bincount(s.text_clip, minlength=n), 2)
        # kinds: 40 % in sound-only pairs, 20 % silent
        assert (k == SOUND_ONLY).sum() == round(0.4 * n / 2) * 2
        assert (k == SILENT).sum() == round(0.2 * n)
        np.testing.assert_array_equal(s.has_audio, k != SILENT)
        assert not s.audio[~s.has_audio].any() and (s.audio_mask.sum(1)[~s.has_audio] == 1).all()
        assert s.audio_mask[s.has_audio].all()
        # silent clips' captions name no sound; audible ones always do
        words = t[f"{name}.caption_words"]
        names_sound = np.isin(words, list(SOUND_WORDS)).any(1)
        np.testing.assert_array_equal(names_sound, s.has_audio[s.text_clip])
        # labels: the first digit shown
        np.testing.assert_array_equal(s.labels, t["image_digit"][t[f"{name}.frame_image"][:, 0]])
    assert data.test.n_clips >= 1000


def test_speakers_and_images_are_disjoint_across_splits() -> None:
    t = read_checked(shipped_path())
    speakers, images = {}, {}
    for name in ("train", "val", "test"):
        rec = t[f"{name}.clip_rec"]
        speakers[name] = {ALL_SPEAKERS[i] for i in t["rec_speaker"][rec[rec >= 0]]}
        images[name] = set(t[f"{name}.frame_image"].ravel().tolist())
        assert speakers[name] == set(SPEAKERS[name])
        lo, hi = IMAGE_SPLIT[name]
        assert min(images[name]) >= lo and max(images[name]) < hi
        # the heard digit is the recording's digit; the seen one the image's
        assert (t["rec_digit"][rec[rec >= 0]] >= 0).all()
    assert not speakers["train"] & (speakers["val"] | speakers["test"])
    assert not speakers["val"] & speakers["test"]
    assert not images["train"] & (images["val"] | images["test"])


def test_pairs_differ_only_by_sound_and_val_test_captions_are_unique(digits) -> None:
    data, kinds = digits
    for name in ("val", "test"):
        s, k = data.splits[name], kinds[name]
        pooled = s.text.astype(np.float32).sum(1)  # a caption's bag of words
        first = pooled[::2]  # caption 0 of every clip (two per clip, sorted by clip)
        # no two clips share a caption: a perfect model has no ties
        assert len(np.unique(first.round(3), axis=0)) == s.n_clips
        # each sound-only clip has a twin with the same frames and different audio
        pair = np.flatnonzero(k == SOUND_ONLY)
        video = s.video[pair].reshape(len(pair), -1)
        _, inverse, counts = np.unique(video, axis=0, return_inverse=True, return_counts=True)
        assert (counts == 2).all()
        for g in range(len(counts)):
            a, b = pair[inverse.ravel() == g]
            assert not np.array_equal(s.audio[a], s.audio[b])


def test_spec_options_select_the_first_clips() -> None:
    assert parse_spec("digits") == DigitsSpec()
    spec = parse_spec("digits: train_clips=100, val_clips=50, test_clips=0")
    assert spec == DigitsSpec(train_clips=100, val_clips=50, test_clips=0)
    small = load_data("digits:train_clips=100,val_clips=50,test_clips=0")
    full = load_digits_data()
    assert small.test is None and small.train.n_clips == 100 and small.val.n_clips == 50
    assert small.train.n_texts == 200 and small.train.text_clip.max() == 99
    np.testing.assert_array_equal(small.val.video, full.val.video[:50])
    np.testing.assert_array_equal(small.val.text, full.val.text[:100])


@pytest.mark.parametrize("spec, match", [
    ("digits:clips=5", "unknown key 'clips'; known keys: train_clips"),
    ("digits:train_clips=many", "train_clips='many' is not a valid int"),
    ("digits:train_clips=1", "train_clips=1: must be >= 2"),
    ("digits:val_clips=501", "val_clips=501: the val split has 500 clips"),
    ("digits:", "nothing after 'digits:'"),
])
def test_bad_specs_name_the_key(spec: str, match: str) -> None:
    with pytest.raises(DataError, match=match):
        load_data(spec)


def test_damaged_copy_is_refused_with_how_to_rebuild(tmp_path: Path) -> None:
    bad = tmp_path / "digits.npz"
    shutil.copy(shipped_path(), bad)
    shutil.copy(shipped_path().with_name("digits.npz.sha256"), tmp_path)
    raw = bytearray(bad.read_bytes())
    raw[len(raw) // 2] ^= 1
    bad.write_bytes(bytes(raw))
    with pytest.raises(DataError,
                       match=r"digits.npz: checksum mismatch .*`nas data build-digits --fsdd DIR`"):
        load_data(f"digits:file={bad}")
    (tmp_path / "digits.npz.sha256").unlink()
    with pytest.raises(DataError, match=r"digits.npz.sha256: checksum file missing; rebuild"):
        load_data(f"digits:file={bad}")


# ---------------------------------------------------------------------------- bad input --
def _wav(path: Path, rate: int = 8000, n: int = 800) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(struct.pack(f"<{n}h", *([100, -100] * (n // 2))))


def _fake_fsdd(d: Path) -> Path:
    """Every expected file name; only the first one read (0_george_0.wav) is a real WAV."""
    d.mkdir()
    for spk in ALL_SPEAKERS:
        for digit in range(10):
            for i in range(50):
                (d / f"{digit}_{spk}_{i}.wav").touch()
    _wav(d / "0_george_0.wav")
    return d


@pytest.mark.parametrize("case", ["missing", "empty", "absent_file", "broken", "16khz", "stereo"])
def test_bad_wav_folder_is_an_error_naming_the_file_and_nothing_is_written(
        case: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    d = tmp_path / "recordings"
    if case == "empty":
        d.mkdir()
        (d / "README.txt").write_text("no wavs here")
    elif case != "missing":
        _fake_fsdd(d)
    first = d / "0_george_0.wav"
    expect = {
        "missing": f"{d}: FSDD recordings folder does not exist",
        "empty": f"{d}: FSDD recordings folder is empty (no .wav files",
        "absent_file": f"{d / '9_yweweler_49.wav'}: missing recording (1 of the 3000",
        "broken": f"{first}: not a readable WAV file",
        "16khz": f"{first}: sample rate 16000 Hz, expected 8000 Hz",
        "stereo": f"{first}: 2 channel(s) of 16-bit samples, expected mono 16-bit",
    }[case]
    if case == "absent_file":
        (d / "9_yweweler_49.wav").unlink()
    elif case == "broken":
        first.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    elif case == "16khz":
        _wav(first, rate=16000)
    elif case == "stereo":
        with wave.open(str(first), "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(b"\x00" * 3200)
    out = tmp_path / "out" / "digits.npz"
    out.parent.mkdir()
    out.write_bytes(b"old")
    assert main(["data", "build-digits", "--fsdd", str(d), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nas data: error: ") and expect in err, err
    assert len(err.strip().splitlines()) == 1
    assert out.read_bytes() == b"old" and sorted(os.listdir(out.parent)) == ["digits.npz"]


def test_build_without_fsdd_or_into_a_missing_folder(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("NAS_FSDD_DIR", raising=False)
    assert main(["data", "build-digits"]) == 2
    assert "--fsdd: give the FSDD recordings folder" in capsys.readouterr().err
    out = tmp_path / "no" / "such" / "digits.npz"
    assert main(["data", "build-digits", "--fsdd", str(tmp_path), "--out", str(out)]) == 2
    assert f"folder {out.parent} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


# ----------------------------------------------------------------------------- training --
def test_a_short_training_beats_chance_by_far() -> None:
    from nas.config import FusionConfig, TrainConfig
    from nas.train import train_proxy

    data = load_data("digits:train_clips=600,val_clips=200,test_clips=0")
    chance = 100.0 * (1 + 5 + 10) / data.val.n_clips  # R@1+R@5+R@10 of a random ranking: 8
    fusion = FusionConfig(width=32, layers=1, heads=2, resampler_layers=1, resampler_queries=4,
                          gate_inputs="va", query_fusion="none", residual_mix=1.0)
    train = TrainConfig(lr=3e-3, batch_size=32, epochs=3.0, seed=0, num_threads=1)
    m = train_proxy(fusion, train, data).metrics
    assert m["recall"] > 5 * chance, m

"""Data spec strings: synthetic options, presets, errors naming the key."""

from __future__ import annotations

import pytest

from nas.data import PRESETS, SyntheticSpec, load_data, parse_spec
from nas.errors import DataError, UserError


def test_plain_synthetic_is_the_default_spec() -> None:
    assert parse_spec("synthetic") == SyntheticSpec()
    assert parse_spec(" synthetic ") == SyntheticSpec()


def test_options_set_fields_and_dim_sets_all_three() -> None:
    s = parse_spec("synthetic:clips=2000,seed=1,frames=12,dim=32,silent_share=0.1")
    assert (s.clips, s.seed, s.frames, s.silent_share) == (2000, 1, 12, 0.1)
    assert s.video_dim == s.audio_dim == s.text_dim == 32
    assert parse_spec("synthetic:dim=32,audio_dim=16").audio_dim == 16  # explicit key wins


def test_preset_then_overrides() -> None:
    s = parse_spec("synthetic:clips=100,preset=msrvtt")
    want = SyntheticSpec(**{**PRESETS["msrvtt"], "clips": 100})
    assert s == want
    assert (s.frames, s.video_dim, s.text_tokens, s.val_clips) == (12, 512, 32, 1000)


def test_load_small_synthetic_names_it_by_spec() -> None:
    d = load_data("synthetic:clips=20,val_clips=5,test_clips=0,dim=8")
    assert d.name == "synthetic:clips=20,val_clips=5,test_clips=0,dim=8"
    assert d.train.n_clips == 20 and d.val.n_clips == 5 and d.test is None
    assert d.shapes.video_dim == 8


@pytest.mark.parametrize("spec,words", [
    ("synthetic:clip=5", ["unknown key 'clip'"]),
    ("synthetic:clips=abc", ["clips='abc'", "not a valid int"]),
    ("synthetic:silent_share=nan", ["silent_share", "not a valid float"]),
    ("synthetic:clips=0", ["clips=0", "must be >= 2"]),
    ("synthetic:silent_share=1.5", ["silent_share=1.5", "[0, 1]"]),
    ("synthetic:dtype=float64", ["dtype='float64'"]),
    ("synthetic:preset=kinetics", ["preset='kinetics'", "msrvtt"]),
    ("synthetic:clips=5,clips=6", ["'clips' given twice"]),
    ("synthetic:clips", ["'clips' is not key=value"]),
    ("synthetic:", ["nothing after"]),
    ("", ["data spec"]),
])
def test_bad_specs_name_the_key(spec: str, words: list[str]) -> None:
    with pytest.raises(DataError) as e:
        parse_spec(spec)
    assert isinstance(e.value, UserError)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_path_that_is_a_file(tmp_path) -> None:
    f = tmp_path / "x.npy"
    f.write_bytes(b"")
    with pytest.raises(DataError, match="is not a directory"):
        parse_spec(str(f))


def test_memory_guard_refuses_huge_specs_before_generating() -> None:
    with pytest.raises(DataError, match="GiB"):
        load_data("synthetic:preset=msrvtt,audio_tokens=1370")

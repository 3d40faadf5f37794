"""`nas train`: checkpoint reloads into an identical model; --resume continues exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nas.cli import main
from nas.config import FusionConfig, TrainConfig, save_config_file

SMALL_DATA = "synthetic:clips=96,val_clips=32,test_clips=0,seed=3"  # = conftest's


@pytest.fixture
def cfg_file(tmp_path: Path, tiny_kwargs: dict) -> Path:
    # dims deliberately differ from the data's (64): `nas train` fits them and says so
    fusion = FusionConfig(**tiny_kwargs, video_dim=512, audio_dim=768, text_dim=512, max_frames=12)
    train = TrainConfig(lr=2e-3, batch_size=16, epochs=2.0, seed=5, num_threads=1)
    return save_config_file(tmp_path / "cfg.yaml", fusion, train)


def _train(cfg: Path, out: Path, *extra: str) -> int:
    return main(["train", "--config", str(cfg), "--data", SMALL_DATA, "--out", str(out),
                 "--no-progress", *extra])


def test_checkpoint_reloads_into_an_identical_model(cfg_file: Path, tmp_path: Path, capsys) -> None:
    from nas.checkpoint import build_model_from_checkpoint
    from nas.data import load_data
    from nas.evaluate import retrieval_metrics, similarity

    out = tmp_path / "run"
    assert _train(cfg_file, out) == 0
    err = capsys.readouterr().err
    assert "video_dim: 512 -> 64 (from the data)" in err
    for name in ("last.pt", "best.pt", "metrics.json", "gates.json", "config.yaml"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert [round(e["epochs"]) for e in metrics["epochs"]] == [1, 2]
    assert "layer0/attn" in json.loads((out / "gates.json").read_text())

    model, ck = build_model_from_checkpoint(out / "last.pt")
    assert ck["step"] > 0 and ck["fusion"].video_dim == 64
    val = load_data(SMALL_DATA).val
    import numpy as np
    texts = val.text_batch(np.arange(val.n_texts))
    clips = val.clip_batch(np.arange(val.n_clips))
    with torch.no_grad():
        S = similarity(model, texts, clips)
    m = retrieval_metrics(S, torch.as_tensor(val.text_clip))
    last = metrics["epochs"][-1]
    for k in ("t2v_r1", "t2v_r5", "t2v_r10", "t2v_mnr", "v2t_r1", "v2t_mnr"):
        assert m[k] == pytest.approx(last[k], abs=1e-9), k


def test_resume_continues_where_it_stopped(cfg_file: Path, tmp_path: Path, monkeypatch) -> None:
    from nas import train as train_mod

    full, cut = tmp_path / "full", tmp_path / "cut"
    assert _train(cfg_file, full) == 0

    # interrupt the second run in its second epoch (after last.pt of epoch 1 was written)
    real = train_mod.Trainer.train_until

    def interrupted(self, target, progress=None):
        if self.step >= self.steps_per_epoch:
            raise KeyboardInterrupt
        return real(self, target, progress)

    monkeypatch.setattr(train_mod.Trainer, "train_until", interrupted)
    assert _train(cfg_file, cut) == 130
    monkeypatch.setattr(train_mod.Trainer, "train_until", real)
    half = json.loads((cut / "metrics.json").read_text())["epochs"]
    assert len(half) == 1

    assert _train(cfg_file, cut) == 2  # refuses to overwrite without --resume
    assert _train(cfg_file, cut, "--resume") == 0
    a = json.loads((full / "metrics.json").read_text())["epochs"]
    b = json.loads((cut / "metrics.json").read_text())["epochs"]
    strip = lambda e: {k: v for k, v in e.items() if k != "wall_s"}  # noqa: E731
    assert [strip(e) for e in b] == [strip(e) for e in a]  # exactly the uninterrupted run
    sa = torch.load(full / "last.pt", weights_only=True)["model"]
    sb = torch.load(cut / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_bad_config_file_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("fusion: {width: -4}\n")
    out = str(tmp_path / "o")
    assert main(["train", "--config", str(p), "--data", SMALL_DATA, "--out", out]) == 2
    assert "width" in capsys.readouterr().err


class _Tty:
    """A stream that says it is a terminal and keeps what is written."""

    def __init__(self) -> None:
        self.text = ""

    def isatty(self) -> bool:
        return True

    def write(self, s: str) -> None:
        self.text += s

    def flush(self) -> None:
        pass


def test_progress_bar_never_shows_a_rate_it_has_not_measured() -> None:
    from nas.cli.train import ProgressBar

    s = _Tty()
    bar = ProgressBar(s, total_steps=10, steps_per_epoch=5)
    bar(1, 10, 2.0)  # the first step: its duration is unknown
    assert "? it/s" in s.text and "eta ?" in s.text, s.text
    bar._last = 0.0  # let the next call draw
    bar(2, 10, 1.5)
    rate = float(s.text.split("\r")[-1].split("it/s")[0].split()[-1])
    assert 0 < rate < 1e6, s.text  # one step over a real interval, not 1 / 1e-9


def test_warnings_print_as_one_line_each(capsys) -> None:
    import io
    import warnings

    from nas.cli.train import warnings_as_lines
    from nas.train import GateSaturationWarning

    err = io.StringIO()
    with warnings_as_lines("train", err):
        warnings.simplefilter("always", GateSaturationWarning)
        for _ in range(2):
            warnings.warn("layer 0 gate_a: 80% of values saturated", GateSaturationWarning)
    assert err.getvalue() == "nas train: warning: layer 0 gate_a: 80% of values saturated\n"
    assert capsys.readouterr().err == ""  # no Python warning with a source line

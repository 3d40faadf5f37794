"""Checkpoints are self-describing, load with weights_only=True, and reject anything else."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from nas.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from nas.config import FusionConfig, TrainConfig
from nas.errors import UserError


def _save(path: Path) -> tuple[FusionConfig, TrainConfig, dict]:
    fusion = FusionConfig(width=32, layers=2, heads=2, video_dim=8, audio_dim=8, text_dim=8)
    train = TrainConfig(lr=3e-4, epochs=2.5, seed=7)
    lin = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(lin.parameters())
    lin(torch.randn(2, 4)).sum().backward()
    opt.step()
    state = lin.state_dict()
    save_checkpoint(path, fusion=fusion, train=train, model_state=state,
                    optimizer_state=opt.state_dict(), step=5, epoch=1.25, total_steps=10,
                    rng={"torch": torch.get_rng_state()}, history=[{"recall": 12.5}],
                    best_recall=12.5, extra={"data": "synthetic"})
    return fusion, train, state


def test_round_trip_is_self_describing_and_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "a" / "last.pt"
    fusion, train, state = _save(path)
    raw = torch.load(path, weights_only=True)  # no pickle of arbitrary objects inside
    assert raw["format"] == "nas-checkpoint" and isinstance(raw["rng"]["torch"], torch.Tensor)
    ck = load_checkpoint(path)
    assert ck["fusion"] == fusion and ck["train"] == train
    assert ck["step"] == 5 and ck["epoch"] == 1.25 and ck["history"] == [{"recall": 12.5}]
    assert all(torch.equal(ck["model"][k], v) for k, v in state.items())
    assert ck["optimizer"]["state"][0]["step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left


@pytest.mark.parametrize("kind", ["missing", "dir", "text", "hello", "state_dict", "pickle",
                                  "version", "truncated", "bad_config"])
def test_anything_else_is_a_clear_user_error(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "x.pt"
    if kind == "dir":
        path.mkdir()
    elif kind == "text":
        path.write_text("fusion: {}\n")
    elif kind == "hello":  # torch's legacy loader raises KeyError on this one
        path.write_text("hello")
    elif kind == "state_dict":
        torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    elif kind == "pickle":
        path.write_bytes(pickle.dumps(Path("/etc/passwd")))  # an arbitrary object
    elif kind == "version":
        _save(path)
        d = torch.load(path, weights_only=True)
        d["version"] = 99
        torch.save(d, path)
    elif kind == "truncated":
        _save(path)
        path.write_bytes(path.read_bytes()[:200])
    elif kind == "bad_config":
        _save(path)
        d = torch.load(path, weights_only=True)
        d["fusion"]["width"] = -1
        torch.save(d, path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert isinstance(e.value, UserError)
    assert str(e.value).startswith(f"{path} is not a nas checkpoint: ")
    assert "weights_only=False" not in str(e.value)  # never advise unpickling it

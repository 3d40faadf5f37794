"""Tiny configs and data shared by the training tests."""

from __future__ import annotations

import pytest

from nas.config import FusionConfig, TrainConfig

# Small enough for a 2-core CPU: a few hundred ms per proxy epoch.
TINY = dict(width=32, layers=2, heads=2, resampler_layers=1, resampler_queries=4)
SMALL_DATA = "synthetic:clips=96,val_clips=32,test_clips=0,seed=3"


@pytest.fixture(scope="session")
def small_data():
    from nas.data import load_data

    return load_data(SMALL_DATA)


@pytest.fixture
def tiny_fusion() -> FusionConfig:
    return FusionConfig(**TINY)


@pytest.fixture
def tiny_train() -> TrainConfig:
    return TrainConfig(lr=2e-3, batch_size=16, epochs=2.0, seed=1, num_threads=1)


@pytest.fixture
def small_spec() -> str:
    return SMALL_DATA


@pytest.fixture
def tiny_kwargs() -> dict:
    return dict(TINY)

"""Shared fixtures. Ray is started at most once per test session (``ray_session``)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

# The test evaluator (tests/faulty_evaluator.py) is handed to the search by its import path,
# ``tests.faulty_evaluator``: this checkout must be on the path of this process, of the Ray
# workers it starts (they inherit the environment) and of the commands tests run.
REPO = str(Path(__file__).resolve().parents[1])
if REPO not in sys.path:
    sys.path.insert(0, REPO)
if REPO not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (REPO, os.environ.get("PYTHONPATH", "")) if p)

# Ray 2.60 enables token auth and writes under $HOME; keep tests self-contained.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")


@pytest.fixture(scope="session")
def ray_tmpdir() -> str:
    # Ray's socket paths must stay short (< 108 chars): use /tmp directly.
    return tempfile.mkdtemp(prefix="rt", dir="/tmp")


@pytest.fixture(scope="session")
def ray_session(ray_tmpdir: str):
    """A local Ray, started once for the whole test session and shut down at the end."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=ray_tmpdir,
                 log_to_driver=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()

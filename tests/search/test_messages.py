"""The worker-to-driver messages: encode and decode, both ways, as plain data."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest

from nas.search import messages
from nas.search.messages import RungReport, TrialDone, TrialFailed, decode, encode

CASES = [
    RungReport(rung=1, metrics={"recall": 42.5, "t2v_mnr": 3.0, "epochs": 2.0}, node="n1"),
    TrialDone(metrics={"recall": 60.0, "v2t_recall": 55.5}, epochs=4.0, stopped=False,
              wall_s=7.25, gates={"video": {"mean": 0.5, "decay": [0.1, 0.2]}}, node="n2"),
    TrialDone(metrics={"recall": 10.0}, epochs=1.0, stopped=True, wall_s=1.0),
    TrialFailed(error="TrainingFailed: loss is NaN at step 3", wall_s=0.5, node="n1"),
    TrialFailed(error="RuntimeError: boom"),
]


@pytest.mark.parametrize("msg", CASES, ids=lambda m: type(m).__name__)
def test_round_trip_through_plain_data(msg: messages.WorkerMessage) -> None:
    wire = encode(msg)
    assert list(wire) == [messages.KEY]
    # plain data only: JSON and pickle round trips keep it, and no class of ours is needed
    assert pickle.loads(pickle.dumps(wire)) == wire
    assert b"nas.search.messages" not in pickle.dumps(wire)
    assert decode(json.loads(json.dumps(wire))) == msg
    # Tune adds its own keys beside ours (ignored) and flattens nested dicts before its
    # scheduler and searcher see a result (the envelope is a sequence: kept whole)
    from ray.tune.utils import flatten_dict

    flat = flatten_dict({**wire, "time_total_s": 3.0, "config": {"a": {"b": 1}}})
    assert "config/a/b" in flat
    assert decode(flat) == msg


def test_values_from_training_become_plain_numbers() -> None:
    msg = TrialDone(metrics={"recall": np.float32(12.5), "note": "x", "steps": 3},
                    epochs=np.float64(2.0), stopped=np.bool_(False), wall_s=1,
                    gates={"a": np.float32(0.25), "per_layer": (np.float64(1.0), 2)})
    wire = encode(msg)
    json.dumps(wire)  # would raise on numpy scalars
    got = decode(wire)
    assert isinstance(got, TrialDone)
    assert got.metrics == {"recall": 12.5, "steps": 3.0}  # non-numbers are left out
    assert got.gates == {"a": 0.25, "per_layer": [1.0, 2]}
    assert got.epochs == 2.0 and got.stopped is False


def test_results_without_a_message_and_malformed_ones() -> None:
    assert decode(None) is None
    assert decode({"time_total_s": 1.0}) is None
    with pytest.raises(ValueError, match="kind one of"):
        decode({messages.KEY: (1, "final", {})})
    with pytest.raises(ValueError, match="version"):
        decode({messages.KEY: (99, *encode(CASES[0])[messages.KEY][1:])})
    with pytest.raises(ValueError, match="expected"):
        decode({messages.KEY: {"kind": "rung"}})
    with pytest.raises(ValueError, match="kind 'rung'.*KeyError"):
        decode({messages.KEY: (1, "rung", {"metrics": {}})})
    with pytest.raises(TypeError):
        encode({"recall": 1.0})  # type: ignore[arg-type]


def test_the_message_module_imports_neither_ray_nor_optuna() -> None:
    code = ("import sys, nas.search.messages; "
            "print(sorted(m for m in ('ray', 'optuna') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"

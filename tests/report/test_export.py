"""Export pick policies on the synthetic study (no training)."""

from __future__ import annotations

import numpy as np
import pytest

from nas.config import FusionConfig, config_key, load_config_file
from nas.export import ExportError, choose_trial, export_trial, knee_index, parse_pick


@pytest.mark.parametrize("pick,number", [
    ("knee", 1),
    ("best:recall", 3),
    ("best:query_gflops", 6),
    ("under:query_gflops<=10", 1),
    ("under:query_gflops<=9.99", 0),
    ("under: query_gflops <= 1e3", 3),
    ("under:recall>=160", 3),
    ("trial:2", 2),  # full budget though dominated: exportable
])
def test_pick_returns_the_right_trial(study, pick, number):
    assert choose_trial(study, pick).number == number


def test_stopped_trial_is_refused_with_the_reason(study):
    with pytest.raises(ExportError) as e:
        choose_trial(study, "trial:4")
    msg = str(e.value)
    assert "trial 4 was stopped at 1.5 of 4.5 epochs (status stopped)" in msg
    assert "only full-budget trials" in msg


def test_failed_trial_is_refused_with_the_reason(study):
    with pytest.raises(ExportError, match=r"trial 5 did not complete \(status failed: .*nan"):
        choose_trial(study, "trial:5")


def test_export_trial_refuses_directly_too(study, tmp_path):
    t = next(t for t in study.trials if t.number == 4)
    with pytest.raises(ExportError, match="stopped"):
        export_trial(study, t, tmp_path / "x.yaml")
    assert not (tmp_path / "x.yaml").exists()


@pytest.mark.parametrize("pick,match", [
    ("under:query_gflops<=0.1", r"no Pareto-front trial has query_gflops <= 0.1"),
    ("best:latency", r"unknown objective 'latency'.*\['recall', 'query_gflops'\]"),
    ("trial:99", "no trial 99"),
    ("under:query_gflops", "OBJECTIVE<=VALUE"),
    ("under:query_gflops<=cheap", "not a number"),
    ("median", "expected knee"),
    ("trial:x", "not a trial number"),
])
def test_bad_or_unsatisfiable_picks_name_the_pick(study, pick, match):
    with pytest.raises(ExportError, match=match) as e:
        choose_trial(study, pick)
    assert pick.split(":")[0] in str(e.value)


def test_knee_is_farthest_from_the_extremes_line():
    # normalised: (1,0) (0.909,0.005) (0.455,0.095) (0,1): the third is farthest
    vals = np.array([[90, 0.5], [100, 1.0], [150, 10.0], [200, 100.0]])
    assert knee_index(vals, ["maximize", "minimize"]) == 2
    # symmetric convex front in minimisation form: the middle point
    vals = np.array([[0.0, 1.0], [0.2, 0.2], [1.0, 0.0], [0.5, 0.1]])
    assert knee_index(vals, ["minimize", "minimize"]) == 1
    # concave front: the middle point lies beyond the line, so an extreme is the knee
    vals = np.array([[0.0, 1.0], [0.8, 0.8], [1.0, 0.0]])
    assert knee_index(vals, ["minimize", "minimize"]) in (0, 2)
    # three objectives: closest to utopia after normalisation
    vals = np.array([[0, 1, 1], [1, 0, 1], [0.3, 0.3, 0.3], [1, 1, 0]], dtype=float)
    assert knee_index(vals, ["minimize"] * 3) == 2


def test_exported_file_is_what_nas_train_reads(study, tmp_path):
    trial = choose_trial(study, parse_pick("knee"))
    out = export_trial(study, trial, tmp_path / "sub" / "knee.yaml")
    fusion, train = load_config_file(out)
    assert fusion == FusionConfig.from_dict(trial.user_attrs["fusion"])
    assert train.to_dict() == trial.user_attrs["train"]
    import yaml

    meta = yaml.safe_load(out.read_text())["meta"]
    # two ids, named apart: the configuration's (what the front table shows) and the
    # architecture's
    assert meta["config_id"] == trial.user_attrs["config_id"] == config_key(fusion, train)
    assert meta["fusion_id"] == fusion.fusion_id != meta["config_id"]
    assert meta["study"] == "synthetic" and meta["trial"] == 1
    assert meta["values"] == {"recall": 150.0, "query_gflops": 10.0}
    assert not list(out.parent.glob(".*tmp"))  # no temp file left behind

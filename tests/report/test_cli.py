"""The report, export, dashboard-artifact and ablate commands end to end (in process)."""

from __future__ import annotations

import csv
import json
import re
import shlex
import warnings

import pytest
import yaml

from nas.cli import main
from nas.config import FusionConfig, TrainConfig, load_config_file, save_config_file

from report_helpers import DATA, FRONT, make_study


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    make_study(url, "demo")
    return url


def test_report_writes_one_self_contained_file(db, tmp_path, capsys):
    out = tmp_path / "r" / "report.html"
    assert main(["report", "--study", "demo", "--storage", db, "--out", str(out)]) == 0
    html = out.read_text()
    # plotly.js inlined exactly once, no external script
    assert html.count("Plotly JavaScript Library") <= 2  # licence banner of the one copy
    assert not re.search(r"<script[^>]+src=", html)
    for section in ("Pareto front", "Hypervolume history", "Parameter importance",
                    "Learning curves by rung", "Proxy fidelity", "Gate distributions",
                    "The front"):
        assert section in html
    assert "NAS report: demo" in html and "query_gflops" in html
    # the front table lists exactly the front's trials
    table = html[html.index("<table>"):]
    assert sorted(int(n) for n in re.findall(r"<tr><td>(\d+)</td>", table)) == sorted(FRONT)
    assert not list(out.parent.glob(".*.tmp"))


def test_report_of_an_empty_study_still_renders(tmp_path):
    import optuna

    url = f"sqlite:///{tmp_path / 's.db'}"
    st = optuna.create_study(study_name="empty", storage=url, directions=["maximize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st.set_metric_names(["recall", "query_gflops"])
    out = tmp_path / "e.html"
    assert main(["report", "--study", "empty", "--storage", url, "--out", str(out)]) == 0
    assert "No trial reached the full budget yet" in out.read_text()


def test_unknown_study_and_missing_db_are_user_errors(db, tmp_path, capsys):
    assert main(["report", "--study", "nope", "--storage", db]) == 2
    assert "no such study" in capsys.readouterr().err
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["export", "--study", "demo", "--storage", missing, "--out", "x.yaml"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()


def test_export_cli_refuses_stopped_trial(db, tmp_path, capsys):
    out = tmp_path / "c.yaml"
    rc = main(["export", "--study", "demo", "--storage", db, "--pick", "trial:4",
               "--out", str(out)])
    assert rc == 2 and not out.exists()
    assert "trial 4 was stopped at 1.5 of 4.5 epochs" in capsys.readouterr().err


@pytest.mark.slow
def test_export_then_train_reads_it_back(db, tmp_path, capsys):
    from nas.checkpoint import load_checkpoint

    cfg = tmp_path / "knee.yaml"
    assert main(["export", "--study", "demo", "--storage", db, "--pick", "best:query_gflops",
                 "--out", str(cfg)]) == 0
    fusion, train = load_config_file(cfg)
    run_dir = tmp_path / "run"
    # no --data: the study's data recorded in the exported file
    assert main(["train", "--config", str(cfg), "--epochs", "0.25",
                 "--out", str(run_dir), "--no-progress"]) == 0
    assert f"nas train: data {DATA} (recorded in {cfg}, meta.data)" in capsys.readouterr().err
    assert json.loads((run_dir / "metrics.json").read_text())["data"] == DATA
    ck = load_checkpoint(run_dir / "last.pt")
    assert ck["fusion"] == fusion  # the architecture trained is exactly the exported one
    got = ck["train"] if isinstance(ck["train"], TrainConfig) else TrainConfig.from_dict(
        ck["train"])
    assert got == train.replace(epochs=0.25)  # only the overridden budget differs


def test_gate_artifacts_on_running_and_finished_trials(tmp_path):
    from optuna.artifacts import get_all_artifact_meta

    from nas.dashboard import attach_gate_artifacts, open_artifact_store

    from report_helpers import gate_stats

    url = f"sqlite:///{tmp_path / 'a.db'}"
    study = make_study(url, "demo")
    store = open_artifact_store(tmp_path / "a.db.artifacts")
    # finished trials: attached to the study, one per full-budget trial, idempotent
    names = attach_gate_artifacts(study, store)
    assert sorted(names) == sorted(f"gates-trial-{n}.svg" for n in (0, 1, 2, 3, 6))
    assert attach_gate_artifacts(study, store) == []
    metas = get_all_artifact_meta(study)
    assert sorted(m.filename for m in metas) == sorted(names)
    with store.open_reader(metas[0].artifact_id) as f:
        svg = f.read().decode()
    assert svg.startswith("<svg") and "layer 1" in svg and "attn" in svg
    # a running full-budget trial (what the search driver does before tell): on the trial
    t = study.ask()
    t.set_user_attr("full_budget", True)
    t.set_user_attr("gates", gate_stats(9))
    frozen = study._storage.get_trial(t._trial_id)
    assert attach_gate_artifacts(study, store, [frozen]) == [f"gates-trial-{t.number}.svg"]
    study.tell(t, [1.0, 1.0])
    done = study._storage.get_trial(t._trial_id)
    assert [m.filename for m in get_all_artifact_meta(done, storage=study._storage)] == [
        f"gates-trial-{t.number}.svg"]
    assert attach_gate_artifacts(study, store) == []  # not duplicated onto the study


def test_ablate_one_row_per_removed_component_plus_full(tmp_path, capsys):
    # text-agnostic (fast to evaluate) with two removable components
    fusion = FusionConfig(video_dim=32, audio_dim=32, text_dim=32, max_frames=4, width=16,
                          layers=1, heads=2, resampler_queries=4, query_fusion="none",
                          gate_inputs="va", pooling="attention")
    assert fusion.active_components == ["adaptive_pooling", "resampler"]
    cfg = save_config_file(tmp_path / "tiny.yaml", fusion,
                           TrainConfig(epochs=0.25, batch_size=16, num_threads=1, device="cpu"))
    out = tmp_path / "abl"
    assert main(["ablate", "--config", str(cfg), "--seeds", "2", "--data", DATA,
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    with open(out / "ablation.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["variant"] for r in rows] == ["full", "w/o adaptive_pooling", "w/o resampler"]
    assert all(r["n"] == "2" and r["failed"] == "0" for r in rows)
    assert rows[1]["fusion_id"] == fusion.without("adaptive_pooling").fusion_id
    doc = json.loads((out / "ablation.json").read_text())
    assert len(doc["runs"]) == 6 and doc["meta"]["components"] == fusion.active_components
    for r in doc["summary"]:
        assert r["t2v_recall_mean"] > 0 and r["t2v_recall_std"] >= 0 and r["query_gflops_mean"] > 0
    assert "w/o resampler" in printed and "±" in printed
    assert len({r["fusion_id"] for r in rows}) == 3  # three different architectures


def test_ablate_bad_flags(tmp_path, capsys):
    assert main(["ablate", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err
    cfg = save_config_file(tmp_path / "c.yaml", FusionConfig(), TrainConfig())
    assert main(["ablate", "--config", str(cfg), "--seeds", "0"]) == 2
    assert "--seeds" in capsys.readouterr().err


def test_front_matches_the_search_package(db):
    """Same front as nas.search.pareto_front (the contract's definition)."""
    import optuna

    pareto = pytest.importorskip("nas.search.pareto")
    from nas.report.data import pareto_points

    study = optuna.load_study(study_name="demo", storage=db)
    pts = pareto_points(study.trials, study.directions, study.metric_names)
    mine = sorted(pts.numbers[i] for i in pts.front_order)
    assert mine == sorted(t.number for t in pareto.pareto_front(study)) == sorted(FRONT)


def test_export_meta_carries_the_data_spec_for_train_and_ablate(db, tmp_path, capsys):
    from nas.cli.train import config_data

    out = tmp_path / "k.yaml"
    assert main(["export", "--study", "demo", "--storage", db, "--out", str(out)]) == 0
    hint = capsys.readouterr().out
    assert f"nas train --config {shlex.quote(str(out))} (on the study's data" in hint
    assert config_data(None, str(out)) == (DATA, f"recorded in {out}, meta.data")
    assert config_data("synthetic", str(out)) == ("synthetic", "--data")
    bare = save_config_file(tmp_path / "bare.yaml", FusionConfig(), TrainConfig())
    assert config_data(None, str(bare))[0] == "synthetic"
    assert yaml.safe_load(out.read_text())["meta"]["trial"] == 1  # knee by default


def test_report_and_export_default_to_the_only_study(db, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--storage", db]) == 0
    assert (tmp_path / "report.html").stat().st_size > 0
    # --out defaults to the pick's name
    assert main(["export", "--storage", db]) == 0
    assert main(["export", "--storage", db, "--pick", "best:recall"]) == 0
    assert main(["export", "--storage", db, "--pick", "trial:1"]) == 0
    assert main(["export", "--storage", db, "--pick", "under:query_gflops<=10"]) == 0
    for name in ("knee", "best-recall", "trial-1", "under-query_gflops-le-10"):
        assert load_config_file(tmp_path / f"{name}.yaml")
    capsys.readouterr()
    # two studies: which one is ambiguous, so both commands list them and write nothing
    make_study(db, "other")
    for cmd in (["report", "--out", "two.html"], ["export", "--out", "two.yaml"]):
        assert main([*cmd, "--storage", db]) == 2
        err = capsys.readouterr().err
        assert "holds 2 studies (demo, other); name one with --study NAME" in err, err
    assert not (tmp_path / "two.html").exists() and not (tmp_path / "two.yaml").exists()


def test_export_default_out_names():
    from nas.cli.export import default_out

    assert default_out("knee") == "knee.yaml"
    assert default_out("best:recall") == "best-recall.yaml"
    assert default_out("trial:12") == "trial-12.yaml"
    assert default_out("under:query_gflops<=0.5") == "under-query_gflops-le-0.5.yaml"
    assert default_out("under:recall>=100") == "under-recall-ge-100.yaml"

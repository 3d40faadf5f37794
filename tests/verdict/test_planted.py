"""Verdicts against the fake evaluator with planted effects (in process, real SQLite)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.cli import main
from nas.verdict.core import VerdictOptions, run_verdict
from nas.verdict.stats import COSTS, NONE, PAYS
from tests.faulty_evaluator import FAULTY

from verdict_helpers import PLANTED_EVALUATOR, PLANTED_VARIANTS, copy_study, fake_study

FAKE_LOCAL = ["--evaluator", FAULTY, "--executor", "local"]


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> str:
    """One fake search on the planted data (each test works on its own copy)."""
    return fake_study(tmp_path_factory.mktemp("searched"))


def _verdict(url: str, seeds: int = 5, **kw) -> dict:
    study = optuna.load_study(study_name="p", storage=url)
    opts = VerdictOptions(seeds=seeds, variants=PLANTED_VARIANTS, executor="local",
                          evaluator=PLANTED_EVALUATOR, **kw)
    return run_verdict(study, study._storage, opts, out=open("/dev/null", "w")).doc


def test_planted_effects_get_their_verdicts(searched: str, tmp_path: Path) -> None:
    url = copy_study(searched, tmp_path)
    doc = _verdict(url)
    rows = {r["variant"]: r for r in doc["rows"]}
    assert [r["action"] for r in doc["rows"]] == ["add"] * 4  # all off in the quick space
    assert all(r["n"] == 5 for r in doc["rows"])

    gain = rows["residual_gate"]
    assert gain["word"] == PAYS
    r, c = gain["effects"]["recall"], gain["effects"]["query_gflops"]
    assert r["lo"] > 0 and r["lo"] <= 6.0 <= r["hi"]  # the interval covers the planted +6
    assert c["mean"] == pytest.approx(0.5) and c["hi"] - c["lo"] == pytest.approx(0, abs=1e-9)

    noop = rows["hierarchical_gates"]
    assert noop["word"] == NONE
    assert noop["effects"]["recall"]["lo"] <= 0 <= noop["effects"]["recall"]["hi"]
    assert noop["effects"]["query_gflops"]["mean"] == pytest.approx(0)

    harm = rows["uncertainty_gates"]
    assert harm["word"] == COSTS
    assert harm["effects"]["recall"]["lo"] <= -5.0 <= harm["effects"]["recall"]["hi"] < 0

    dear = rows["temporal_gates"]  # recall unchanged, one GFLOP dearer
    assert dear["word"] == COSTS
    assert dear["effects"]["recall"]["lo"] <= 0 <= dear["effects"]["recall"]["hi"]
    assert dear["effects"]["query_gflops"]["mean"] == pytest.approx(1.0)

    # every run is one trial of the companion study, with the study's objectives
    comp = optuna.load_study(study_name="p:verdict", storage=url)
    assert comp.metric_names == ["recall", "query_gflops"]
    trials = comp.get_trials()
    assert len(trials) == 5 * 5 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted({(t.user_attrs["role"], t.user_attrs["variant"]) for t in trials}) == \
        sorted([("base", None)] + [("variant", v) for v in PLANTED_VARIANTS.split(",")])
    assert len({t.user_attrs["verdict_key"] for t in trials}) == 25
    assert {t.user_attrs["seed"] for t in trials} == set(range(5))
    assert doc["runs"] == {"planned": 25, "trained_now": 25, "reused": 0, "lost": 0,
                           "failed": 0}

    # a rerun reuses every run and gives the same verdict
    again = _verdict(url)
    assert again["runs"]["trained_now"] == 0 and again["runs"]["reused"] == 25
    assert again["rows"] == doc["rows"]
    # more seeds later: only the new seeds are trained
    more = _verdict(url, seeds=6)
    assert more["runs"]["trained_now"] == 5 and more["runs"]["reused"] == 25


def test_verdict_cli_writes_table_files_attr_and_artifact(searched: str, tmp_path: Path,
                                                           capsys, monkeypatch) -> None:
    url = copy_study(searched, tmp_path)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "v"
    rc = main(["verdict", "--study", "p", "--storage", url, "--seeds", "3", "--variants",
               PLANTED_VARIANTS, "--out", str(out), *FAKE_LOCAL])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Quick estimate (no training)" in text and "Verdicts around trial" in text
    assert "3 residual_gate" in text and "pays" in text
    doc = json.loads((out / "verdict.json").read_text())
    assert {r["variant"]: r["word"] for r in doc["rows"]}["residual_gate"] == PAYS
    header = (out / "verdict.csv").read_text().splitlines()[0].split(",")
    assert header[:5] == ["variant", "plan", "action", "n", "verdict"]
    assert "query_gflops_lo" in header and "recall_base" in header
    assert (out / "quick_estimate.csv").read_text().startswith("variant,plan,n_on,n_off")
    study = optuna.load_study(study_name="p", storage=url)
    assert study.user_attrs["verdict"]["rows"] == doc["rows"]
    from optuna.artifacts import get_all_artifact_meta
    names = [m.filename for m in get_all_artifact_meta(study)]
    assert f"verdict-trial-{doc['point']['trial']}.csv" in names
    # and nas report shows it
    assert main(["report", "--study", "p", "--storage", url, "--out",
                 str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert "Verdicts: which variants pay" in html and "costs without paying" in html


def test_three_objectives(tmp_path: Path) -> None:
    """Any objectives of the study: a third (a cost) gets its own effect column."""
    url = fake_study(tmp_path, objectives="recall,query_gflops,params")
    doc = _verdict(url, seeds=3)
    assert [o["name"] for o in doc["objectives"]] == ["recall", "query_gflops", "params"]
    row = {r["variant"]: r for r in doc["rows"]}["residual_gate"]
    assert set(row["effects"]) == {"recall", "query_gflops", "params"}
    assert row["word"] == PAYS


def test_quick_estimate_is_labelled_and_has_no_word(searched: str, tmp_path: Path) -> None:
    url = copy_study(searched, tmp_path)
    doc = _verdict(url, quick_only=True)
    assert "rows" not in doc  # no paired evidence, no words
    q = doc["quick_estimate"]
    assert q["n_trials"] >= 1 and len(q["rows"]) == 4
    assert all("word" not in r for r in q["rows"])
    assert optuna.load_study(study_name="p", storage=url).get_trials() and \
        "p:verdict" not in [s.study_name for s in optuna.get_all_study_summaries(url)]


# ----------------------------------------------------------------------------- bad input

def test_study_without_a_full_budget_trial(tmp_path: Path, capsys) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    st = optuna.create_study(study_name="fresh", storage=url,
                             directions=["maximize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        st.set_metric_names(["recall", "query_gflops"])
    assert main(["verdict", "--study", "fresh", "--storage", url, *FAKE_LOCAL]) == 2
    err = capsys.readouterr().err
    assert "study 'fresh' has no trial that reached the full budget" in err


def test_point_not_on_the_front_lists_the_front(searched: str, tmp_path: Path,
                                                capsys) -> None:
    url = copy_study(searched, tmp_path)
    before = (tmp_path / "studies.db").read_bytes()
    assert main(["verdict", "--study", "p", "--storage", url, "--point", "trial:999",
                 *FAKE_LOCAL]) == 2
    err = capsys.readouterr().err
    front = [t.number for t in optuna.load_study(study_name="p", storage=url).best_trials]
    assert "trial 999 is not on the Pareto front of study 'p'; the front is: trial" in err
    assert all(f"trial {n} (recall=" in err for n in front)
    assert (tmp_path / "studies.db").read_bytes() == before  # nothing written


@pytest.mark.parametrize("args,msg", [
    (["--seeds", "1"], "--seeds: at least 2 are needed"),
    (["--variants", "warp"], "--variants: unknown variant(s) 'warp'"),
    (["--point", "nowhere"], "--point 'nowhere': expected knee, best:OBJECTIVE"),
    (["--point", "best:speed"], "--point 'best:speed': unknown objective 'speed'"),
])
def test_bad_flags(searched: str, tmp_path: Path, capsys, args, msg) -> None:
    url = copy_study(searched, tmp_path)
    assert main(["verdict", "--study", "p", "--storage", url, *args, *FAKE_LOCAL]) == 2
    assert msg in capsys.readouterr().err

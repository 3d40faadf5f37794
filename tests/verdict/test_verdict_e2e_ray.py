"""A real verdict at tiny size: real proxy training on a real local Ray, real SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.cli import main
from nas.search.driver import SearchOptions, run_search
from nas.verdict.stats import WORDS

pytestmark = pytest.mark.slow
TINY = ("synthetic:clips=48,val_clips=24,test_clips=0,frames=4,audio_tokens=4,text_tokens=3,"
        "video_dim=16,audio_dim=16,text_dim=16,min_captions=1,max_captions=2")


def test_tiny_verdict_on_ray(ray_session, tmp_path: Path, capsys, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path}/studies.db"
    run_search(SearchOptions(space="quick", study="t", storage=url, data=TINY, trials=3,
                             executor="local", quiet=True))
    monkeypatch.chdir(tmp_path)
    args = ["verdict", "--study", "t", "--storage", url, "--seeds", "2", "--variants",
            "text_guidance,residual_gate", "--concurrency", "2", "--out", str(tmp_path / "v")]
    assert main(args) == 0
    out = capsys.readouterr()
    doc = json.loads((tmp_path / "v" / "verdict.json").read_text())
    assert doc["runs"] == {"planned": 6, "trained_now": 6, "reused": 0, "lost": 0,
                           "failed": 0}
    rows = {r["variant"]: r for r in doc["rows"]}
    assert set(rows) == {"text_guidance", "residual_gate"}
    for r in rows.values():
        assert r["n"] == 2 and r["word"] in WORDS and r["action"] in ("add", "remove")
        e = r["effects"]["recall"]
        assert e["lo"] <= e["mean"] <= e["hi"]
    # text guidance makes every query fuse the gallery: a measurable cost, exact per seed
    tg = rows["text_guidance"]["effects"]["query_gflops"]
    assert tg["mean"] > 0 if rows["text_guidance"]["action"] == "add" else tg["mean"] < 0
    assert "Verdicts around trial" in out.out

    comp = optuna.load_study(study_name="t:verdict", storage=url)
    trials = comp.get_trials()
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    assert all(t.user_attrs["metrics"]["recall"] == pytest.approx(t.values[0])
               for t in trials)
    # the rerun trains nothing
    assert main(args) == 0
    assert "6 already recorded in 't:verdict', 0 to train" in capsys.readouterr().err

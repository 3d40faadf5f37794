"""Resuming a study: the space is compared as parsed, not as text (nas.search.study)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from nas.errors import UserError
from nas.search import records
from nas.search.driver import SearchOptions, run_search
from nas.search.evaluator import EvaluatorSpec
from nas.search.space import load_space

optuna.logging.set_verbosity(optuna.logging.WARNING)

QUICK = load_space("quick").text


def _opts(tmp_path: Path, space: Path, **kw) -> SearchOptions:
    base = dict(space=str(space), study="s", storage=f"sqlite:///{tmp_path}/s.db", trials=2,
                evaluator=EvaluatorSpec.fake(), executor="local", quiet=True, seed=1)
    base.update(kw)
    return SearchOptions(**base)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_resume_accepts_a_space_that_differs_only_in_comments_and_layout(
        tmp_path: Path) -> None:
    space = _write(tmp_path / "quick.yaml", QUICK)
    run_search(_opts(tmp_path, space))
    # The same space: other comments, blank lines, flow -> block style, description.
    edited = QUICK.replace("# A small space", "# edited: a small space").replace(
        "  width: {choices: [16, 32]}", "\n  # the width\n  width:\n    choices: [16, 32]"
    ).replace("description: A few", "description: Still a few")
    assert edited != QUICK
    _write(space, edited)
    summary = run_search(_opts(tmp_path, space, trials=3))
    assert summary.trained == 3
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/s.db")
    assert study.user_attrs["space_text"] == QUICK  # the creator's text is kept


@pytest.mark.parametrize("change, named", [
    (("  width: {choices: [16, 32]}", "  width: {choices: [16, 32, 64]}"),
     "dimension 'width' {16, 32} -> {16, 32, 64}"),
    (("  layer_decay: {choices: [none, fixed]}\n", ""), "dimension 'layer_decay' removed"),
    (("lr: 0.002", "lr: 0.003"), "base.train.lr 0.002 -> 0.003"),
    (("  layers: {type: int, low: 1, high: 2}", "  layers: {type: int, low: 1, high: 3}"),
     "dimension 'layers' int [1, 2] -> int [1, 3]"),
])
def test_resume_refuses_a_real_change_naming_it(tmp_path: Path, change: tuple[str, str],
                                                named: str) -> None:
    space = _write(tmp_path / "quick.yaml", QUICK)
    run_search(_opts(tmp_path, space))
    assert change[0] in QUICK
    _write(space, QUICK.replace(*change))
    with pytest.raises(UserError, match="different search space") as e:
        run_search(_opts(tmp_path, space, trials=3))
    assert named in str(e.value)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/s.db")
    assert records.counted(study.get_trials()) == 2  # nothing more was trained


def test_differences_is_empty_for_the_same_space_and_symmetric_in_its_findings() -> None:
    a = load_space("quick")
    assert a.differences(a) == []
    from nas.search.space import parse_space

    b = parse_space(QUICK.replace("  gate_inputs: {choices: [va, vat]}\n", ""), "b")
    assert a.differences(b) == ["dimension 'gate_inputs' removed"]
    assert b.differences(a) == ["dimension 'gate_inputs' added"]


def _pragmas(storage: optuna.storages.RDBStorage) -> tuple[str, int]:
    with storage.engine.connect() as conn:
        return (str(conn.exec_driver_sql("PRAGMA journal_mode").scalar()).lower(),
                int(conn.exec_driver_sql("PRAGMA synchronous").scalar()))


def test_a_wal_study_commits_without_fsync_and_a_rollback_journal_keeps_full(
        tmp_path: Path) -> None:
    """WAL + synchronous=NORMAL (1) once the study is open; a database that is not in
    WAL mode keeps SQLite's FULL (2), under which NORMAL could corrupt it on power loss."""
    from nas.search.study import enable_wal, open_storage

    plain = open_storage(f"sqlite:///{tmp_path}/plain.db")
    assert _pragmas(plain) == ("delete", 2)
    enable_wal(plain)
    assert _pragmas(plain) == ("wal", 1)  # the connections opened from now on
    run_search(_opts(tmp_path, _write(tmp_path / "quick.yaml", QUICK)))
    # a new process's storage: new connections see the persistent WAL mode
    assert _pragmas(open_storage(f"sqlite:///{tmp_path}/s.db")) == ("wal", 1)
    assert _pragmas(open_storage(f"sqlite:///{tmp_path}/other.db")) == ("delete", 2)

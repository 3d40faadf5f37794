"""optuna-dashboard on a study storage, and the per-trial gate-plot artifacts it shows.

Artifacts live in an Optuna ``FileSystemArtifactStore`` beside the storage: for
``sqlite:///studies.db`` the folder ``studies.db.artifacts/``; for other URLs the folder
must be given (``--artifacts``), else ``./nas-artifacts``.

Optuna attaches artifacts to a trial through a trial system attribute, and a finished
trial can no longer be updated. So:

- the search driver calls :func:`attach_running_trial_gates` for a full-budget trial
  *before* it records the trial as complete (the trial is still RUNNING): the plot is
  attached to the trial and shows on its page;
- for trials already finished without one (older studies, other drivers), ``nas dashboard``
  attaches the plot to the study instead, named ``gates-trial-<N>.svg``; it shows in the
  study's artifact list.

Plain ``optuna-dashboard sqlite:///studies.db --artifact-dir studies.db.artifacts`` shows
the same study and artifacts.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from nas.errors import UserError
from nas.report.data import gate_summaries
from nas.report.svg import gate_svg

__all__ = ["artifact_dir_for", "attach_gate_artifacts", "attach_running_trial_gates",
           "gate_artifact_name", "open_artifact_store", "serve"]

_ARTIFACT_PREFIX = "artifacts:"


def artifact_dir_for(storage_url: str) -> Path:
    """The artifact folder beside a storage: ``<db file>.artifacts`` for SQLite URLs."""
    if storage_url.startswith("sqlite:///"):
        db = storage_url[len("sqlite:///"):]
        if db and db != ":memory:":
            return Path(db + ".artifacts")
    return Path("nas-artifacts")


def open_artifact_store(path: str | os.PathLike[str]) -> Any:
    """An Optuna FileSystemArtifactStore rooted at ``path`` (created if missing)."""
    from optuna.artifacts import FileSystemArtifactStore

    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"artifact folder {str(p)!r}: cannot create: {e.strerror}") from None
    return FileSystemArtifactStore(str(p))


def gate_artifact_name(number: int) -> str:
    """File name of trial ``number``'s gate plot."""
    return f"gates-trial-{number}.svg"


def _existing_names(system_attrs: dict[str, Any]) -> set[str]:
    names = set()
    for k, v in system_attrs.items():
        if k.startswith(_ARTIFACT_PREFIX):
            try:
                names.add(json.loads(v)["filename"])
            except (TypeError, ValueError, KeyError):
                continue
    return names


def attach_gate_artifacts(study: Any, artifact_store: Any,
                          trials: Iterable[Any] | None = None) -> list[str]:
    """Upload the gate-distribution SVG of full-budget trials that lack one.

    ``trials`` defaults to every trial of the study. A trial qualifies when its user attrs
    hold ``gates`` and it reached the full budget (``full_budget`` true, or COMPLETE without
    the attr). RUNNING trials get the artifact on the trial; finished ones on the study
    (see the module docstring). Returns the names uploaded. Idempotent.
    """
    from optuna.artifacts import upload_artifact

    from nas.search._optuna import storage_of, study_id

    storage = storage_of(study)  # the public API accepts it for FrozenTrial uploads
    todo = list(study.get_trials(deepcopy=False) if trials is None else trials)
    on_study = _existing_names(storage.get_study_system_attrs(study_id(study)))
    uploaded: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nas-gates-") as tmp:
        for t in todo:
            ua = t.user_attrs
            running = t.state.name == "RUNNING"
            full = bool(ua.get("full_budget", t.state.name == "COMPLETE"))
            if not full or not ua.get("gates") or t.state.name not in ("RUNNING", "COMPLETE"):
                continue
            name = gate_artifact_name(t.number)
            if name in on_study or name in _existing_names(t.system_attrs):
                continue
            path = _write_gate_svg(Path(tmp) / name, study, t.number, ua["gates"], t.values)
            target = t if running else study
            upload_artifact(artifact_store=artifact_store, file_path=str(path),
                            study_or_trial=target, storage=storage if running else None,
                            mimetype="image/svg+xml")
            uploaded.append(name)
            if not running:
                on_study.add(name)
    return uploaded


def _write_gate_svg(path: Path, study: Any, number: int, gates: dict[str, Any],
                    values: Iterable[float] | None) -> Path:
    vals = ""
    if values:
        values = list(values)
        names = study.metric_names or [str(i) for i in range(len(values))]
        vals = ": " + ", ".join(f"{n}={v:.4g}" for n, v in zip(names, values))
    path.write_text(gate_svg(gate_summaries(gates), f"{study.study_name} trial {number}{vals}"))
    return path


def attach_running_trial_gates(study: Any, artifact_store: Any, trial_id: int,
                               gates: dict[str, Any], values: Iterable[float] | None = None
                               ) -> str | None:
    """Upload the gate plot of a full-budget trial that is still RUNNING (the search driver
    calls this just before it records the trial as COMPLETE). Returns the name, or None
    when the trial already has one (a re-run of the same record)."""
    from optuna.artifacts import upload_artifact

    from nas.search._optuna import storage_of

    storage = storage_of(study)
    trial = storage.get_trial(trial_id)
    name = gate_artifact_name(trial.number)
    if not gates or name in _existing_names(trial.system_attrs):
        return None
    with tempfile.TemporaryDirectory(prefix="nas-gates-") as tmp:
        path = _write_gate_svg(Path(tmp) / name, study, trial.number, gates, values)
        upload_artifact(artifact_store=artifact_store, file_path=str(path),
                        study_or_trial=trial, storage=storage, mimetype="image/svg+xml")
    return name


def serve(storage_url: str, host: str = "127.0.0.1", port: int = 8080,
          artifacts: str | os.PathLike[str] | None = None, attach: bool = True) -> None:
    """Attach missing gate plots to every study, then run optuna-dashboard (blocks)."""
    import optuna
    from optuna_dashboard import run_server

    try:
        storage = optuna.storages.get_storage(storage_url)
    except Exception as e:  # SQLAlchemy raises many kinds for a bad URL
        raise UserError(f"--storage {storage_url!r}: cannot open: {e}") from None
    store = open_artifact_store(artifacts or artifact_dir_for(storage_url))
    if attach:
        for s in optuna.get_all_study_summaries(storage, include_best_trial=False):
            study = optuna.load_study(study_name=s.study_name, storage=storage)
            attach_gate_artifacts(study, store)
    run_server(storage, host=host, port=port, artifact_store=store)

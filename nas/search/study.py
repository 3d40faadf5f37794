"""The study in its storage: check the URL, open or create the study, initialise it (metric
names, attributes, the warm start) and check that a resumed study matches this run.

Two drivers may start at once on one storage: the one whose ``create_study`` loses loads
the study and waits until the creator has initialised it (or initialises it itself when
the creator died half-way).
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import optuna

from nas.errors import SpaceError, UserError
from nas.search import _optuna
from nas.search.faults import faultpoint
from nas.search.liveness import DriverRegistry
from nas.search.objectives import Objective, parse_limits
from nas.search.space import SearchSpace, parse_space
from nas.search.storage import StorageGuard
from nas.search.warm_start import warm_start_configs

if TYPE_CHECKING:
    from nas.search.driver import SearchOptions

__all__ = ["READY_KEY", "check_matches", "check_storage", "initialise", "is_ready",
           "open_study", "open_storage"]


def check_storage(url: str) -> None:
    """Fail early, before anything is written, on a storage URL that cannot work.

    SQLite: the folder must exist and be writable (SQLite also writes its -wal/-shm files
    there), and an existing file must be a writable file. Other URLs must parse and their
    driver must be installed; connection errors surface when the storage is opened.
    """
    import sqlalchemy
    from sqlalchemy.engine import make_url

    try:
        u = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise UserError(f"--storage {url!r}: not a database URL (e.g. sqlite:///studies.db "
                        "or postgresql://user:pw@host/db)") from None
    if u.get_backend_name() == "sqlite":
        db = u.database
        if not db or db == ":memory:":
            raise UserError(f"--storage {url!r}: an in-memory SQLite database would be lost "
                            "when the search ends; give a file, e.g. sqlite:///studies.db")
        path = Path(db)
        parent = path.parent if str(path.parent) else Path(".")
        if path.exists():
            if not path.is_file():
                raise UserError(f"--storage {url!r}: {path} is not a file")
            if not os.access(path, os.R_OK | os.W_OK):
                raise UserError(f"--storage {url!r}: {path} is not writable")
        if not parent.is_dir():
            raise UserError(f"--storage {url!r}: folder {parent} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UserError(f"--storage {url!r}: folder {parent} is not writable")
        return
    try:
        u.get_dialect().import_dbapi()
    except ImportError as e:
        hint = " (pip install 'nas[postgres]')" if u.get_backend_name() == "postgresql" else ""
        raise UserError(f"--storage {url!r}: the database driver is not installed: "
                        f"{e}{hint}") from None


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """The RDB storage, with SQLite set up for one writer beside many readers.

    SQLite: a 60 s busy timeout (a reader holding a lock briefly makes the writer wait, not
    fail); WAL journal mode is switched on once the study is validated (``enable_wal``):
    readers then never block the writer nor the writer the readers, and they see each
    committed trial. In WAL mode each connection commits with ``synchronous=NORMAL``
    (``_wal_commits_without_fsync``). Connection errors become a UserError naming the URL.
    """
    import sqlalchemy

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        kwargs = {"connect_args": {"timeout": 60}}
    else:  # a pooled connection that died with a database restart is replaced, not used
        kwargs = {"pool_pre_ping": True}
        if url.startswith("postgresql"):
            kwargs["connect_args"] = {"connect_timeout": 10}  # a lost host: no long hang
    try:
        for attempt in range(5):
            try:
                storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
                if storage.engine.name == "sqlite":
                    sqlalchemy.event.listen(storage.engine, "connect",
                                            _wal_commits_without_fsync)
                    storage.engine.dispose()  # those opened by the set-up had no listener
                return storage
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError,
                    sqlalchemy.exc.OperationalError) as e:
                # Two drivers creating Optuna's tables in a new database at once: one
                # loses the race (duplicate table / version row); the tables exist now.
                racy = not isinstance(e, sqlalchemy.exc.OperationalError) or \
                    "already exists" in str(e)
                if attempt == 4 or not racy:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")
    except sqlalchemy.exc.OperationalError as e:
        raise UserError(f"--storage {url!r}: cannot open the database: "
                        f"{str(getattr(e, 'orig', e)).strip().splitlines()[0]}") from None


def _wal_commits_without_fsync(dbapi_conn: Any, _record: Any) -> None:
    """A new SQLite connection of a WAL database commits with ``synchronous=NORMAL``.

    With the default (FULL) every commit waits for an fsync of the log, and Optuna commits
    every suggested parameter and attribute on its own: about 30 commits per trial, 0.8 ms
    each on a local disk, far more on a network one. In WAL mode NORMAL cannot corrupt the
    database, and what a process had committed survives that process's crash (``kill
    -9``); only a power loss or a crash of the operating system may roll back the last
    commits, which a resumed search redoes as it does any trial left unfinished. A
    database still in rollback-journal mode keeps FULL (NORMAL is not safe there)."""
    cur = dbapi_conn.cursor()
    try:
        if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
            cur.execute("PRAGMA synchronous=NORMAL")
    finally:
        cur.close()


def enable_wal(storage: optuna.storages.RDBStorage) -> None:
    """Persistent WAL journal mode for a SQLite storage (no-op for other databases).

    The pooled connections are closed after the switch: connections opened before it keep
    FULL (``_wal_commits_without_fsync`` saw no WAL then); new ones commit with NORMAL."""
    if storage.engine.name != "sqlite":
        return
    with storage.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    storage.engine.dispose()


READY_KEY = "nas:ready"


def is_ready(study: optuna.Study) -> bool:
    """Initialised (attrs, metric names, warm start): by this version, or an older one."""
    storage, sid = _optuna.storage_of(study), _optuna.study_id(study)
    return bool(storage.get_study_system_attrs(sid).get(READY_KEY)) or \
        "reference_params" in storage.get_study_user_attrs(sid)


def initialise(study: optuna.Study, opts: SearchOptions, space: SearchSpace,
                names: list[str], data_spec: str, overrides: Mapping[str, Any]) -> None:
    """Enqueue the warm start (unless ``--no-warm-start``), set metric names and study
    attrs, then mark it ready.

    Idempotent, so a driver that finds a study whose creator crashed half-way finishes
    the job: warm-start configs already enqueued (by label) are not enqueued again.
    """
    have = {t.user_attrs.get("warm_start") for t in study.get_trials(deepcopy=False)}
    for label, params in (warm_start_configs(space, overrides) if opts.warm_start else []):
        if label not in have:
            study.enqueue_trial(params, user_attrs={"warm_start": label})
    with warnings.catch_warnings():  # experimental since optuna 3.2, stable in practice
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(names)
    _, base_train = space.build(space.reference_params(), overrides)
    attrs = {"objectives": names, "space": space.path, "space_text": space.text,
             "data": data_spec, "rungs": space.proxy.rungs(),
             "full_budget": space.proxy.max_budget, "eta": space.proxy.eta,
             "train_config": base_train.to_dict(), "seed": opts.seed, "sampler": opts.sampler,
             "warm_start": opts.warm_start,
             "limits": parse_limits(opts.limits)}
    for k, v in attrs.items():
        study.set_user_attr(k, v)
    # Last: its presence means everything above is there (older versions: see is_ready).
    study.set_user_attr("reference_params", space.reference_params())
    _optuna.storage_of(study).set_study_system_attr(_optuna.study_id(study), READY_KEY, True)


def open_study(opts: SearchOptions, space: SearchSpace, objectives: list[Objective],
                sampler: optuna.samplers.BaseSampler, data_spec: str, overrides: Mapping[str, Any],
                guard: StorageGuard, ready_timeout_s: float = 120.0
                ) -> tuple[optuna.Study, bool, DriverRegistry]:
    """Create or load the study, register this driver in it, and check it matches.

    Two drivers may start at once on one storage: the one whose ``create_study`` loses
    loads the study and waits until the creator has initialised it (or initialises it
    itself when the creator died half-way).
    """
    rdb = open_storage(opts.storage)
    storage = guard.wrap(rdb)  # every call retried through a database outage
    name = opts.study or space.name
    directions = [o.direction for o in objectives]
    names = [o.name for o in objectives]
    created = False
    try:
        study = _optuna.load_study(name, storage, sampler=sampler)
    except KeyError:
        try:
            study = _optuna.create_study(name, storage, sampler=sampler,
                                         directions=directions)
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            study = _optuna.load_study(name, storage, sampler=sampler)
    if not created and is_ready(study):
        check_matches(study, opts, space, names, directions, data_spec)
    enable_wal(rdb)
    registry = DriverRegistry(study)
    registry.start()
    entries = registry.entries()
    if any(registry.alive(d, entries) for d in entries if d != registry.id):
        # Another driver is searching this study now, with the same --seed most likely:
        # it would propose the very same configurations (all duplicates). Diverge.
        sampler.reseed_rng()
    if created:
        faultpoint("after_create")
        initialise(study, opts, space, names, data_spec, overrides)
        return study, True, registry
    deadline = time.monotonic() + ready_timeout_s
    while not is_ready(study):
        entries = registry.entries()
        if not any(registry.alive(d, entries) for d in entries if d != registry.id):
            # Nobody else is initialising it: its creator died half-way. Finish the job.
            initialise(study, opts, space, names, data_spec, overrides)
            break
        if time.monotonic() > deadline:
            registry.stop()
            raise UserError(f"study {name!r} in {opts.storage}: another driver created it "
                            f"but has not initialised it within {ready_timeout_s:.0f} s")
        time.sleep(0.2)
    study = _optuna.load_study(name, storage, sampler=sampler)
    try:
        check_matches(study, opts, space, names, directions, data_spec)
    except UserError:
        registry.stop()
        raise
    return study, False, registry


def check_matches(study: optuna.Study, opts: SearchOptions, space: SearchSpace,
                   names: list[str], directions: list[str], data_spec: str) -> None:
    """A clear error when resuming with other objectives, space, rungs or data."""
    name = study.study_name
    have = study.metric_names or []
    if have != names or [d.name.lower() for d in study.directions] != directions:
        raise UserError(
            f"study {name!r} in {opts.storage} has objectives {have or '(unnamed)'}; "
            f"--objectives asks for {names}. Use the same objectives to resume, or a new "
            "--study name")
    ua = study.user_attrs
    changed = _space_changes(ua.get("space_text"), space)
    if changed:
        raise UserError(f"study {name!r} was created with a different search space "
                        f"({ua.get('space')}): {'; '.join(changed[:3])}"
                        f"{f' (and {len(changed) - 3} more)' if len(changed) > 3 else ''}. "
                        "Resuming needs the same space; use a new --study name for a new "
                        "space")
    if ua.get("rungs") not in (None, space.proxy.rungs()):
        raise UserError(f"study {name!r} uses rungs {ua.get('rungs')} (epochs); this run "
                        f"asks for {space.proxy.rungs()}. Use the same --min-budget/"
                        "--max-budget/--eta to resume, or a new --study name")
    if ua.get("data") not in (None, data_spec):
        raise UserError(f"study {name!r} was run on data {ua.get('data')!r}; this run "
                        f"asks for {data_spec!r}. Use the same --data, or a new --study")


def _space_changes(stored_text: str | None, space: SearchSpace) -> list[str]:
    """What differs between the space a study was created with (its stored file text) and
    this run's, as parsed spaces: comments and layout do not count (``differences``)."""
    if stored_text is None or stored_text == space.text:
        return []
    try:
        before = parse_space(stored_text, "<the study's space>")
        now = parse_space(space.text, space.path)
    except SpaceError:  # written by a version that read it differently: compare the text
        return ["the file's text differs"]
    return before.differences(now)

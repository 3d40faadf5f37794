"""The tabular benchmark's table: every configuration of a finite sub-space, trained at
every rung with several seeds, in one SQLite file (stdlib ``sqlite3``).

Schema (one file, four tables):

- ``meta(key, value)``: ``schema``, ``space_hash`` (see :func:`space_hash`), ``space_name``,
  ``space_text``, ``data`` (the data spec), ``rungs`` (JSON, epochs), ``eta``, ``seeds``
  (JSON), ``machine`` (JSON, the builder's), ``created``;
- ``configs(config_id, idx, params, fusion, train, costs, query_gflops, params_count,
  text_conditioned)``: ``config_id`` is the search's own id (``nas.search.searcher.config_key``
  of the configs the space builds, seed 0), ``costs`` the JSON of
  ``nas.cost.estimate_costs(fusion, shapes, gallery=1000)`` (every cost, as the search
  computes it before a trial);
- ``runs(config_id, seed, wall_s, epochs, finished)``: one row per (configuration, seed),
  written in one transaction with its rungs, so a killed build leaves either the whole
  row or nothing and resumes where it stopped;
- ``rungs(config_id, seed, rung, epochs, recall, v2t_recall, wall_s, metrics)``: the
  validation metrics after each rung (``recall`` = t2v R@1+R@5+R@10, ``v2t_recall`` the
  same for video-to-text, ``metrics`` every metric as JSON), ``wall_s`` = the trial's own
  ``train_proxy`` seconds from its start to the end of that rung's evaluation, ``cpu_s``
  the CPU seconds of the training thread over the same span (``time.thread_time``; with one
  torch thread all the work runs there). On a shared machine wall seconds measure the
  other jobs as much as the trial; CPU seconds do not, and the replay uses them by
  default (``--clock``).

The learning-rate schedule of ``train_proxy`` spans the last rung, so the model after rung
``r`` of the full run is the model a trial stopped at rung ``r`` had: one full training per
(configuration, seed) gives every rung.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import json
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.errors import UserError

__all__ = [
    "SCHEMA",
    "Table",
    "TableError",
    "build",
    "enumerate_space",
    "open_table",
    "space_hash",
]

SCHEMA = 2

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS configs (
  config_id TEXT PRIMARY KEY, idx INTEGER NOT NULL, params TEXT NOT NULL,
  fusion TEXT NOT NULL, train TEXT NOT NULL, costs TEXT NOT NULL,
  query_gflops REAL NOT NULL, params_count REAL NOT NULL, text_conditioned INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
  config_id TEXT NOT NULL, seed INTEGER NOT NULL, wall_s REAL NOT NULL, cpu_s REAL NOT NULL,
  epochs REAL NOT NULL,
  finished TEXT NOT NULL, PRIMARY KEY (config_id, seed));
CREATE TABLE IF NOT EXISTS rungs (
  config_id TEXT NOT NULL, seed INTEGER NOT NULL, rung INTEGER NOT NULL, epochs REAL NOT NULL,
  recall REAL NOT NULL, v2t_recall REAL NOT NULL, wall_s REAL NOT NULL, cpu_s REAL NOT NULL,
  metrics TEXT NOT NULL,
  PRIMARY KEY (config_id, seed, rung));
"""


class TableError(UserError):
    """A table file that is missing, not a table of this benchmark, or of another space."""


# ----------------------------------------------------------------------------- the space

def enumerate_space(space: Any, shapes: Any) -> list[tuple[str, dict, Any, Any]]:
    """Every distinct valid configuration of a finite space, in a fixed order:
    (config_id, params, FusionConfig, TrainConfig). Raises TableError when a dimension
    is not finite (a float range): the table needs a grid (e.g. ``lr: {choices: [...]}``)."""
    from nas.search.searcher import config_key
    from nas.search.space import InvalidCombination

    for d in space.dimensions:
        if d.finite_values() is None:
            raise TableError(f"space {space.path}: dimension {d.name!r} is not finite "
                             "(a float range); a tabular benchmark needs choices, e.g. "
                             f"{d.name}: {{choices: [...]}}")
    out: list[tuple[str, dict, Any, Any]] = []
    seen: set[str] = set()

    def walk(i: int, values: dict[str, Any]) -> Iterator[dict[str, Any]]:
        if i == len(space.dimensions):
            yield dict(values)
            return
        d = space.dimensions[i]
        if not d.active(values):
            yield from walk(i + 1, values)
            return
        for v in d.finite_values():
            values[d.name] = v
            yield from walk(i + 1, values)
            del values[d.name]

    from nas.data import model_inputs

    over = model_inputs(shapes)
    for params in walk(0, {}):
        try:
            f, t = space.build(params, over)
        except InvalidCombination:
            continue
        cid = config_key(f, t)
        if cid in seen:
            continue
        seen.add(cid)
        out.append((cid, params, f, t))
    return out


def space_hash(configs: Sequence[tuple[str, dict, Any, Any]], rungs: Sequence[float],
               data_spec: str) -> str:
    """Identity of a table's content: the sorted config ids, the rungs and the data spec.
    Two spaces that enumerate the same configurations at the same rungs on the same data
    share it (whatever the file's comments); anything else differs."""
    canon = json.dumps({"configs": sorted(c[0] for c in configs), "rungs": list(rungs),
                        "data": data_spec}, sort_keys=True)
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- reading

@dataclass
class Table:
    """A loaded table (read-only, in memory): what a replay needs."""

    path: str
    meta: dict[str, Any]
    configs: dict[str, dict[str, Any]]  # config_id -> {params, fusion, train, costs, ...}
    # (config_id, seed) -> list over rungs of {epochs, recall, v2t_recall, wall_s, metrics}
    results: dict[tuple[str, int], list[dict[str, Any]]]
    _by_fusion: dict[str, dict[str, Any]] | None = None

    @property
    def rungs(self) -> list[float]:
        return list(self.meta["rungs"])

    @property
    def seeds(self) -> list[int]:
        """The seeds every configuration was trained with (complete seeds only)."""
        have: dict[int, int] = {}
        for (_, s) in self.results:
            have[s] = have.get(s, 0) + 1
        return sorted(s for s, n in have.items() if n == len(self.configs))

    def by_fusion(self) -> dict[str, dict[str, Any]]:
        """FusionConfig.fusion_id -> a configuration row (the cost lookup)."""
        if self._by_fusion is None:
            from nas.config import FusionConfig

            self._by_fusion = {FusionConfig.from_dict(c["fusion"]).fusion_id: c
                               for c in self.configs.values()}
        return self._by_fusion


def open_table(path: str | os.PathLike[str]) -> Table:
    """Load a table file; TableError (exit 2) when it is missing or not such a table."""
    p = Path(path)
    if not p.is_file():
        raise TableError(f"table {p}: no such file (build one with "
                         "`python bench/tabular.py build --out FILE`)")
    try:
        con = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
        try:
            meta = {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta")}
            cfg_rows = con.execute("SELECT config_id, params, fusion, train, costs, query_gflops,"
                                   " text_conditioned FROM configs ORDER BY idx").fetchall()
            rung_rows = con.execute(
                "SELECT r.config_id, r.seed, r.rung, r.epochs, r.recall, r.v2t_recall, "
                "r.wall_s, r.cpu_s, r.metrics FROM rungs r "
                "JOIN runs u ON u.config_id = r.config_id "
                "AND u.seed = r.seed ORDER BY r.config_id, r.seed, r.rung").fetchall()
        finally:
            con.close()
    except (sqlite3.DatabaseError, json.JSONDecodeError) as e:
        raise TableError(f"table {p}: not a tabular-benchmark table ({e})") from None
    if meta.get("schema") != SCHEMA or "space_hash" not in meta:
        raise TableError(f"table {p}: not a tabular-benchmark table of schema {SCHEMA} "
                         f"(meta schema={meta.get('schema')!r})")
    configs = {r[0]: {"params": json.loads(r[1]), "fusion": json.loads(r[2]),
                      "train": json.loads(r[3]), "costs": json.loads(r[4]),
                      "query_gflops": r[5], "text_conditioned": bool(r[6])} for r in cfg_rows}
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for cid, seed, rung, ep, rec, v2t, wall, cpu, metrics in rung_rows:
        results.setdefault((cid, seed), []).append(
            {"rung": rung, "epochs": ep, "recall": rec, "v2t_recall": v2t, "wall_s": wall,
             "cpu_s": cpu, "metrics": json.loads(metrics)})
    return Table(str(p), meta, configs, results)


# ----------------------------------------------------------------------------- building

_TABLES = ("meta", "configs", "runs", "rungs")


def _refuse_foreign(path: Path) -> None:
    """TableError (nothing written) when ``path`` exists but is not SQLite, or holds tables
    that are not this benchmark's. An empty database passes: another build may have just
    created the file and not yet committed its first transaction."""
    if not path.exists():
        return
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            names = {r[0] for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        raise TableError(f"table {path}: not a tabular-benchmark table ({e})") from None
    foreign = sorted(names - set(_TABLES))
    if foreign:
        raise TableError(f"table {path}: not a tabular-benchmark table (it holds the tables "
                         f"{', '.join(foreign)})")


def build(space: Any, data_spec: str, out: str | os.PathLike[str], seeds: Sequence[int],
          limit: int | None = None, log: Callable[[str], None] = print,
          machine: Mapping[str, Any] | None = None) -> Path:
    """Train every configuration of ``space`` at every rung for each seed into ``out``.

    Resumable: (configuration, seed) pairs already in the file are skipped, so a killed
    build continues where it stopped. Seed-major order: the first seed is complete for
    every configuration before the second starts. Refuses (TableError, nothing written)
    a file that is not a table, or a table of another space, data or rungs. ``limit``:
    only the first ``limit`` configurations (tests, timing probes).
    """
    from nas.cost import estimate_costs
    from nas.data import load_data
    from nas.train import train_proxy

    data = load_data(data_spec)
    configs = enumerate_space(space, data.shapes)
    if limit is not None:
        configs = configs[:limit]
    rungs = space.proxy.rungs()
    h = space_hash(configs, rungs, data_spec)
    out = Path(out)
    if not out.exists() and not out.parent.is_dir():
        raise TableError(f"--out {out}: folder {out.parent} does not exist")
    _refuse_foreign(out)
    con = sqlite3.connect(str(out), timeout=60, isolation_level=None)
    try:
        # One IMMEDIATE transaction creates the schema, checks the file's space and merges
        # the seed list: two builds of other seeds into one file (one process per seed)
        # never see each other's half-made file, nor interleave their seed lists.
        con.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _DDL.split(";"):
                if stmt.strip():
                    con.execute(stmt)
            try:
                was = {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta")}
            except json.JSONDecodeError as e:
                raise TableError(f"table {out}: not a tabular-benchmark table ({e})") from None
            if was and was.get("schema") != SCHEMA:
                raise TableError(f"table {out}: not a tabular-benchmark table of schema "
                                 f"{SCHEMA} (meta schema={was.get('schema')!r})")
            if was and was.get("space_hash") != h:
                raise TableError(
                    f"table {out}: built from another space, data or rungs (space hash "
                    f"{was.get('space_hash')}, data {was.get('data')!r}, rungs "
                    f"{was.get('rungs')}); this build is {h} on {data_spec!r}, rungs "
                    f"{rungs}. Give another --out")
            meta = {"schema": SCHEMA, "space_hash": h, "space_name": space.name,
                    "space_text": space.text, "data": data_spec, "rungs": rungs,
                    "eta": space.proxy.eta, "n_configs": len(configs)}
            for k, v in meta.items():
                con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (k, json.dumps(v)))
            con.execute("INSERT OR IGNORE INTO meta VALUES ('created', ?)", (json.dumps(
                _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")),))
            con.execute("INSERT OR REPLACE INTO meta VALUES ('machine', ?)",
                        (json.dumps(dict(machine or {})),))
            prev = json.loads((con.execute("SELECT value FROM meta WHERE key='seeds'")
                               .fetchone() or ["[]"])[0])
            con.execute("INSERT OR REPLACE INTO meta VALUES ('seeds', ?)",
                        (json.dumps(sorted(set(prev) | set(seeds))),))
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        con.isolation_level = ""  # back to the module's implicit transactions
        have_cfg = {r[0] for r in con.execute("SELECT config_id FROM configs")}
        done = {(r[0], r[1]) for r in con.execute("SELECT config_id, seed FROM runs")}
        # A fixed shuffle within each seed: the ETA is representative from the start
        # (the grid order trains all small widths first).
        order = list(configs)
        random.Random(0).shuffle(order)
        todo = [(s, c) for s in seeds for c in order if (c[0], s) not in done]
        log(f"table {out}: {len(configs)} configurations x {len(seeds)} seeds, rungs {rungs} "
            f"epochs, data {data_spec}; {len(configs) * len(seeds) - len(todo)} runs done, "
            f"{len(todo)} to go")
        t_start = time.monotonic()
        for i, (seed, (cid, params, f, t)) in enumerate(todo):
            if cid not in have_cfg:
                costs = {k: float(v) for k, v in estimate_costs(f, data.shapes,
                                                                gallery=1000).items()}
                with con:  # OR IGNORE: a build of another seed may have written it
                    con.execute("INSERT OR IGNORE INTO configs VALUES (?,?,?,?,?,?,?,?,?)", (
                        cid, [c[0] for c in configs].index(cid), json.dumps(params),
                        json.dumps(f.to_dict()), json.dumps(t.to_dict()), json.dumps(costs),
                        costs["query_gflops"], costs["params"], int(f.text_conditioned)))
                have_cfg.add(cid)
            costs = json.loads(con.execute("SELECT costs FROM configs WHERE config_id=?",
                                           (cid,)).fetchone()[0])
            cpu: list[float] = []
            c0 = time.thread_time()

            def report(i: int, m: Mapping[str, Any], cpu: list[float] = cpu,
                       c0: float = c0) -> None:
                cpu.append(time.thread_time() - c0)

            res = train_proxy(f, t.replace(seed=seed), data, rungs=rungs, costs=costs,
                              report=report)
            cpu_total = time.thread_time() - c0
            if len(res.history) != len(rungs) or len(cpu) != len(rungs):
                raise RuntimeError(f"config {cid} seed {seed}: {len(res.history)} rungs "
                                   f"evaluated, {len(rungs)} expected")
            with con:  # the run and its rungs in one transaction
                for r, m in enumerate(res.history):
                    con.execute("INSERT INTO rungs VALUES (?,?,?,?,?,?,?,?,?)", (
                        cid, seed, r, float(m["epochs"]), float(m["recall"]),
                        float(m["v2t_recall"]), float(m["wall_s"]), cpu[r],
                        json.dumps({k: float(v) for k, v in m.items()})))
                con.execute("INSERT INTO runs VALUES (?,?,?,?,?,?)", (
                    cid, seed, float(res.wall_s), cpu_total, float(res.epochs),
                    _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")))
            if (i + 1) % 10 == 0 or i + 1 == len(todo):
                el = time.monotonic() - t_start
                log(f"  {i + 1}/{len(todo)} runs in {el:.0f} s (ETA "
                    f"{el / (i + 1) * (len(todo) - i - 1):.0f} s); load "
                    f"{os.getloadavg()[0]:.1f}")
    finally:
        con.close()
    return out


def grid_values(space: Any) -> dict[str, list[Any]]:
    """Each dimension's finite values (for printing the sub-space)."""
    return {d.name: list(d.finite_values() or []) for d in space.dimensions}


def product_size(space: Any) -> int:
    """Size of the full grid (before invalid/duplicate configurations are removed)."""
    return len(list(itertools.product(*grid_values(space).values())))

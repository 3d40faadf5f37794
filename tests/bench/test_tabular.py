"""The tabular benchmark (bench/tabular.py): build, resume, replay, bad input, and that
replaying the tool on a table reproduces a live search trial by trial.

One tiny table (16 configurations x 2 seeds of ``tiny_space.yaml``, real training) is built
once per module; every test reads it.
"""

from __future__ import annotations

import io
import json
import math
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import tabular_replay as tr  # noqa: E402 (bench/ is put on the path above)
import tabular_table as tt  # noqa: E402

TINY = str(Path(__file__).resolve().parent / "tiny_space.yaml")
BIG = str(ROOT / "bench" / "tabular_space.yaml")


@pytest.fixture(scope="module")
def table_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    from nas.search.space import load_space

    out = tmp_path_factory.mktemp("tab") / "tiny.sqlite"
    tt.build(load_space(TINY), load_space(TINY).data, out, seeds=[0], log=lambda s: None)
    return str(out)


def _counts(path: str) -> tuple[int, int]:
    con = sqlite3.connect(path)
    try:
        return (con.execute("SELECT count(*) FROM runs").fetchone()[0],
                con.execute("SELECT count(*) FROM rungs").fetchone()[0])
    finally:
        con.close()


def test_build_is_complete_and_resumes_without_retraining(table_path: str) -> None:
    from nas.search.space import load_space

    space = load_space(TINY)
    assert _counts(table_path) == (16, 48)
    # a second seed continues the same file; the first seed's rows are not trained again
    con = sqlite3.connect(table_path)
    before = con.execute("SELECT config_id, seed, wall_s FROM runs").fetchall()
    con.close()
    tt.build(space, space.data, table_path, seeds=[0, 1], log=lambda s: None)
    assert _counts(table_path) == (32, 96)
    con = sqlite3.connect(table_path)
    after = con.execute("SELECT config_id, seed, wall_s FROM runs WHERE seed = 0").fetchall()
    con.close()
    assert sorted(after) == sorted(before)
    t = tt.open_table(table_path)
    assert t.seeds == [0, 1] and len(t.configs) == 16
    for rows in t.results.values():
        assert [r["epochs"] for r in rows] == [0.5, 1.0, 2.0]
        assert all(0 <= r["recall"] <= 300 and 0 <= r["v2t_recall"] <= 300 for r in rows)
        assert rows[0]["wall_s"] < rows[1]["wall_s"] < rows[2]["wall_s"]
        assert rows[0]["cpu_s"] <= rows[2]["cpu_s"]
    c = next(iter(t.configs.values()))
    assert {"params", "query_gflops", "index_gflops", "pair_gflops"} <= set(c["costs"])


def test_killed_build_continues(tmp_path: Path) -> None:
    """SIGKILL a build after its first committed run; the rerun completes the table and
    trains no (configuration, seed) pair twice."""
    import signal
    import time

    out = tmp_path / "k.sqlite"
    cmd = [sys.executable, str(ROOT / "bench" / "tabular.py"), "build", "--space", TINY,
           "--out", str(out), "--seeds", "1"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900  # a loaded shared machine
    try:
        while time.monotonic() < deadline:
            try:
                if out.exists() and _counts(str(out))[0] >= 1:
                    break
            except sqlite3.Error:
                pass
            time.sleep(0.05)
        p.send_signal(signal.SIGKILL)
    finally:
        p.wait()
    done = _counts(str(out))[0]
    assert 1 <= done <= 16
    r = subprocess.run(cmd, check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"{done} runs done, {16 - done} to go" in r.stdout
    assert _counts(str(out)) == (16, 48)


def test_sigterm_reports_only_the_seeds_every_method_completed(table_path: str,
                                                               tmp_path: Path) -> None:
    """SIGTERM while the tool's driver runs: the driver takes it for the end of its run (as
    it takes the budget's end), so the replay must not count that run or go on; it
    reports the seeds completed before, at once."""
    import signal
    import time

    out = tmp_path / "term.json"
    p = subprocess.Popen([sys.executable, str(ROOT / "bench" / "tabular.py"), "replay",
                          "--table", table_path, "--space", TINY, "--methods", "tool",
                          "--seeds", "50", "--budget-trials", "100", "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    assert p.stdout is not None
    printed = []
    for line in p.stdout:
        if line.startswith("seed "):
            printed.append(line)
            time.sleep(0.5)  # inside the next seed's driver
            p.send_signal(signal.SIGTERM)
            break
    rest, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert "interrupted: reporting the 1 seeds" in rest, rest
    res = json.loads(out.read_text())
    assert res["interrupted"] and res["seed_list"] == [0]
    assert len(res["methods"]["tool"]["trials"]) == 1


def test_one_process_per_seed_builds_one_table(tmp_path: Path) -> None:
    """Two builds of other seeds (``--first-seed``) write the same file at the same time:
    both finish, every configuration is written once, and both seeds are complete (the
    seed list is merged, not overwritten by the later process)."""
    out = tmp_path / "par.sqlite"
    procs = [subprocess.Popen([sys.executable, str(ROOT / "bench" / "tabular.py"), "build",
                               "--space", TINY, "--out", str(out), "--seeds", "1",
                               "--first-seed", str(s), "--limit", "4"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for s in (0, 1)]
    for p in procs:
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err
    t = tt.open_table(str(out))
    assert t.seeds == [0, 1] and len(t.configs) == 4 and _counts(str(out)) == (8, 24)
    r = _cli("info", "--table", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "seed 0 vs seed 1: Spearman" in r.stdout and "r0 (0.5 ep)" in r.stdout


@pytest.mark.parametrize("method", list(tr.METHODS))
def test_tiny_replay_every_method(table_path: str, tmp_path: Path, method: str) -> None:
    table = tr.check_table(table_path, TINY)
    full = sum(rows[-1]["cpu_s"] for rows in table.results.values()) / len(table.results)
    # tiny trials take milliseconds: the methods' own decision time dominates the budget
    budget = 6 * full + 3.0
    rep = tr.replay_method(method, table, TINY, seed=0, budget_s=budget, workdir=str(tmp_path))
    assert rep.trials, method
    ends = [t["t_end"] for t in rep.trials]
    assert ends == sorted(ends) and ends[-1] <= budget + 1e-9
    # the clock holds at least the trials' own table seconds
    assert ends[-1] >= sum(t["trial_s"] for t in rep.trials) - 1e-9
    for t in rep.trials:
        assert t["config_id"] in table.configs
        row = table.results[(t["config_id"], rep.seed)][t["rung"]]
        assert t["recall"] == row["recall"]
    if method in ("random", "tpe"):
        assert all(t["full"] for t in rep.trials)


@pytest.mark.parametrize("method", ["tool_cost_nows", "ray"])
def test_replay_charges_cost_estimates_from_the_first_proposal(
        table_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    """A live search estimates the costs of the configurations it considers (a cost-aware
    choice more of them, Ray's trials their query cost): on the replay's clock that is the
    method's own time, counted from its first proposal on. Each estimate here burns
    20 ms of CPU; only the one-off set-up (the driver's estimate of the reference) may
    come before the clock starts."""
    import nas.cost

    real = nas.cost.estimate_costs
    before: list[int] = []
    after: list[int] = []

    def slow(*a: object, **k: object) -> object:
        rep = tr._CURRENT[-1] if tr._CURRENT else None
        (after if rep is not None and rep.t0 is not None else before).append(1)
        end = time.process_time() + 0.02
        while time.process_time() < end:
            pass
        return real(*a, **k)

    monkeypatch.setattr(nas.cost, "estimate_costs", slow)
    table = tr.check_table(table_path, TINY)
    full = sum(rows[-1]["cpu_s"] for rows in table.results.values()) / len(table.results)
    rep = tr.replay_method(method, table, TINY, seed=0, budget_s=8 * full + 3.0,
                           workdir=str(tmp_path), trials=10)
    assert len(after) >= 4, (before, after)
    assert len(before) <= 1, (before, after)
    assert rep.decision_s() >= 0.9 * 0.02 * len(after)


def _trained(storage: str, name: str) -> list[tuple]:
    import optuna

    st = optuna.load_study(study_name=name, storage=storage)
    return [(t.number, t.user_attrs.get("config_id"), t.user_attrs.get("status"),
             t.user_attrs.get("budget"), t.user_attrs.get("warm_start"))
            for t in st.get_trials(deepcopy=False)]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_replay_reproduces_a_live_search(table_path: str, tmp_path: Path, seed: int) -> None:
    """The tool replayed on the table proposes the same configurations in the same order
    and stops the same trials at the same rungs as a live ``nas search`` (real training,
    training seed 0 = the table's seed 0), trial by trial."""
    from nas.search.driver import SearchOptions, run_search
    from nas.search.searcher import SearchExhausted

    live = f"sqlite:///{tmp_path}/live.db"
    try:
        run_search(SearchOptions(space=TINY, study="live", storage=live, trials=7, seed=seed,
                                 executor="local", quiet=True), out=io.StringIO())
    except SearchExhausted:
        # On 16 configurations TPE soon proposes only trained ones; the replay must then
        # record the same 100 duplicate proposals and stop at the same trial.
        pass
    table = tr.check_table(table_path, TINY)
    (tmp_path / "r").mkdir()
    rep = tr.replay_method("tool", table, TINY, seed=seed, budget_s=math.inf,
                           workdir=str(tmp_path / "r"), trials=7, table_seed=0)
    a = _trained(live, "live")
    b = _trained(f"sqlite:///{tmp_path}/r/tool_{seed}.db", f"tool_{seed}")
    assert a == b
    trained = [x for x in a if x[2] in ("complete", "stopped")]
    assert len(trained) == len(rep.trials) >= 4
    statuses = {x[2] for x in a}
    assert "stopped" in statuses and "complete" in statuses  # MO-ASHA decided something


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "bench" / "tabular.py"), *args],
                          check=False, capture_output=True, text=True, cwd=cwd)


def test_bad_input_exits_2_and_writes_nothing(table_path: str, tmp_path: Path) -> None:
    out = tmp_path / "res.json"
    foreign = tmp_path / "foreign.sqlite"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE studies (x)")
    con.close()
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 50)
    cases = [
        (["replay", "--table", str(tmp_path / "missing.sqlite"), "--space", TINY],
         "no such file"),
        (["replay", "--table", str(foreign), "--space", TINY], "not a tabular-benchmark table"),
        (["replay", "--table", str(text), "--space", TINY], "not a tabular-benchmark table"),
        (["replay", "--table", table_path, "--space", BIG], "built from another space"),
        (["replay", "--table", table_path, "--space", TINY, "--methods", "tool,bogus"],
         "unknown method 'bogus'"),
        (["replay", "--table", table_path, "--space", TINY, "--methods", "random,ray",
          "--paired", "ray:tool"], "--paired: 'ray:tool' is not A:B"),
        (["replay", "--table", table_path, "--space", TINY, "--methods", "random",
          "--tolerance", "1.5"], "--tolerance 1.5: give a share"),
        (["build", "--space", BIG, "--out", table_path], "built from another space"),
        (["build", "--space", TINY, "--out", str(foreign)], "not a tabular-benchmark table"),
        (["build", "--space", TINY, "--out", str(text)], "not a tabular-benchmark table"),
    ]
    before = Path(table_path).read_bytes()
    before_foreign, before_text = foreign.read_bytes(), text.read_bytes()
    for args, msg in cases:
        r = _cli(*args, "--out", str(out), cwd=tmp_path) if args[0] == "replay" else \
            _cli(*args, cwd=tmp_path)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert msg in r.stderr and r.stderr.count("\n") == 1, (args, r.stderr)
        assert not out.exists()
    assert Path(table_path).read_bytes() == before
    assert foreign.read_bytes() == before_foreign and text.read_bytes() == before_text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.sqlite", "notes.txt"]


@pytest.mark.parametrize("state", ["empty file", "schema without meta"])
def test_build_joins_a_file_another_build_is_creating(tmp_path: Path, state: str) -> None:
    """What a second builder may find while the first creates the file (one process per
    seed): an empty file (sqlite has created it) or, before the schema and the meta were
    one transaction, the schema alone. Neither is a foreign file: the build goes on."""
    out = tmp_path / "t.sqlite"
    con = sqlite3.connect(out)
    if state == "schema without meta":
        con.executescript(tt._DDL)
    con.close()
    r = _cli("build", "--space", TINY, "--out", str(out), "--seeds", "1", "--limit", "1",
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    t = tt.open_table(str(out))
    assert t.seeds == [0] and len(t.configs) == 1


def test_replay_cli_writes_figures(table_path: str, tmp_path: Path) -> None:
    def replay(methods: str, first: int, seeds: int, out: Path):
        return _cli("replay", "--table", table_path, "--space", TINY, "--methods", methods,
                    "--seeds", str(seeds), "--first-seed", str(first), "--budget-trials",
                    "100", "--out", str(out), cwd=tmp_path)

    out = tmp_path / "res.json"
    r = replay("random,ray", 0, 2, out)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert set(res["methods"]) == {"random", "ray"}
    assert len(res["methods"]["ray"]["reach"]) == 2
    assert len(res["methods"]["ray"]["hv3"]["reach"]) == 2  # the tool's 3 objectives too
    assert len(res["hv_reference_3d"]) == 3
    assert "| ray |" in r.stdout and "3-D hypervolume" in r.stdout
    # another process's seed range, then both reported together
    out2, merged = tmp_path / "res2.json", tmp_path / "merged.json"
    r = replay("random,ray", 2, 1, out2)
    assert r.returncode == 0, r.stderr
    r = _cli("replay", "--merge", f"{out},{out2}", "--out", str(merged), "--paired",
             "ray:random", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    m = json.loads(merged.read_text())
    assert m["seed_list"] == [0, 1, 2] and len(m["methods"]["ray"]["reach"]) == 3
    # paired by seed: the mean difference of the hypervolumes after 100% of random's compute
    row = next(ln for ln in r.stdout.split("2-D hypervolume, paired by seed")[1].splitlines()
               if ln.startswith("| ray - random |"))
    d = [a - b for a, b in zip(m["methods"]["ray"]["hv_at"]["1.0"],
                               m["methods"]["random"]["hv_at"]["1.0"])]
    assert row.split(" | ")[-1].startswith(f"{sum(d) / 3:+.3g} [")
    assert m["methods"]["ray"]["trials"][2] == json.loads(out2.read_text())[
        "methods"]["ray"]["trials"][0]
    # with a tolerance: a column beside the exact figure, never later than it
    tol = tmp_path / "tol.json"
    r = _cli("replay", "--merge", f"{out},{out2}", "--out", str(tol), "--tolerance", "0.05",
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "reaches it to within 0.05 of it at" in r.stdout
    t = json.loads(tol.read_text())
    assert t["tolerance"] == 0.05
    exact, loose = t["methods"]["ray"]["reach"], t["methods"]["ray"]["reach_tol"]
    assert exact == m["methods"]["ray"]["reach"] and len(loose) == 3
    assert all(a <= b for a, b in zip(loose, exact))
    # a run of fewer methods: the merge reports the methods every file replayed
    out3 = tmp_path / "res3.json"
    r = replay("random", 3, 1, out3)
    assert r.returncode == 0, r.stderr
    r = _cli("replay", "--merge", f"{out},{out3}", "--out", str(merged), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "left out (not replayed in every file): ray" in r.stdout
    m = json.loads(merged.read_text())
    assert list(m["methods"]) == ["random"] and m["seed_list"] == [0, 1, 3]


def test_reach_fraction_with_a_tolerance() -> None:
    """The share of random search's compute at which a curve first reaches random's final
    hypervolume, or that less a share of it."""
    from bench_search import reach_fraction

    rand = [{"compute_s": 5.0, "hv": 8.0}, {"compute_s": 10.0, "hv": 10.0}]
    tool = [{"compute_s": 1.0, "hv": 9.95}, {"compute_s": 3.0, "hv": 10.0}]
    assert reach_fraction(tool, rand) == pytest.approx(0.3)
    assert reach_fraction(tool, rand, tolerance=0.001) == pytest.approx(0.3)  # 9.99 needed
    assert reach_fraction(tool, rand, tolerance=0.01) == pytest.approx(0.1)  # 9.9 needed
    assert reach_fraction(tool[:1], rand) == math.inf


def test_agnostic_halving_keeps_the_top_half_at_each_rung() -> None:
    """The oracle's yardstick in `tabular.py info`: successive halving over the
    text-agnostic configurations only, charged each survivor's extra CPU seconds per rung."""
    import tabular as tb

    from nas.search.objectives import OBJECTIVES

    key = OBJECTIVES["recall"].rung_key
    configs, results = {}, {}
    # 8 text-agnostic configurations whose first rungs rank them backwards for the mean
    # rank's sake: recall at r0 says c7 best, the mean rank at r0 says c0 best; only c0
    # becomes the best at the full budget. 8 text-conditioned ones, far better: ignored.
    for i in range(16):
        cid = f"c{i:02d}"
        agn = i < 8
        configs[cid] = {"text_conditioned": not agn}
        full = (50.0 + (10 if i == 0 else i)) if agn else 99.0
        results[(cid, 0)] = [
            {"recall": float(i), "cpu_s": 1.0, "metrics": {"recall": float(i), key: float(i)}},
            {"recall": float(10 - i), "cpu_s": 3.0,
             "metrics": {"recall": float(10 - i), key: float(i)}},
            {"recall": full, "cpu_s": 4.0, "metrics": {"recall": full, key: 0.0}},
        ]
    t = tt.Table(path="x", meta={"rungs": [1, 2, 3]}, configs=configs, results=results)
    lines = tb.agnostic_halving(t, budget_trials=1.0)
    # budget: 1 x mean full-budget CPU s = 4.0; cost 8 x 1 + 4 x 2 + 2 x 1 = 18 = 450 %
    by_recall = next(ln for ln in lines if "ranked by recall" in ln)
    by_rank = next(ln for ln in lines if "ranked by mean rank" in ln)
    assert "450% of the budget (18.0 CPU s)" in by_recall
    assert "450% of the budget (18.0 CPU s)" in by_rank
    # by recall: r0 keeps c04-c07, r1 (recall 10 - i) keeps c04, c05: ends at 55
    assert by_recall.endswith("ends at recall 55.0 (best 60.0)")
    # by mean rank (lower is better): r0 keeps c00-c03, r1 keeps c00, c01: ends at 60
    assert by_rank.endswith("ends at recall 60.0 (best 60.0)")


"""Issue 6.6: bad input through the CLI, one test each: a one-line message naming the thing
and the problem, exit status 2, and nothing written or changed (the storage file not
created, or unchanged byte for byte; no output file; no folder).

docs/reliability.md lists these cases in a table (case, command, message, test).
"""

from __future__ import annotations

import os
import pickle
import shutil
import socket
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from nas.cli import main

from reliability_helpers import TINY

SEARCH = ["search", "--evaluator", "fake", "--executor", "local", "--quiet", "--trials", "2"]


def _files(d: Path) -> dict[str, bytes]:
    """Every file under d with its bytes (to show nothing changed)."""
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _fails(argv: list[str], capsys, *needles: str) -> str:
    """Run `nas ARGV` in-process: exit 2, one line on stderr containing every needle."""
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse refuses before any command runs
        rc = e.code
    err = capsys.readouterr().err.strip()
    print(err)  # shown with -rP: the messages docs/reliability.md quotes
    assert rc == 2, (rc, err)
    assert err.startswith("nas ") or "usage:" in err, err
    for n in needles:
        assert n in err, (n, err)
    return err


def _space(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "space.yaml"
    p.write_text(textwrap.dedent(text))
    return p


GOOD_SPACE = """
name: s
base: {fusion: {width: 16, heads: 2, layers: 1}}
dimensions:
  width: {choices: [16, 32]}
proxy: {min_budget: 1, max_budget: 2, eta: 2}
"""


@pytest.fixture
def work(tmp_path: Path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    return d


def _search_fails(work: Path, capsys, extra: list[str], *needles: str) -> None:
    """A refused `nas search` writes nothing: no storage file, nothing in the folder."""
    before = _files(work)
    _fails([*SEARCH, "--storage", f"sqlite:///{work}/studies.db", *extra], capsys, *needles)
    assert not (work / "studies.db").exists()
    assert _files(work) == before


# ------------------------------------------------------------------ search space
def test_malformed_space_file(work: Path, tmp_path: Path, capsys) -> None:
    p = _space(tmp_path, "name: s\ndimensions: {width: [16, 32\n")
    _search_fails(work, capsys, ["--space", str(p)], str(p), "not valid YAML")


def test_unknown_field(work: Path, tmp_path: Path, capsys) -> None:
    p = _space(tmp_path, GOOD_SPACE.replace("width: {choices", "widht: {choices"))
    _search_fails(work, capsys, ["--space", str(p)], str(p), "'widht'", "unknown field")


def test_empty_choices(work: Path, tmp_path: Path, capsys) -> None:
    p = _space(tmp_path, GOOD_SPACE.replace("[16, 32]", "[]"))
    _search_fails(work, capsys, ["--space", str(p)], str(p), "'width'",
                  "non-empty list")


def test_bad_range(work: Path, tmp_path: Path, capsys) -> None:
    p = _space(tmp_path, GOOD_SPACE.replace("width: {choices: [16, 32]}",
                                            "layers: {type: int, low: 3, high: 1}"))
    _search_fails(work, capsys, ["--space", str(p)], str(p), "'layers'",
                  "low 3 must be < high 1")


# ------------------------------------------------------------------ objectives, sampler
def test_unknown_objective(work: Path, capsys) -> None:
    _search_fails(work, capsys, ["--space", "quick", "--objectives", "recall,speed"],
                  "--objectives", "'speed'", "unknown objective")


def test_objectives_differ_from_the_existing_study(work: Path, capsys) -> None:
    url = f"sqlite:///{work}/studies.db"
    assert main([*SEARCH, "--space", "quick", "--storage", url]) == 0
    capsys.readouterr()
    before = _files(work)
    _fails([*SEARCH, "--space", "quick", "--storage", url, "--objectives", "recall,params"],
           capsys, "study 'quick'", "['recall', 'query_gflops', 'index_gflops']",
           "['recall', 'params']")
    assert _files(work) == before  # byte for byte


@pytest.mark.parametrize("n", ["1", "-2"])
def test_bad_hedge(work: Path, capsys, n: str) -> None:
    _search_fails(work, capsys, ["--space", "quick", "--hedge", n],
                  f"--hedge {n}", "N >= 2")


def test_unknown_sampler(work: Path, capsys) -> None:
    _search_fails(work, capsys, ["--space", "quick", "--sampler", "annealing"],
                  "--sampler", "invalid choice: 'annealing'")


# ------------------------------------------------------------------ feature directories
@pytest.fixture(scope="module")
def feature_dir(tmp_path_factory) -> Path:
    from nas.data import load_data
    from nas.data.features import write_feature_dir

    d = tmp_path_factory.mktemp("features") / "good"
    write_feature_dir(load_data(TINY), str(d))
    return d


def _broken(feature_dir: Path, tmp_path: Path, how: str) -> Path:
    d = tmp_path / f"feat_{how}"
    shutil.copytree(feature_dir, d)
    tr = d / "train"
    if how == "shape":
        v = np.load(tr / "video.npy")
        np.save(tr / "video.npy", v[:-1])
    elif how == "dtype":
        np.save(tr / "video.npy", np.load(tr / "video.npy").astype(np.float64))
    elif how == "nan":
        a = np.load(tr / "audio.npy")
        a[1, 0, 0] = np.nan
        np.save(tr / "audio.npy", a)
    elif how == "missing_split":
        shutil.rmtree(tr)
    elif how == "index":
        tc = np.load(tr / "text_clip.npy")
        tc[0] = 10_000
        np.save(tr / "text_clip.npy", tc)
    return d


@pytest.mark.parametrize("how,needles", [
    ("shape", ["shape mismatch"]),
    ("dtype", ["video.npy", "wrong dtype float64"]),
    ("nan", ["audio.npy", "NaN or inf"]),
    ("missing_split", ["missing split directory"]),
    ("index", ["text_clip.npy", "caption index out of range"]),
])
def test_feature_directory_errors(how: str, needles: list[str], feature_dir: Path,
                                  work: Path, tmp_path: Path, capsys) -> None:
    d = _broken(feature_dir, tmp_path, how)
    before = _files(d)
    _fails(["search", "--space", "quick", "--executor", "local", "--quiet", "--storage",
            f"sqlite:///{work}/studies.db", "--data", str(d)], capsys, str(d), *needles)
    assert not (work / "studies.db").exists() and _files(d) == before


# ------------------------------------------------------------------ storage, cluster
def test_storage_folder_missing(work: Path, capsys) -> None:
    _search_fails(work, capsys, ["--space", "quick", "--storage",
                                 f"sqlite:///{work}/no/such/dir/s.db"],
                  f"{work}/no/such/dir", "does not exist")


def test_storage_not_writable(work: Path, capsys) -> None:
    if os.geteuid() != 0:
        ro = work / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        url, needles = f"sqlite:///{ro}/s.db", [str(ro), "not writable"]
    else:  # root may write any folder; /proc refuses new files even to root
        url, needles = "sqlite:////proc/nas-studies.db", ["/proc/nas-studies.db",
                                                          "cannot open the database"]
    _fails([*SEARCH, "--space", "quick", "--storage", url], capsys, *needles)
    assert not Path("/proc/nas-studies.db").exists()


def test_ray_address_unreachable_fails_fast(work: Path, capsys) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    _search_fails(work, capsys, ["--space", "quick", "--executor", "ray", "--address",
                                 f"127.0.0.1:{port}"],
                  f"--address '127.0.0.1:{port}'", "no Ray cluster reachable")
    assert time.monotonic() - t0 < 15


# ------------------------------------------------------------------ export, train
def test_export_pick_that_matches_nothing(work: Path, capsys) -> None:
    url = f"sqlite:///{work}/studies.db"
    assert main([*SEARCH, "--space", "quick", "--storage", url, "--no-prune"]) == 0
    capsys.readouterr()
    before = _files(work)
    _fails(["export", "--study", "quick", "--storage", url, "--pick",
            "under:query_gflops<=0", "--out", str(work / "pick.yaml")], capsys,
           "--pick 'under:query_gflops<=0'", "no Pareto-front trial")
    assert _files(work) == before and not (work / "pick.yaml").exists()


def test_config_file_with_unknown_key(work: Path, capsys) -> None:
    cfg = work / "cfg.yaml"
    cfg.write_text("fusion: {width: 16, heads: 2, widht: 32}\ntrain: {epochs: 1}\n")
    before = _files(work)
    _fails(["train", "--config", str(cfg), "--data", TINY, "--out", str(work / "run")],
           capsys, str(cfg), "'widht'", "unknown field")
    assert _files(work) == before and not (work / "run").exists()


class _Exploit:
    """Unpickling this would create a file: proof that a checkpoint was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_foreign_checkpoint_is_refused_and_never_unpickled(work: Path, capsys) -> None:
    cfg = work / "cfg.yaml"
    cfg.write_text("fusion: {width: 16, heads: 2, layers: 1}\ntrain: {epochs: 1}\n")
    run = work / "run"
    run.mkdir()
    marker = work / "pwned"
    (run / "last.pt").write_bytes(pickle.dumps({"format": "x", "obj": _Exploit(marker)}))
    before = _files(work)
    _fails(["train", "--config", str(cfg), "--data", TINY, "--out", str(run), "--resume"],
           capsys, str(run / "last.pt"), "is not a nas checkpoint")
    assert not marker.exists()
    assert _files(work) == before

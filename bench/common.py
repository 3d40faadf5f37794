"""Shared helpers of the benchmark scripts: machine description, JSON output, statistics,
sampling configurations from a space file, and a process-tree memory sampler.

Imported by ``bench_search``, ``bench_fidelity``, ``bench_overhead``, ``bench_throughput``
and ``bench_gpu`` (run from the repository root: ``python bench/bench_X.py``).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:  # `python bench/x.py` from anywhere imports this checkout
    sys.path.insert(0, str(ROOT))

# Ray, when a script starts it: no token auth, no usage stats, no dashboard (as in tests).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

__all__ = ["ROOT", "RESULTS", "machine_info", "print_machine", "write_json", "summary",
           "fmt_summary", "sample_configs", "MemorySampler", "add_out_arg"]


# ----------------------------------------------------------------------------- machine

def machine_info() -> dict[str, Any]:
    """nproc, CPU model, RAM, load average, date and library versions of this run."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = float("nan")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 2**20
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu, "ram_gib": round(mem_gib, 1),
        "loadavg_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(), "argv": sys.argv,
    }
    for mod in ("torch", "optuna", "ray"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a version string is informational only
            info[mod] = None
    return info


def print_machine(info: Mapping[str, Any]) -> None:
    """One line describing the machine (every script prints it first)."""
    print(f"machine: {info['nproc']} CPUs ({info['cpu_model']}), {info['ram_gib']} GiB RAM, "
          f"load {tuple(round(x, 1) for x in info['loadavg_at_start'] or ())}; "
          f"torch {info.get('torch')}, optuna {info.get('optuna')}, ray {info.get('ray')}; "
          f"{info['date']}", flush=True)


def add_out_arg(ap: Any, default_name: str) -> None:
    """``--out FILE`` (JSON) and ``--full`` on an argparse parser."""
    ap.add_argument("--out", default=str(RESULTS / default_name), metavar="JSON",
                    help=f"where the figures go as JSON (default bench/results/{default_name})")
    ap.add_argument("--full", action="store_true",
                    help="the full-size run (hours on a 2-core CPU) instead of the reduced one")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write JSON atomically (temp file + os.replace): never a half-written result."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=p.name + ".", dir=p.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, default=float)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- statistics

def summary(values: Iterable[float]) -> dict[str, float]:
    """Median, quartiles, min, max and count of finite values (nan when empty)."""
    v = sorted(float(x) for x in values if x is not None and x == x)
    if not v:
        nan = float("nan")
        return {"median": nan, "q1": nan, "q3": nan, "min": nan, "max": nan, "n": 0}
    if len(v) >= 2:
        q1, _, q3 = statistics.quantiles(v, n=4, method="inclusive")
    else:
        q1 = q3 = v[0]
    return {"median": statistics.median(v), "q1": q1, "q3": q3, "min": v[0], "max": v[-1],
            "n": len(v)}


def fmt_summary(s: Mapping[str, float], fmt: str = ".3g") -> str:
    """``median [q1, q3] (min..max, n)``."""
    return (f"{s['median']:{fmt}} [IQR {s['q1']:{fmt}}-{s['q3']:{fmt}}; "
            f"range {s['min']:{fmt}}-{s['max']:{fmt}}; n={s['n']}]")


# ----------------------------------------------------------------------------- configs

def sample_configs(space: Any, n: int, seed: int, shapes: Any,
                   include_reference: bool = False, fixed: dict[str, Any] | None = None
                   ) -> list[tuple[dict, Any, Any]]:
    """``n`` distinct (params, FusionConfig, TrainConfig) drawn uniformly from a space.

    Uses the space module's own ``suggest`` driven by Optuna's RandomSampler (in memory),
    so conditional dimensions behave exactly as in a search. Invalid combinations and
    repeats are skipped. ``fixed`` pins some dimensions (name -> value) and draws the rest.
    """
    import optuna
    from optuna.distributions import CategoricalDistribution, IntDistribution

    from nas.data import model_inputs
    from nas.search.space import InvalidCombination

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    over = model_inputs(shapes)
    out: list[tuple[dict, Any, Any]] = []
    seen: set[str] = set()
    if include_reference:
        f, t = space.build(space.reference_params(), over)
        out.append((space.reference_params(), f, t))
        seen.add(f.fusion_id + repr(sorted(t.to_dict().items())))
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 50 * n + 100:
            raise RuntimeError(f"could not draw {n} distinct valid configs from {space.path}")
        trial = study.ask()

        def suggest(name: str, dist: Any, trial: Any = trial) -> Any:
            if fixed and name in fixed:
                return fixed[name]
            if isinstance(dist, CategoricalDistribution):
                return trial.suggest_categorical(name, dist.choices)
            if isinstance(dist, IntDistribution):
                return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
            return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)

        try:
            params, f, t = space.suggest(suggest, over)
        except InvalidCombination:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        study.tell(trial, state=optuna.trial.TrialState.FAIL)  # only the draw matters
        key = f.fusion_id + repr(sorted(t.to_dict().items()))
        if key in seen:
            continue
        seen.add(key)
        out.append((params, f, t))
    return out


# ----------------------------------------------------------------------------- memory

class MemorySampler:
    """Samples the summed memory of a process and all its descendants in a thread.

    ``rss`` double-counts pages shared between processes (Ray's object store in /dev/shm,
    shared libraries); ``pss`` splits each shared page among the processes that map it,
    so the PSS sum is the honest total. Both peaks are kept.
    """

    def __init__(self, pid: int | None = None, interval: float = 0.5, pss: bool = True) -> None:
        import psutil

        self.root = psutil.Process(pid or os.getpid())
        self.interval = interval
        self.pss = pss
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_procs = 0
        self.samples: list[tuple[float, int, int, int]] = []  # (t, rss, pss, n_procs)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.monotonic()

    def _tree(self) -> list[Any]:
        import psutil
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return []

    def sample(self) -> tuple[int, int, int]:
        """(rss sum, pss sum, processes) now."""
        import psutil
        rss = pss = n = 0
        for p in self._tree():
            try:
                if self.pss:
                    m = p.memory_full_info()
                    rss += m.rss
                    pss += getattr(m, "pss", m.rss)
                else:
                    rss += p.memory_info().rss
                n += 1
            except psutil.Error:  # a worker that just exited
                continue
        return rss, pss, n

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, pss, n = self.sample()
            self.samples.append((time.monotonic() - self._t0, rss, pss, n))
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, n)
            self._stop.wait(self.interval)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def median_of(xs: Sequence[float]) -> float:
    """Median (nan when empty)."""
    return statistics.median(xs) if xs else float("nan")


# ----------------------------------------------------------------------------- timed costs

COST_TIMES: list[float] = []  # seconds of each timed_estimate_costs call in this process


def timed_estimate_costs(*args: Any, **kwargs: Any) -> dict[str, float]:
    """``nas.cost.estimate_costs``, timed into ``COST_TIMES`` (use as the evaluator's
    ``costs`` import path ``common:timed_estimate_costs`` in a bench process)."""
    from nas.cost import estimate_costs

    t0 = time.perf_counter()
    try:
        return estimate_costs(*args, **kwargs)
    finally:
        COST_TIMES.append(time.perf_counter() - t0)


def clear_cost_cache() -> None:
    """Forget the cached FLOP profiles, so a mode pays for its estimates as a fresh
    process (``nas search``, a Ray worker) does."""
    from nas import cost

    cost._profile.cache_clear()

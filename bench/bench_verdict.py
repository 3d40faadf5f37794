"""A verdict's wall time and the verdicts themselves, on the embedded synthetic data.

    python bench/bench_verdict.py                          # quick space: 8 trials, then 3 seeds
    python bench/bench_verdict.py --space gated_fusion --trials 22
    python bench/bench_verdict.py --full                   # gated_fusion, 100 trials, 3 seeds

Runs, in a fresh folder, ``nas search --space SPACE --trials N`` and then ``nas verdict``
(all 14 plan variants around the knee, ``--seeds`` seeds, on a local Ray), each as the user
would (a subprocess of this checkout), and prints the wall time of each step, the number of
runs, the summed training time of the runs, the load average before and after, and the
verdict table. Then reruns the verdict to time a rerun that reuses every run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_out_arg, machine_info, print_machine, write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _nas(args: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    env = dict(os.environ, PYTHONPATH=str(REPO), RAY_AUTH_MODE="disabled",
               RAY_USAGE_STATS_ENABLED="0")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "nas", *args], cwd=cwd, env=env,
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"nas {' '.join(args)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return time.perf_counter() - t0, r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="quick")
    ap.add_argument("--trials", type=int, default=None, help="search trials (default: space's)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--workdir", default=None, help="folder for studies.db (default: a temp)")
    add_out_arg(ap, "verdict.json")
    a = ap.parse_args()
    if a.full:
        a.space, a.trials = "gated_fusion", 100
    info = machine_info()
    print_machine(info)
    work = Path(a.workdir or tempfile.mkdtemp(prefix="nas-bench-verdict-"))
    work.mkdir(parents=True, exist_ok=True)
    search = ["search", "--space", a.space, "--study", "b", "--quiet"]
    if a.trials:
        search += ["--trials", str(a.trials)]
    search_s, _ = _nas(search, work)
    print(f"search: {a.space}, {a.trials or 'the space default'} trials: {search_s:.0f} s; "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    verdict = ["verdict", "--study", "b", "--seeds", str(a.seeds), "--out", str(work / "v")]
    verdict_s, r = _nas(verdict, work)
    doc = json.loads((work / "v" / "verdict.json").read_text())
    print(f"verdict: {doc['runs']['planned']} runs of {doc['epochs']:g} epochs around trial "
          f"{doc['point']['trial']}: {verdict_s:.0f} s wall, {doc['train_s']:.0f} s of training "
          f"summed over the runs; load {os.getloadavg()[0]:.1f}")
    print(r.stdout)
    rerun_s, _ = _nas(verdict, work)
    print(f"rerun (every run reused): {rerun_s:.1f} s")
    write_json(a.out, {"machine": info, "space": a.space, "trials": a.trials,
                       "seeds": a.seeds, "search_s": search_s, "verdict_s": verdict_s,
                       "rerun_s": rerun_s, "loadavg_end": os.getloadavg(), "verdict": doc})
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

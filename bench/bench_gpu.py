"""GPU: trials per GPU-hour with fractional GPUs (1, 2, 4 trials per GPU) and utilisation.

    python bench/bench_gpu.py          # reduced: 3000 MSR-VTT-shaped clips, 8 trials/setting
    python bench/bench_gpu.py --full   # the full msrvtt preset (9000 clips), 24 trials
    python bench/bench_gpu.py --per-gpu 1,2,4 --trials 8 --data "synthetic:preset=msrvtt,clips=3000"

For each setting k, ``nas search`` (the CLI, Ray executor) runs ``--trials`` trials of the
gated_fusion space with ``--gpus-per-trial 1/k --concurrency k*GPUs`` and no early stopping
(so every setting does the same work per trial), while ``nvidia-smi`` samples utilisation and
memory every second. Trials per GPU-hour = trials / (search wall-clock hours x GPUs), with
and without the one-off startup (Ray start, data generation in each worker).

Without CUDA (no torch.cuda device or no nvidia-smi) it prints that nothing was measured,
writes that into the JSON, and exits 0.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_out_arg, machine_info, print_machine, summary, write_json  # noqa: E402


class SmiSampler:
    """``nvidia-smi`` utilisation (%) and memory (MiB) of every GPU, once a second."""

    def __init__(self, interval_ms: int = 1000) -> None:
        self.cmd = ["nvidia-smi", "--query-gpu=index,utilization.gpu,memory.used",
                    "--format=csv,noheader,nounits", f"-lms={interval_ms}"]
        self.rows: list[tuple[float, int, float, float]] = []
        self.proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            parts = [p.strip() for p in line.split(",")]
            try:
                self.rows.append((time.monotonic(), int(parts[0]), float(parts[1]),
                                  float(parts[2])))
            except (ValueError, IndexError):
                continue

    def __enter__(self) -> "SmiSampler":
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        if self._thread is not None:
            self._thread.join(timeout=5)


def cuda_devices() -> int:
    """CUDA devices torch sees (0 when none, or when nvidia-smi is missing)."""
    try:
        import torch
    except ImportError:
        return 0
    if not torch.cuda.is_available() or shutil.which("nvidia-smi") is None:
        return 0
    return torch.cuda.device_count()


def run_setting(k: int, gpus: int, trials: int, space: str, data: str) -> dict[str, Any]:
    work = tempfile.mkdtemp(prefix=f"nas-bench-gpu{k}-")
    conc = k * gpus
    cmd = [sys.executable, "-m", "nas", "search", "--space", space, "--data", data,
           "--trials", str(trials), "--concurrency", str(conc), "--gpus-per-trial",
           f"{1.0 / k:g}", "--cpus-per-trial", "1", "--no-prune", "--storage",
           f"sqlite:///{work}/gpu.db", "--study", f"gpu{k}", "--quiet"]
    print("$ " + " ".join(cmd[1:]), flush=True)
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    t0 = time.monotonic()
    with SmiSampler() as smi:
        p = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        print(p.stdout[-2000:] + p.stderr[-4000:])
        raise RuntimeError(f"nas search exited {p.returncode}")
    import optuna
    study = optuna.load_study(study_name=f"gpu{k}", storage=f"sqlite:///{work}/gpu.db")
    done = [t for t in study.get_trials() if t.user_attrs.get("status") == "complete"]
    failed = [t for t in study.get_trials() if t.user_attrs.get("status") == "failed"]
    starts = [t.datetime_start.timestamp() for t in done]
    ends = [t.datetime_complete.timestamp() for t in done]
    span = (max(ends) - min(starts)) if done else float("nan")
    # utilisation while trials ran (skip startup/teardown samples)
    util = [u for (_, _, u, _) in smi.rows]
    mem = [m for (_, _, _, m) in smi.rows]
    busy = summary(util)
    res = {"per_gpu": k, "concurrency": conc, "gpu_fraction": 1.0 / k, "trials": len(done),
           "failed": len(failed), "wall_s": wall, "trial_span_s": span,
           "trials_per_gpu_hour": len(done) / (wall / 3600 * gpus),
           "trials_per_gpu_hour_excl_startup": len(done) / (span / 3600 * gpus) if done else 0,
           "mean_trial_wall_s": sum(float(t.user_attrs.get("wall_s", 0)) for t in done)
           / max(1, len(done)),
           "gpu_util": busy, "gpu_util_mean": sum(util) / len(util) if util else float("nan"),
           "gpu_mem_peak_mib": max(mem) if mem else float("nan"),
           "command": " ".join(cmd[1:])}
    print(f"{k} trial(s) per GPU: {len(done)} trials in {wall:.0f} s -> "
          f"{res['trials_per_gpu_hour']:.0f} trials/GPU-hour "
          f"({res['trials_per_gpu_hour_excl_startup']:.0f} excluding startup); GPU util mean "
          f"{res['gpu_util_mean']:.0f}% (median {busy['median']:.0f}%), peak memory "
          f"{res['gpu_mem_peak_mib']:.0f} MiB; {len(failed)} failed", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="gated_fusion")
    ap.add_argument("--data", default=None,
                    help="default synthetic:preset=msrvtt,clips=3000,val_clips=500,test_clips=0 "
                         "(--full: the whole preset)")
    ap.add_argument("--trials", type=int, default=None, help="per setting (default 8; --full 24)")
    ap.add_argument("--per-gpu", default="1,2,4", help="trials sharing one GPU")
    add_out_arg(ap, "gpu.json")
    args = ap.parse_args(argv)
    info = machine_info()
    print_machine(info)
    gpus = cuda_devices()
    if gpus == 0:
        print("GPU: not measured: no CUDA device (torch.cuda.is_available() is False or "
              "nvidia-smi is missing) on this machine.")
        write_json(args.out, {"machine": info, "measured": False,
                              "reason": "no CUDA device on this machine"})
        return 0
    import torch
    info["gpus"] = [torch.cuda.get_device_name(i) for i in range(gpus)]
    data = args.data or ("synthetic:preset=msrvtt" if args.full else
                         "synthetic:preset=msrvtt,clips=3000,val_clips=500,test_clips=0")
    trials = args.trials or (24 if args.full else 8)
    print(f"GPUs: {info['gpus']}; space {args.space}, data {data}, {trials} trials per setting, "
          "no early stopping", flush=True)
    results = [run_setting(int(k), gpus, trials, args.space, data)
               for k in args.per_gpu.split(",") if k.strip()]
    print("\n== GPU ==")
    for r in results:
        print(f"FIGURE: {r['per_gpu']} trial(s)/GPU: {r['trials_per_gpu_hour']:.0f} trials per "
              f"GPU-hour, GPU utilisation mean {r['gpu_util_mean']:.0f}%")
    write_json(args.out, {"machine": info, "measured": True, "data": data,
                          "space": args.space, "settings": results})
    print(f"json: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Throughput against the naive implementations, and peak memory of a 2-trial search.

    python bench/bench_throughput.py             # reduced (~10 min on 2 CPUs)
    python bench/bench_throughput.py --full      # larger batches/galleries, longer search
    python bench/bench_throughput.py --parts train,scoring,memory

1. Training clips/s of ``nas.model`` vs the naive model (``nn.MultiheadAttention``, one fused
   pass per (text, clip) pair): runs ``bench/bench_train.py --part throughput``.
2. Honest-scoring pairs/s of the batched tiled ``similarity`` vs a per-pair loop: runs
   ``bench/bench_scoring.py``.
   Both are the earlier issues' benchmarks, run unchanged as subprocesses; this script
   collects their figures (the ratios are measured side by side within each run).
3. Peak memory of ``nas search`` (the CLI, Ray executor, ``--concurrency 2``): the summed
   RSS and PSS of the driver and every descendant (GCS, raylet, Ray workers) sampled every
   0.5 s with psutil. RSS counts shared pages (Ray's object store, libraries) once per
   process that maps them; PSS divides them, so the PSS sum is the honest total.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, MemorySampler, add_out_arg, machine_info, print_machine, write_json  # noqa: E402


def _run(cmd: list[str], timeout: float) -> str:
    print("$ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    sys.stdout.write(p.stdout)
    if p.returncode != 0:
        sys.stdout.write(p.stderr[-3000:])
        raise RuntimeError(f"{cmd[1]} exited {p.returncode}")
    return p.stdout


def _num(pattern: str, text: str) -> float:
    m = re.search(pattern, text)
    return float(m.group(1).replace(",", "")) if m else float("nan")


def part_train(full: bool) -> dict[str, Any]:
    steps, batch = (16, 64) if full else (6, 32)
    out = _run([sys.executable, "bench/bench_train.py", "--part", "throughput", "--steps",
                str(steps), "--batch", str(batch)], timeout=7200)
    return {"command": f"python bench/bench_train.py --part throughput --steps {steps} "
                       f"--batch {batch}",
            "clips_per_s": _num(r"nas\.model\s+([\d.]+) clips/s", out),
            "naive_clips_per_s": _num(r"per-pair\s+loop\)\s+([\d.]+) clips/s", out),
            "ratio": _num(r"ratio ([\d.]+)x", out), "stdout": out}


def part_scoring(full: bool) -> dict[str, Any]:
    n, naive = (1000, 2048) if full else (256, 512)
    out = _run([sys.executable, "bench/bench_scoring.py", "--n", str(n), "--naive-pairs",
                str(naive)], timeout=7200)
    return {"command": f"python bench/bench_scoring.py --n {n} --naive-pairs {naive}",
            "pairs_per_s": _num(r"\(chunk \d+ pairs; ([\d,]+) pairs/s\)", out),
            "ratio": _num(r"speed ratio \(naive / batched\): ([\d.]+)x", out), "stdout": out}


def part_memory(full: bool, space: str) -> dict[str, Any]:
    trials = 12 if full else 6
    work = tempfile.mkdtemp(prefix="nas-bench-mem-")
    cmd = [sys.executable, "-m", "nas", "search", "--space", space, "--trials", str(trials),
           "--concurrency", "2", "--storage", f"sqlite:///{work}/mem.db", "--study", "mem",
           "--quiet"]
    print("$ " + " ".join(cmd), flush=True)
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    with MemorySampler(proc.pid, interval=0.5) as mem:
        stdout, _ = proc.communicate(timeout=7200)
    wall = time.monotonic() - t0
    tail = "\n".join(stdout.strip().splitlines()[-6:])
    if proc.returncode != 0:
        print(stdout[-3000:])
        raise RuntimeError(f"nas search exited {proc.returncode}")
    gib = 2 ** 30
    print(f"search with 2 concurrent trials ({trials} trials, space {space}): peak summed RSS "
          f"{mem.peak_rss / gib:.2f} GiB, peak summed PSS {mem.peak_pss / gib:.2f} GiB, up to "
          f"{mem.peak_procs} processes, {wall:.0f} s", flush=True)
    return {"command": " ".join(cmd[1:]), "trials": trials, "peak_rss_gib": mem.peak_rss / gib,
            "peak_pss_gib": mem.peak_pss / gib, "peak_processes": mem.peak_procs,
            "wall_s": wall, "samples": mem.samples[::4], "stdout_tail": tail}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="train,scoring,memory")
    ap.add_argument("--space", default="gated_fusion", help="space of the memory search")
    add_out_arg(ap, "throughput.json")
    args = ap.parse_args(argv)
    info = machine_info()
    print_machine(info)
    res: dict[str, Any] = {"machine": info}
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if "train" in parts:
        res["train"] = part_train(args.full)
    if "scoring" in parts:
        res["scoring"] = part_scoring(args.full)
    if "memory" in parts:
        res["memory"] = part_memory(args.full, args.space)
    print("\n== throughput ==")
    if "train" in res:
        r = res["train"]
        print(f"FIGURE: training {r['clips_per_s']:.1f} clips/s vs naive "
              f"{r['naive_clips_per_s']:.2f} clips/s: {r['ratio']:.1f}x")
    if "scoring" in res:
        r = res["scoring"]
        print(f"FIGURE: honest scoring {r['pairs_per_s']:,.0f} pairs/s, {r['ratio']:.1f}x the "
              "naive per-pair loop")
    if "memory" in res:
        r = res["memory"]
        print(f"FIGURE: peak memory of a search with 2 concurrent trials: {r['peak_pss_gib']:.2f}"
              f" GiB (PSS sum; RSS sum {r['peak_rss_gib']:.2f} GiB, {r['peak_processes']} "
              "processes)")
    write_json(args.out, res)
    print(f"json: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

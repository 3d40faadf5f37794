"""Ablation: train a configuration and each one-component-removed variant over seeds.

The variants are the registry's ablation components (``nas.variants``: what differs from
a plain text-agnostic AVIGATE model) that are on in the configuration, removed one at a
time, plus the full configuration. Each (variant, seed) is one ``nas.train.train_proxy``
run at the configuration's budget; a run whose training fails is recorded with its reason
and NaN metrics, and the others go on. The table reports mean and sample standard deviation
(ddof=1; 0 for a single seed) over the seeds that finished.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from nas._io import json_safe
from nas.config import FusionConfig, TrainConfig, atomic_write_text
from nas.variants import ablation_components

__all__ = ["METRICS", "AblationRun", "ablation_variants", "format_table", "run_ablation",
           "summarise", "write_outputs"]

# column -> (where it comes from, key): the table's metrics, in order
METRICS: dict[str, tuple[str, str]] = {
    "t2v_recall": ("metrics", "recall"),
    "v2t_recall": ("metrics", "v2t_recall"),
    "t2v_mdr": ("metrics", "t2v_mdr"),
    "query_gflops": ("costs", "query_gflops"),
}


@dataclass
class AblationRun:
    """One (variant, seed) training."""

    variant: str  # "full" or "w/o <component>"
    component: str | None
    seed: int
    fusion_id: str  # the variant's architecture (FusionConfig.fusion_id)
    values: dict[str, float] = field(default_factory=dict)  # METRICS columns
    wall_s: float = 0.0
    error: str | None = None

    def row(self) -> dict[str, Any]:
        return {"variant": self.variant, "component": self.component or "", "seed": self.seed,
                "fusion_id": self.fusion_id,
                **{k: self.values.get(k, math.nan) for k in METRICS},
                "wall_s": round(self.wall_s, 3), "error": self.error or ""}


def ablation_variants(fusion: FusionConfig) -> list[tuple[str, str | None, FusionConfig]]:
    """``[("full", None, fusion), ("w/o c", c, fusion without c) for each component on]``."""
    out: list[tuple[str, str | None, FusionConfig]] = [("full", None, fusion)]
    for v in ablation_components():
        if v.is_on(fusion):
            out.append((f"w/o {v.name}", v.name, v.remove(fusion)))
    return out


def run_ablation(fusion: FusionConfig, train: TrainConfig, data: Any, seeds: int = 3,
                 log: Callable[[str], None] | None = None,
                 trainer: Callable[..., Any] | None = None) -> list[AblationRun]:
    """Train every variant for seeds ``train.seed, train.seed + 1, ...``.

    ``trainer`` defaults to ``nas.train.train_proxy``.
    """
    from nas.errors import TrainingFailed

    if trainer is None:
        from nas.train import train_proxy

        trainer = train_proxy
    variants = ablation_variants(fusion)
    total = len(variants) * seeds
    runs: list[AblationRun] = []
    for name, comp, cfg in variants:
        for s in range(seeds):
            seed = train.seed + s
            run = AblationRun(name, comp, seed, cfg.fusion_id)
            t0 = time.perf_counter()
            try:
                res = trainer(cfg, train.replace(seed=seed), data)
                src = {"metrics": res.metrics, "costs": res.costs}
                run.values = {k: float(src[where].get(key, math.nan))
                              for k, (where, key) in METRICS.items()}
            except TrainingFailed as e:
                run.error = str(e)
            run.wall_s = time.perf_counter() - t0
            runs.append(run)
            if log:
                what = (f"failed: {run.error}" if run.error else
                        f"t2v recall {run.values['t2v_recall']:.1f}")
                log(f"[{len(runs)}/{total}] {name} seed {seed}: {what} ({run.wall_s:.1f} s)")
    return runs


def summarise(runs: Sequence[AblationRun]) -> list[dict[str, Any]]:
    """One row per variant (in run order): n, failures, mean and std of each metric."""
    order: list[str] = []
    groups: dict[str, list[AblationRun]] = {}
    for r in runs:
        if r.variant not in groups:
            order.append(r.variant)
            groups[r.variant] = []
        groups[r.variant].append(r)
    out = []
    for name in order:
        g = groups[name]
        ok = [r for r in g if r.error is None]
        row: dict[str, Any] = {"variant": name, "component": g[0].component or "",
                               "fusion_id": g[0].fusion_id, "n": len(ok),
                               "failed": len(g) - len(ok)}
        for k in METRICS:
            v = np.asarray([r.values[k] for r in ok], dtype=float)
            row[f"{k}_mean"] = float(v.mean()) if len(v) else math.nan
            row[f"{k}_std"] = float(v.std(ddof=1)) if len(v) > 1 else (0.0 if len(v) else math.nan)
        out.append(row)
    return out


def format_table(summary: Sequence[dict[str, Any]]) -> str:
    """A plain-text table: variant, n, and mean ± std of each metric."""
    head = ["variant", "n", *METRICS]
    lines = []
    for r in summary:
        cells = [r["variant"], f"{r['n']}" + (f" ({r['failed']} failed)" if r["failed"] else "")]
        for k in METRICS:
            m, s = r[f"{k}_mean"], r[f"{k}_std"]
            prec = 4 if k == "query_gflops" else 2
            cells.append("-" if math.isnan(m) else f"{m:.{prec}g} ± {s:.2g}"
                         if k == "query_gflops" else f"{m:.{prec}f} ± {s:.{prec}f}")
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) if lines else len(h)
              for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths)),
                      *(fmt.format(*c) for c in lines)])


def write_outputs(out_dir: str | Path, runs: Sequence[AblationRun],
                  summary: Sequence[dict[str, Any]], meta: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``ablation.csv`` (one row per variant: mean/std) and ``ablation.json`` (meta,
    summary and every run), each atomically."""
    out = Path(out_dir)
    buf = io.StringIO()
    if summary:
        w = csv.DictWriter(buf, fieldnames=list(summary[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(summary)
    csv_path, json_path = out / "ablation.csv", out / "ablation.json"
    atomic_write_text(csv_path, buf.getvalue())
    doc = {"meta": meta, "summary": list(summary), "runs": [r.row() for r in runs]}
    atomic_write_text(json_path, json.dumps(json_safe(doc), indent=2) + "\n")
    return csv_path, json_path

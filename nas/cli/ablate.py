"""``nas ablate``: remove one component at a time over several seeds; print the table."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from nas.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ablate", help="train a config and each one-component-removed variant",
                       description="Train CONFIG and, for each active component, CONFIG "
                                   "without it, per seed; print mean ± std and write "
                                   "ablation.csv and ablation.json.")
    p.add_argument("--config", required=True, metavar="CFG.yaml", help="config file")
    p.add_argument("--seeds", type=int, default=3, help="seeds per variant (default 3)")
    p.add_argument("--data", default=None, metavar="SPEC",
                   help="'synthetic', 'synthetic:clips=N,seed=S' or a feature directory "
                        "(default: the config's meta.data, as written by nas export, "
                        "else synthetic)")
    p.add_argument("--epochs", type=float, default=None, metavar="N",
                   help="override train.epochs (the budget of every run)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default runs/ablation-<config id>)")
    p.set_defaults(func=run)


def _meta_data(path: str) -> str | None:
    """The data spec recorded in the config file's meta section (nas export writes it)."""
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return None  # load_config_file has already reported a broken file
    meta = doc.get("meta") if isinstance(doc, dict) else None
    data = meta.get("data") if isinstance(meta, dict) else None
    return data if isinstance(data, str) and data.strip() else None


def run(args: argparse.Namespace) -> int:
    from nas.ablate import format_table, run_ablation, summarise, write_outputs
    from nas.config import load_config_file
    from nas.data import load_data

    if args.seeds < 1:
        raise UserError(f"--seeds: must be >= 1, got {args.seeds}")
    fusion, train = load_config_file(args.config)
    if args.epochs is not None:
        if not (math.isfinite(args.epochs) and args.epochs > 0):
            raise UserError(f"--epochs: must be a positive number, got {args.epochs}")
        train = train.replace(epochs=float(args.epochs))
    out = Path(args.out) if args.out else Path("runs") / f"ablation-{fusion.config_id}"
    data = load_data(args.data or _meta_data(args.config) or "synthetic")
    comps = fusion.active_components
    print(f"nas ablate: {fusion.config_id} on {data.name}: full + {len(comps)} removed "
          f"component(s) {comps} x {args.seeds} seed(s), {train.epochs:g} epochs each",
          file=sys.stderr, flush=True)
    runs = run_ablation(fusion, train, data, seeds=args.seeds,
                        log=lambda s: print("  " + s, file=sys.stderr, flush=True))
    summary = summarise(runs)
    print(format_table(summary))
    meta = {"config": str(args.config), "config_id": fusion.config_id, "data": data.name,
            "seeds": args.seeds, "epochs": train.epochs, "components": comps}
    csv_path, json_path = write_outputs(out, runs, summary, meta)
    print(f"nas ablate: wrote {csv_path} and {json_path}", file=sys.stderr)
    return 0

"""``nas ablate``: remove one component at a time over several seeds; print the table."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from nas.cli.train import add_config_args
from nas.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ablate", help="train a config and each one-component-removed variant",
                       description="Train CONFIG and, for each active component, CONFIG "
                                   "without it, per seed; print mean ± std and write "
                                   "ablation.csv and ablation.json.")
    add_config_args(p)
    p.add_argument("--seeds", type=int, default=3, help="seeds per variant (default 3)")
    p.add_argument("--epochs", type=float, default=None, metavar="N",
                   help="override train.epochs (the budget of every run)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default runs/ablation-<config_id>, the "
                        "configuration's id as nas export's meta.config_id)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nas.ablate import format_table, run_ablation, summarise, write_outputs
    from nas.cli.train import config_data, warnings_as_lines
    from nas.config import config_key, load_config_file
    from nas.data import load_data

    if args.seeds < 1:
        raise UserError(f"--seeds: must be >= 1, got {args.seeds}")
    fusion, train = load_config_file(args.config)
    config_id = config_key(fusion, train)  # of the file as written, before --epochs
    if args.epochs is not None:
        if not (math.isfinite(args.epochs) and args.epochs > 0):
            raise UserError(f"--epochs: must be a positive number, got {args.epochs}")
        train = train.replace(epochs=float(args.epochs))
    out = Path(args.out) if args.out else Path("runs") / f"ablation-{config_id}"
    spec, origin = config_data(args.data, args.config)
    data = load_data(spec)
    comps = fusion.active_components
    print(f"nas ablate: config {config_id} on {data.name} ({origin}): full + {len(comps)} "
          f"removed component(s) {comps} x {args.seeds} seed(s), {train.epochs:g} epochs each",
          file=sys.stderr, flush=True)
    with warnings_as_lines("ablate", sys.stderr):
        runs = run_ablation(fusion, train, data, seeds=args.seeds,
                            log=lambda s: print("  " + s, file=sys.stderr, flush=True))
    summary = summarise(runs)
    print(format_table(summary))
    meta = {"config": str(args.config), "config_id": config_id,
            "fusion_id": fusion.fusion_id, "data": data.name,
            "seeds": args.seeds, "epochs": train.epochs, "components": comps}
    csv_path, json_path = write_outputs(out, runs, summary, meta)
    print(f"nas ablate: wrote {csv_path} and {json_path}", file=sys.stderr)
    return 0

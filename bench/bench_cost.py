"""What a cost estimate costs: the FLOP counting behind every new architecture.

    python bench/bench_cost.py [--space gated_fusion] [--configs 24] [--rounds 2]

The search estimates the costs of every new architecture before training it (the
objectives and ``--max`` limits need them), the start-up design of ``--no-warm-start``
estimates 16 at once, and each ``--cost-aware`` choice up to 4 more. This script draws
``--configs`` distinct configurations from a space and estimates their costs in a fresh
process (``nas.cost.estimate_costs``, empty cache), two ways, alternated ``--rounds``
times so both see the same load:

- ``nas``:   the tool's counter (``nas.cost._FlopCount``: torch's FLOP formulas in a
             plain dispatch mode, hooks on the fusion blocks);
- ``torch``: the same passes under ``torch.utils.flop_counter.FlopCounterMode`` (what
             ``nas.cost`` used up to 2026-12-02: a module tracker and a dynamo-disabling
             wrapper on every op; its first use imports dynamo).

It prints each process's CPU seconds for the first estimate (one-off set-up included),
the rest, and the import of ``nas.cost``; and checks that both count the same FLOPs for
every configuration (exit 1 if not).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_out_arg, machine_info, print_machine, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _torch_counter() -> Any:
    """``FlopCounterMode`` behind the interface of ``nas.cost._FlopCount``."""
    from torch.utils.flop_counter import FlopCounterMode

    class TorchCount:
        def __init__(self, scope: Any = ()) -> None:
            self.mode = FlopCounterMode(display=False)
            self.total = self.scoped = 0

        def __enter__(self) -> "TorchCount":
            self.mode.__enter__()
            return self

        def __exit__(self, *exc: Any) -> None:
            self.mode.__exit__(*exc)
            self.total = int(self.mode.get_total_flops())
            self.scoped = int(sum(self.mode.get_flop_counts().get("FusionBlock", {}).values()))

    return TorchCount


def child(counter: str, space_name: str, n: int, seed: int) -> None:
    """One fresh process: import, draw, estimate; print JSON."""
    t0 = time.process_time()
    import nas.cost as cost
    t_import = time.process_time() - t0
    from nas.data import load_data
    from nas.search.space import load_space

    from common import sample_configs

    space = load_space(str(ROOT / "search_spaces" / f"{space_name}.yaml"))
    shapes = load_data(space.data).shapes
    configs = [f for _, f, _ in sample_configs(space, n, seed, shapes)]
    if counter == "torch":
        cost._FlopCount = _torch_counter()  # type: ignore[attr-defined, misc]
    times, flops = [], []
    for f in configs:
        t = time.process_time()
        c = cost.estimate_costs(f, shapes)
        times.append(time.process_time() - t)
        flops.append([c["index_gflops"], c["query_gflops"], c["text_gflops"],
                      c["pair_gflops"], cost.flop_profile(f, shapes).layer_per_pair])
    print(json.dumps({"import_s": t_import, "times": times, "flops": flops}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="gated_fusion")
    ap.add_argument("--configs", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    add_out_arg(ap, "cost.json")
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.space, args.configs, args.seed)
        return 0
    print_machine(machine_info())
    runs: dict[str, list[dict[str, Any]]] = {"nas": [], "torch": []}
    for r in range(args.rounds):
        for counter in ("nas", "torch") if r % 2 == 0 else ("torch", "nas"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", counter, "--space", args.space,
                 "--configs", str(args.configs), "--seed", str(args.seed)],
                capture_output=True, text=True, check=True, cwd=ROOT)
            runs[counter].append(json.loads(out.stdout.strip().splitlines()[-1]))
    same = all(a["flops"] == b["flops"] for a in runs["nas"] for b in runs["torch"])
    print(f"{args.configs} configurations of {args.space}, one fresh process per counter and "
          f"round ({args.rounds} rounds, alternated); process CPU seconds:")
    print("| counter | round | import nas.cost | first estimate | the other "
          f"{args.configs - 1} (mean each) | all |")
    print("|---|---|---|---|---|---|")
    for counter, rs in runs.items():
        for i, r in enumerate(rs):
            t = r["times"]
            print(f"| {counter} | {i + 1} | {r['import_s']:.2f} | {t[0]:.3f} | "
                  f"{sum(t[1:]):.2f} ({sum(t[1:]) / max(1, len(t) - 1):.3f}) | {sum(t):.2f} |")
    best = {c: min(sum(r["times"]) for r in rs) for c, rs in runs.items()}
    rest = {c: min(sum(r["times"][1:]) for r in rs) for c, rs in runs.items()}
    print(f"torch / nas, best round each: all {best['torch'] / best['nas']:.1f}x, "
          f"without the first estimate {rest['torch'] / rest['nas']:.1f}x")
    print(f"same FLOPs for every configuration: {'yes' if same else 'NO'}")
    write_json(args.out, {"machine": machine_info(), "runs": runs, "same": same})
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())

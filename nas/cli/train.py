"""``nas train``: full training of one configuration, with checkpoints and resume.

Writes into ``--out`` (default ``runs/<config_id>``, the id of the configuration in the file:
the one ``nas export`` writes as ``meta.config_id`` and the front table shows):

- ``config.yaml``   the config actually trained (dims fitted to the data),
- ``metrics.json``  one entry per epoch (val metrics, train loss, wall time) and, at the
  end, the test split's metrics when the data has one,
- ``gates.json``    gate statistics of the final model on the validation gallery,
- ``last.pt``        self-describing checkpoint after every epoch (``--resume`` reads it),
- ``best.pt``        the checkpoint with the best validation ``recall`` so far.

Every file is written atomically (temp file + rename).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, TextIO

from nas.errors import UserError

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``nas train``."""
    p = subparsers.add_parser(
        "train", help="train one configuration at full budget and save a checkpoint",
        description="Train one configuration (a config file with fusion: and train: "
                    "sections, e.g. written by `nas export`) and save a self-describing "
                    "checkpoint, per-epoch metrics and gate statistics.")
    add_config_args(p)
    p.add_argument("--epochs", type=float, default=None, metavar="N",
                   help="training budget in epochs (default: the config's train.epochs)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: runs/<config_id>, the configuration's id "
                        "as nas export's meta.config_id)")
    p.add_argument("--resume", action="store_true",
                   help="continue from DIR/last.pt (same config, data and epochs)")
    p.add_argument("--seed", type=int, default=None, help="override train.seed")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch CPU threads (override train.num_threads)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)
    return p


class ProgressBar:
    """A one-line progress bar on a stream; on a non-terminal, one line per epoch."""

    def __init__(self, stream: TextIO, total_steps: int, steps_per_epoch: int,
                 enabled: bool = True) -> None:
        self.stream, self.total, self.spe = stream, total_steps, steps_per_epoch
        self.enabled = enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.t0 = time.perf_counter()
        self.start_step: int | None = None
        self._last = 0.0

    def __call__(self, step: int, _target: int, loss: float) -> None:
        if not self.tty:
            return
        now = time.perf_counter()
        if self.start_step is None:
            # the first step's time is unknown (it ended at `now`): the rate counts from here
            self.start_step, self.t0 = step, now
        if now - self._last < 0.1 and step < self.total:
            return
        self._last = now
        frac = step / max(1, self.total)
        done = int(30 * frac)
        steps, dt = step - self.start_step, now - self.t0
        rate = steps / dt if steps > 0 and dt > 0 else float("nan")
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        shown = f"{rate:6.1f}" if math.isfinite(rate) else "     ?"
        self.stream.write(f"\r  epoch {step / self.spe:6.2f} [{'#' * done}{'.' * (30 - done)}] "
                          f"{100 * frac:5.1f}%  loss {loss:7.4f}  {shown} it/s  "
                          f"eta {_fmt_s(eta)}   ")
        self.stream.flush()

    def line(self, text: str) -> None:
        # Per-epoch lines are results, not progress: printed even with --no-progress.
        if self.enabled and self.tty:
            self.stream.write("\r" + " " * 100 + "\r")
        self.stream.write(text + "\n")
        self.stream.flush()


def _fmt_s(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    m, sec = divmod(int(s), 60)
    return f"{m}:{sec:02d}"


def add_config_args(p: argparse.ArgumentParser) -> None:
    """``--config`` and ``--data`` of the commands that train a config file (train, ablate);
    :func:`config_data` resolves the data."""
    p.add_argument("--config", required=True, metavar="CFG.yaml", help="config file")
    p.add_argument("--data", default=None, metavar="SPEC",
                   help="'synthetic', 'synthetic:clips=2000,seed=1', 'digits' or a feature "
                        "directory (default: the config's meta.data, as written by nas export, "
                        "else synthetic)")


def config_data(arg: str | None, config: str) -> tuple[str, str]:
    """The data spec to train on and where it came from: ``--data``, else the config file's
    ``meta.data`` (what ``nas export`` records: the study's data), else ``synthetic``."""
    import yaml

    if arg:
        return arg, "--data"
    try:
        doc = yaml.safe_load(Path(config).read_text())
    except (OSError, yaml.YAMLError):
        doc = None  # load_config_file has already reported a broken file
    meta = doc.get("meta") if isinstance(doc, dict) else None
    data = meta.get("data") if isinstance(meta, dict) else None
    if isinstance(data, str) and data.strip():
        return data, f"recorded in {config}, meta.data"
    return "synthetic", f"default: {config} records no data"


@contextlib.contextmanager
def warnings_as_lines(command: str, stream: TextIO) -> Iterator[None]:
    """Print the warnings shown while the block runs (gate saturation, ...) as one
    ``nas COMMAND: warning: ...`` line each, once, at its end, instead of Python's two-line
    form with a source line. Warnings Python's filters hide stay hidden."""
    with warnings.catch_warnings(record=True) as caught:
        try:
            yield
        finally:
            seen: set[str] = set()
            for w in caught:
                msg = str(w.message)
                if msg not in seen:
                    seen.add(msg)
                    print(f"nas {command}: warning: {msg}", file=stream, flush=True)


def _write_json(path: Path, obj: Any) -> None:
    from nas.config import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=True) + "\n")


def run(args: argparse.Namespace) -> int:
    """Train, checkpoint and report one configuration. Returns the exit status."""
    import torch  # noqa: F401  (heavy imports only when the command runs)

    from nas.checkpoint import load_checkpoint, save_checkpoint
    from nas.config import config_key, load_config_file, save_config_file
    from nas.data import load_data
    from nas.evaluate import GateRecorder, gate_statistics
    from nas.train import (
        GateSaturationWarning,
        Trainer,
        gate_warnings,
        resolve_device,
        training_runtime,
    )

    err = sys.stderr
    fusion, train = load_config_file(args.config)
    config_id = config_key(fusion, train)  # of the file as written, before any override
    overrides: dict[str, Any] = {}
    if args.epochs is not None:
        if not (math.isfinite(args.epochs) and args.epochs > 0):
            raise UserError(f"--epochs: must be a positive number, got {args.epochs}")
        overrides["epochs"] = float(args.epochs)
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.device is not None:
        overrides["device"] = args.device
    if args.threads is not None:
        overrides["num_threads"] = args.threads
    if overrides:
        train = train.replace(**overrides)

    spec, origin = config_data(args.data, args.config)
    data = load_data(spec)
    print(f"nas train: data {data.name} ({origin})", file=err)
    device = resolve_device(train.device)
    out = Path(args.out) if args.out else Path("runs") / config_id
    last, best = out / "last.pt", out / "best.pt"
    if args.resume and not last.exists():
        raise UserError(f"--resume: {last} does not exist (nothing to resume)")
    if not args.resume and last.exists():
        raise UserError(f"{last} exists: pass --resume to continue it, or choose another --out")

    with warnings_as_lines("train", err), training_runtime(train, device):
        warnings.simplefilter("always", GateSaturationWarning)  # each message; deduped above
        trainer = Trainer(fusion, train, data, budget_epochs=train.epochs, device=device)
        for note in trainer.fit_notes:
            print(f"nas train: config adapted to the data {data.name}: {note}", file=err)
        best_recall = -math.inf
        if args.resume:
            ck = load_checkpoint(last, map_location=device)
            trainer.load_checkpoint_state(ck)
            if ck.get("best_recall") is not None:
                best_recall = float(ck["best_recall"])
            print(f"nas train: resuming {last} at epoch {trainer.epoch:.3g} "
                  f"(step {trainer.step}/{trainer.total_steps})", file=err)
        ids = {"config_id": config_id, "fusion_id": trainer.fusion.fusion_id}
        save_config_file(out / "config.yaml", trainer.fusion, train,
                         meta={**ids, "data": data.name})

        # an evaluation (and checkpoint) at the end of every epoch, and at the budget
        n_full = int(math.floor(train.epochs))
        ends = [float(e) for e in range(1, n_full + 1)]
        if not ends or ends[-1] < train.epochs:
            ends.append(float(train.epochs))
        bar = ProgressBar(err, trainer.total_steps, trainer.steps_per_epoch,
                          enabled=not args.no_progress)
        bar.line(f"nas train: config {config_id} on {data.name}, {train.epochs:g} "
                 f"epochs x {trainer.steps_per_epoch} steps (batch {trainer.batch}) on {device}")
        extra = {"data": data.name}
        recorder = None
        for i, epochs in enumerate(ends):
            target = trainer.steps_for(epochs)
            if target <= trainer.step:
                continue  # done before the interruption
            trainer.train_until(target, bar)
            is_last = i == len(ends) - 1
            recorder = GateRecorder() if is_last else None
            m = trainer.evaluate_rung(bar.t0, gate_recorder=recorder)
            improved = m["recall"] > best_recall
            if improved:
                best_recall = m["recall"]
            state = trainer.checkpoint_state()
            save_checkpoint(last, **state, best_recall=best_recall, extra=extra)
            if improved:
                save_checkpoint(best, **state, best_recall=best_recall, extra=extra)
            _write_json(out / "metrics.json", {**ids, "data": data.name,
                                               "epochs": trainer.history})
            bar.line(f"  epoch {trainer.epoch:6.2f}  loss {m['train_loss']:.4f}  "
                     f"val t2v R@1 {m['t2v_r1']:.1f}  R@5 {m['t2v_r5']:.1f}  "
                     f"R@10 {m['t2v_r10']:.1f}  recall {m['recall']:.1f}  "
                     f"v2t recall {m['v2t_recall']:.1f}" + ("  *best" if improved else ""))

        if recorder is None:  # resumed a run that had already finished: record gates now
            recorder = GateRecorder()
            trainer.evaluate(gate_recorder=recorder)
        stats = gate_statistics(recorder)
        _write_json(out / "gates.json", stats)
        gate_warnings(stats)
        result: dict[str, Any] = {**ids, "data": data.name, "epochs": trainer.history}
        if getattr(data, "test", None) is not None:
            result["test"] = trainer.evaluate(split=data.test)
            t = result["test"]
            bar.line(f"  test  t2v R@1 {t['t2v_r1']:.1f}  R@5 {t['t2v_r5']:.1f}  "
                     f"R@10 {t['t2v_r10']:.1f}  MdR {t['t2v_mdr']:.1f}")
        _write_json(out / "metrics.json", result)
    print(f"nas train: wrote {out}/ (last.pt, best.pt, metrics.json, gates.json, config.yaml)",
          file=err)
    return 0

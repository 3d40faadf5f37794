"""Proxy and full training of one configuration. Imports neither Optuna nor Ray.

``train_proxy`` trains a config for a budget in epochs (fractional is fine), evaluates
on the validation gallery with honest scoring after each rung and calls
``report(rung_index, metrics)``; the same function runs under Ray, in a plain loop or
in a test. ``Trainer`` is the loop itself; ``nas train`` drives it epoch by epoch and
checkpoints it.

Batches. One epoch shows every training clip that has at least one caption once, in a
seeded random order, in full batches of ``batch_size`` clips (the last partial batch is
dropped so the contrastive loss always sees the same number of negatives). Each clip in
a batch brings one caption drawn at random among its captions, and text i of the batch
belongs to clip i (``text_clip = arange(B)``): no two texts of a batch share a clip, so
the in-batch InfoNCE never treats a true match as a negative. The order and caption
draws of epoch e are a pure function of (seed, e), so a run resumed at any step sees
exactly the batches an uninterrupted run would.

Schedule. AdamW (no weight decay on biases, norms and 1-d parameters), linear warm-up
then cosine decay to 0 over the *whole* budget (the last rung), with gradient clipping:
the model at rung r is the very model a full-budget run has after r epochs, which keeps
successive halving honest.

Device. CUDA with bf16 autocast when present (``train.device = auto``), else CPU. On CPU
a seed fixes the result (``torch.manual_seed``, per-epoch numpy generators,
``torch.use_deterministic_algorithms``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from nas.config import FusionConfig, TrainConfig
from nas.data import fit_to_data
from nas.errors import TrainingFailed, UserError

__all__ = [
    "GateSaturationWarning",
    "Trainer",
    "TrainResult",
    "fit_to_data",
    "resolve_device",
    "train_proxy",
    "training_runtime",
]

log = logging.getLogger(__name__)

ReportFn = Callable[[int, dict], "bool | None"]
ProgressFn = Callable[[int, int, float], None]


class GateSaturationWarning(UserWarning):
    """Many gate values sit at their limits (model.md section 4): the gates stopped learning."""


@dataclass
class TrainResult:
    """What one (proxy) training returns (docs/ARCHITECTURE.md)."""

    metrics: dict[str, float]  # val metrics at the last rung reached
    costs: dict[str, float]  # params, index_gflops, query_gflops, latency_ms
    gate_stats: dict  # gate_statistics at the last rung (empty when stopped early)
    epochs: float  # budget reached
    stopped: bool  # report() asked to stop before the last rung
    wall_s: float
    history: list[dict] = field(default_factory=list)  # one metrics dict per rung


# ----------------------------------------------------------------------------------
# setup helpers
# ----------------------------------------------------------------------------------

def resolve_device(spec: str) -> torch.device:
    """``auto`` -> CUDA when available else CPU; ``cuda``/``cuda:N`` must exist."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device {spec!r} requested but CUDA is not available here")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s)")
        return dev
    return torch.device(spec)


@contextlib.contextmanager
def training_runtime(train: TrainConfig, device: torch.device) -> Iterator[None]:
    """Thread count and CPU determinism for the duration of a training; restored after."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        if train.num_threads > 0:
            torch.set_num_threads(train.num_threads)
        if device.type == "cpu":
            # warn_only: an op without a deterministic CPU kernel should not kill a trial.
            torch.use_deterministic_algorithms(True, warn_only=True)
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)


def _warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def _check_rungs(rungs: Sequence[float] | None, epochs: float) -> list[float]:
    if rungs is None:
        return [float(epochs)]
    out = [float(r) for r in rungs]
    if not out:
        raise UserError("rungs: expected at least one epoch count, got an empty list")
    if any(not math.isfinite(r) or r <= 0 for r in out):
        raise UserError(f"rungs: every rung must be a positive number of epochs, got {out}")
    if any(b <= a for a, b in zip(out, out[1:])):
        raise UserError(f"rungs: must be strictly increasing, got {out}")
    return out


# ----------------------------------------------------------------------------------
# the loop
# ----------------------------------------------------------------------------------

class Trainer:
    """Model, optimiser, schedule and batch order of one training run.

    ``budget_epochs`` fixes the length of the learning-rate schedule; ``train_until``
    advances to a step, ``evaluate`` scores the validation gallery honestly.
    ``state_dict``/``load_state_dict`` make a resumed run continue exactly.
    """

    def __init__(self, fusion: FusionConfig, train: TrainConfig, data: Any,
                 budget_epochs: float | None = None, device: torch.device | None = None) -> None:
        from nas.evaluate import tune_malloc
        from nas.model import build_model

        self.fusion, self.fit_notes = fit_to_data(fusion, data.shapes)
        self.train_cfg = train
        self.data = data
        self.device = device or resolve_device(train.device)
        self.budget = float(budget_epochs if budget_epochs is not None else train.epochs)
        self.amp = self.device.type == "cuda"

        self._split = data.train
        self._clips = self._split.clips_with_text  # clips that can be positives
        if len(self._clips) < 2:
            raise UserError(f"data {getattr(data, 'name', '?')}: the training split has "
                            f"{len(self._clips)} clip(s) with captions; need at least 2")
        self.batch = min(train.batch_size, len(self._clips))
        self.steps_per_epoch = max(1, len(self._clips) // self.batch)
        self.total_steps = self.steps_for(self.budget)

        tune_malloc()  # text-conditioned steps allocate and free the same activations
        torch.manual_seed(train.seed)
        self.model = build_model(self.fusion).to(self.device)
        decay: list[torch.nn.Parameter] = []
        no_decay: list[torch.nn.Parameter] = []
        for p in self.model.parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 else no_decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": train.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}], lr=train.lr)
        warmup = int(round(train.warmup_frac * self.total_steps))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _warmup_cosine(self.total_steps, warmup))
        self.step = 0
        self.history: list[dict] = []
        self._epoch_cache: tuple[int, np.ndarray, np.ndarray] | None = None
        self._val: tuple[Any, Any, torch.Tensor] | None = None
        self._loss_sum = 0.0
        self._loss_n = 0

    # -- budget -------------------------------------------------------------------
    def steps_for(self, epochs: float) -> int:
        """Optimizer steps after ``epochs`` epochs (at least 1)."""
        return max(1, int(round(epochs * self.steps_per_epoch)))

    @property
    def epoch(self) -> float:
        """Epochs done so far (fractional)."""
        return self.step / self.steps_per_epoch

    # -- batches ------------------------------------------------------------------
    def _epoch_plan(self, e: int) -> tuple[np.ndarray, np.ndarray]:
        """Clip order and one caption per clip for epoch ``e``: a pure function of (seed, e)."""
        if self._epoch_cache is None or self._epoch_cache[0] != e:
            rng = np.random.default_rng([self.train_cfg.seed, e, 0x6E6173])
            clips = rng.permutation(self._clips)
            texts = self._split.sample_captions(clips, rng)
            self._epoch_cache = (e, clips, texts)
        return self._epoch_cache[1], self._epoch_cache[2]

    def batch_indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(clip indices, text indices) of optimizer step ``step`` (0-based)."""
        e, b = divmod(step, self.steps_per_epoch)
        clips, texts = self._epoch_plan(e)
        sl = slice(b * self.batch, (b + 1) * self.batch)
        return clips[sl], texts[sl]

    # -- training -----------------------------------------------------------------
    def train_until(self, target_step: int, progress: ProgressFn | None = None) -> None:
        """Run optimizer steps until ``self.step == target_step``."""
        split = self.data.train
        tc = self.train_cfg
        self.model.train()
        while self.step < target_step:
            clip_idx, text_idx = self.batch_indices(self.step)
            clips = split.clip_batch(clip_idx, device=self.device)
            texts = split.text_batch(text_idx, device=self.device)
            text_clip = torch.arange(len(clip_idx), device=self.device)
            with self._autocast():
                out = self.model.training_loss(clips, texts, text_clip, negatives=tc.negatives)
            loss_value = float(out.loss.detach().float())
            if not math.isfinite(loss_value):
                raise TrainingFailed(self._where() + f": loss is {loss_value}"
                                     + _bad_parts(getattr(out, "parts", {})))
            self.optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            if tc.grad_clip > 0:
                norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip))
                if not math.isfinite(norm):
                    raise TrainingFailed(self._where() + f": gradient norm is {norm} "
                                         f"(loss {loss_value:.4g} was finite)")
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            self._loss_sum += loss_value
            self._loss_n += 1
            if progress is not None:
                progress(self.step, target_step, loss_value)

    def _where(self) -> str:
        e = self.step // self.steps_per_epoch + 1
        return (f"training {self.fusion.fusion_id} failed at epoch {e} step {self.step + 1} "
                f"(of {self.total_steps}, lr {self.scheduler.get_last_lr()[0]:.3g})")

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def pop_train_loss(self) -> float:
        """Mean training loss since the last call (nan when no step ran)."""
        v = self._loss_sum / self._loss_n if self._loss_n else float("nan")
        self._loss_sum, self._loss_n = 0.0, 0
        return v

    # -- evaluation ---------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, split: Any = None, gate_recorder: Any = None) -> dict[str, float]:
        """Retrieval metrics of every text against every clip of ``split`` (val by default)."""
        from nas.evaluate import retrieval_metrics, similarity

        if split is None or split is self.data.val:
            if self._val is None:
                self._val = self._gallery(self.data.val)
            texts, clips, text_clip = self._val
        else:
            texts, clips, text_clip = self._gallery(split)
        was_training = self.model.training
        self.model.eval()
        try:
            with self._autocast():
                S = similarity(self.model, texts, clips, chunk_size=self.train_cfg.eval_chunk,
                               rerank_k=self.fusion.rerank_k or None, gate_records=gate_recorder)
        finally:
            self.model.train(was_training)
        S = S.float()
        if not bool(torch.isfinite(S).all()):
            n_bad = int((~torch.isfinite(S)).sum())
            raise TrainingFailed(f"evaluation of {self.fusion.fusion_id} after {self.epoch:.3g} "
                                 f"epochs (step {self.step}): {n_bad} of {S.numel()} "
                                 "similarity scores are not finite")
        return {k: float(v) for k, v in retrieval_metrics(S.cpu(), text_clip).items()}

    def evaluate_rung(self, started: float, gate_recorder: Any = None) -> dict[str, float]:
        """Validation metrics at this point of training, with ``epochs``, ``step``,
        ``train_loss`` (the mean since the last rung) and ``wall_s`` (since ``started``, a
        ``time.perf_counter()``); also appended to ``history``."""
        metrics = self.evaluate(gate_recorder=gate_recorder)
        metrics.update(epochs=self.epoch, step=float(self.step),
                       train_loss=self.pop_train_loss(), wall_s=time.perf_counter() - started)
        self.history.append(dict(metrics))
        return metrics

    def _gallery(self, split: Any) -> tuple[Any, Any, torch.Tensor]:
        clips = split.clip_batch(np.arange(split.n_clips), device=self.device)
        texts = split.text_batch(np.arange(split.n_texts), device=self.device)
        return texts, clips, torch.as_tensor(np.asarray(split.text_clip, dtype=np.int64))

    # -- state --------------------------------------------------------------------
    def rng_state(self) -> dict[str, Any]:
        """Torch RNG states as tensors (numpy draws are derived from (seed, epoch))."""
        state: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = list(torch.cuda.get_rng_state_all())
        return state

    def set_rng_state(self, state: dict[str, Any]) -> None:
        if "torch" in state:
            torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

    def checkpoint_state(self) -> dict[str, Any]:
        """Keyword arguments for ``nas.checkpoint.save_checkpoint``."""
        return dict(fusion=self.fusion, train=self.train_cfg,
                    model_state=self.model.state_dict(),
                    optimizer_state=self.optimizer.state_dict(),
                    scheduler_state=self.scheduler.state_dict(),
                    step=self.step, epoch=self.epoch, total_steps=self.total_steps,
                    rng=self.rng_state(), history=list(self.history))

    def load_checkpoint_state(self, ck: dict[str, Any]) -> None:
        """Continue from a payload of ``nas.checkpoint.load_checkpoint``."""
        if ck["fusion"].fusion_id != self.fusion.fusion_id:
            raise UserError("checkpoint was trained with another configuration "
                            f"({ck['fusion'].fusion_id}, this one is {self.fusion.fusion_id})")
        if int(ck.get("total_steps", self.total_steps)) != self.total_steps:
            raise UserError(f"checkpoint's schedule has {ck.get('total_steps')} steps, this run "
                            f"{self.total_steps}: same --epochs, batch size and data needed "
                            "to resume")
        self.model.load_state_dict(ck["model"])
        if ck.get("optimizer") is not None:
            self.optimizer.load_state_dict(ck["optimizer"])
        if ck.get("scheduler") is not None:
            self.scheduler.load_state_dict(ck["scheduler"])
        self.step = int(ck["step"])
        self.history = list(ck.get("history") or [])
        self.set_rng_state(ck.get("rng") or {})


def gate_warnings(stats: dict) -> list[str]:
    """Emit the gate-saturation warnings of ``gate_statistics`` (once each)."""
    msgs = [str(w) for w in (stats.get("warnings") or [])]
    for msg in msgs:
        warnings.warn(msg, GateSaturationWarning, stacklevel=3)
    return msgs


def _bad_parts(parts: dict) -> str:
    bad = {k: v for k, v in parts.items() if not _finite(v)}
    if bad:
        return " (non-finite part(s): " + ", ".join(f"{k}={v}" for k, v in bad.items()) + ")"
    if parts:
        return " (every reported part is finite: " + ", ".join(
            f"{k}={float(v):.4g}" for k, v in parts.items()) + ")"
    return ""


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return True


# ----------------------------------------------------------------------------------
# proxy training
# ----------------------------------------------------------------------------------

def train_proxy(fusion: FusionConfig, train: TrainConfig, data: Any,
                rungs: Sequence[float] | None = None, report: ReportFn | None = None, *,
                measure_latency: bool = False, progress: ProgressFn | None = None,
                costs: Mapping[str, float] | None = None) -> TrainResult:
    """Train ``fusion`` on ``data`` for ``rungs[-1]`` epochs, evaluating after each rung.

    ``rungs`` are epoch counts (fractional allowed, strictly increasing; None means
    ``[train.epochs]``); the learning-rate schedule spans the last one. After each rung
    ``report(rung_index, metrics)`` receives the validation metrics of both directions
    plus ``epochs``, ``step``, ``train_loss`` and ``wall_s``; returning True stops early.
    ``costs``: the costs of ``fusion`` at ``data.shapes`` when the caller already has them
    (the search estimates them before a trial to apply limits); otherwise estimated here.
    Gate statistics are recorded on the evaluation of the last rung (when reached) and
    saturation warnings are emitted as ``GateSaturationWarning``. Raises
    ``TrainingFailed`` on a non-finite loss, gradient or score.
    """
    from nas.cost import estimate_costs, measure_latency_ms
    from nas.evaluate import GateRecorder, gate_statistics

    rung_list = _check_rungs(rungs, train.epochs)
    t0 = time.perf_counter()
    trainer = Trainer(fusion, train, data, budget_epochs=rung_list[-1])
    for note in trainer.fit_notes:
        log.info("config %s: %s", fusion.fusion_id, note)
    costs = dict(costs) if costs else dict(estimate_costs(trainer.fusion, data.shapes))
    metrics: dict[str, float] = {}
    gate_stats: dict = {}
    stopped = False
    with training_runtime(train, trainer.device):
        for i, epochs in enumerate(rung_list):
            trainer.train_until(trainer.steps_for(epochs), progress)
            last = i == len(rung_list) - 1
            recorder = GateRecorder() if last else None
            metrics = trainer.evaluate_rung(t0, gate_recorder=recorder)
            if recorder is not None:
                gate_stats = gate_statistics(recorder)
                gate_warnings(gate_stats)
                if gate_stats.get("routing_skipped") is not None:
                    # the work routing lets inference skip, at the val set's skip rates
                    costs.update(estimate_costs(trainer.fusion, data.shapes,
                                                skip_fraction=gate_stats["routing_skipped"]))
            if report is not None and report(i, dict(metrics)) is True and not last:
                stopped = True
                break
        if measure_latency:
            costs["latency_ms"] = measure_latency_ms(trainer.model, trainer.fusion, data.shapes,
                                                     device=trainer.device)
    return TrainResult(metrics=metrics, costs=costs, gate_stats=gate_stats,
                       epochs=trainer.epoch, stopped=stopped,
                       wall_s=time.perf_counter() - t0, history=trainer.history)

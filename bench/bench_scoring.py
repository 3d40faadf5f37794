"""Batched, tiled honest scoring vs a naive per-pair loop (one pair per forward call).

Text-conditioned reference config (query fusion + gates reading the text), width 128,
2 layers, N_t = N_v = 256 by default. The naive loop (encode the clip, encode the text,
fuse and score, for each pair) is timed on a random subset of pairs and extrapolated to
all N_t x N_v pairs; its scores are checked against the batched matrix.

    python bench/bench_scoring.py [--n 256] [--naive-pairs 256] [--chunk 4096] [--padded]
    python bench/bench_scoring.py --train-steps 20     # training's text-conditioned path

``--train-steps N`` instead times N training steps of the same configuration (batch 32:
all 32 x 32 pairs fused per step, forward and backward) and prints their CPU user/sys
seconds and minor page faults; run it with ``NAS_MALLOC_TUNING=0`` beside it to see what
``nas.evaluate.tune_malloc`` (called by ``nas.train.Trainer``) changes.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nas.batch import ClipBatch, TextBatch  # noqa: E402
from nas.config import FusionConfig  # noqa: E402
from nas.evaluate import similarity  # noqa: E402
from nas.model import build_model  # noqa: E402
from nas.model.packed import MIN_ROWS as packed_rows  # noqa: E402
from nas.model.packed import packed_inference, padded_keys  # noqa: E402

from common import machine_info, print_machine  # noqa: E402


def _best_rate(fn: Callable[[], Any], flop: float, dev: torch.device, seconds: float) -> float:
    """GFLOP/s of ``fn`` (``flop`` FLOPs a call): the best call over ``seconds`` (at least 8
    calls, after one warm-up). On a shared machine a few short calls swing by 2x; the best
    over a longer window is the rate the machine can reach."""
    fn()
    best = float("inf")
    start, reps = time.perf_counter(), 0
    while reps < 8 or time.perf_counter() - start < seconds:
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
        reps += 1
    return flop / best / 1e9


def gemm_gflops(dev: torch.device, m: int, k: int, n: int, packed: bool,
                seconds: float = 1.0) -> float:
    """The rate of ``[m, k] @ [k, n]`` + bias with the kernel the pass uses for it (oneDNN on
    packed weights when ``packed``, see ``nas.model.packed``; else ``addmm``, as
    ``nn.Linear`` calls it): what a GEMM of the pass's own shape reaches, beside the square
    matmul's."""
    a, w, b = (torch.randn(m, k, device=dev), torch.randn(n, k, device=dev),
               torch.randn(n, device=dev))
    if packed:
        wp = torch.ops.mkldnn._reorder_linear_weight(w, None)
        return _best_rate(lambda: torch.ops.mkldnn._linear_pointwise(a, wp, b, "none", [], ""),
                          2 * m * k * n, dev, seconds)
    return _best_rate(lambda: torch.addmm(b, a, w.t()), 2 * m * k * n, dev, seconds)


def matmul_gflops(dev: torch.device, n: int = 1024, seconds: float = 1.5) -> float:
    """The machine's measured fp32 matmul throughput (GFLOP/s) with the current torch
    threads, from square ``n x n`` products (2 n^3 FLOPs each); the limit it gives is the
    strict one."""
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    out = torch.empty(n, n, device=dev)
    return _best_rate(lambda: torch.mm(a, b, out=out), 2 * n ** 3, dev, seconds)


def pass_gflop(cfg: FusionConfig, n_t: int, n_v: int, frames: int, audio: int) -> float:
    """FLOPs of one honest scoring pass, from the cost model (``nas.cost``: torch's FLOP
    counter on the real modules): every clip's text-independent work, every text's
    encoding and one fusion + score per (text, clip) pair."""
    from nas.cost import estimate_costs
    from nas.data import DataShapes

    shapes = DataShapes(video_dim=cfg.video_dim, audio_dim=cfg.audio_dim,
                        text_dim=cfg.text_dim, frames=frames, audio_tokens=audio, text_tokens=1)
    c = estimate_costs(cfg, shapes, gallery=n_v)
    return n_v * c["index_gflops"] + n_t * c["text_gflops"] + n_t * n_v * c["pair_gflops"]


def train_churn(cfg: FusionConfig, steps: int, batch: int, frames: int) -> None:
    """CPU seconds and page faults of ``steps`` training steps of ``cfg`` (Trainer's path)."""
    import os

    from nas.config import TrainConfig
    from nas.data import load_data
    from nas.train import Trainer

    data = load_data(f"synthetic:clips={batch * 4},val_clips=8,test_clips=0,frames={frames},"
                     f"audio_tokens=32,text_tokens=1,video_dim=512,audio_dim=768,text_dim=512")
    tr = Trainer(cfg, TrainConfig(batch_size=batch, num_threads=torch.get_num_threads(),
                                  device="cpu"), data, budget_epochs=steps)
    tr.train_until(2)  # warm-up
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    tr.train_until(2 + steps)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    print(f"training: {steps} steps of batch {batch} ({batch * batch} fused pairs per step) in "
          f"{wall:.2f} s ({wall / steps:.3f} s/step); CPU user {ru1.ru_utime - ru0.ru_utime:.2f} s,"
          f" sys {ru1.ru_stime - ru0.ru_stime:.2f} s, {ru1.ru_minflt - ru0.ru_minflt:,} minor "
          f"page faults; NAS_MALLOC_TUNING={os.environ.get('NAS_MALLOC_TUNING', '1')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=256, help="texts = clips (default 256)")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--chunk", type=int, default=0,
                    help="pairs fused per batched call (default 0: the library's own choice)")
    ap.add_argument("--naive-pairs", type=int, default=256,
                    help="pairs timed in the naive loop (extrapolated to n*n)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--padded", action="store_true",
                    help="pad clips as the synthetic data set does (random frame and audio "
                         "lengths); by default nothing is padded, as with real clips sampled "
                         "to a fixed frame count, and attention skips its key mask")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a FusionConfig field (repeatable), e.g. "
                         "--set text_audio=keys_values")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--train-steps", type=int, default=0,
                    help="time this many training steps instead (see above)")
    ap.add_argument("--batch", type=int, default=32, help="training batch (--train-steps)")
    args = ap.parse_args()
    print_machine(machine_info())
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    n, f = args.n, args.frames
    overrides = {}
    for item in args.set:
        key, sep, val = item.partition("=")
        if not sep:
            ap.error(f"--set {item!r}: expected FIELD=VALUE")
        try:
            overrides[key] = json.loads(val)  # numbers, true/false, lists
        except json.JSONDecodeError:
            overrides[key] = val  # a plain string such as keys_values
    cfg = FusionConfig(**{**dict(video_dim=512, audio_dim=768, text_dim=512, max_frames=f,
                                 width=args.width, layers=args.layers, heads=4,
                                 resampler_layers=1, resampler_queries=12), **overrides})
    assert cfg.text_conditioned
    if args.train_steps:
        train_churn(cfg, args.train_steps, args.batch, f)
        return
    model = build_model(cfg).to(dev).eval()
    vmask, amask = torch.ones(n, f, dtype=torch.bool), torch.ones(n, 32, dtype=torch.bool)
    if args.padded:
        g = torch.Generator().manual_seed(2)
        vmask &= torch.arange(f) < torch.randint(f // 2, f + 1, (n, 1), generator=g)
        amask &= torch.arange(32) < torch.randint(16, 33, (n, 1), generator=g)
    clips = ClipBatch(torch.randn(n, f, 512), vmask, torch.randn(n, 32, 768), amask,
                      torch.ones(n, dtype=torch.bool)).to(dev)
    texts = TextBatch(torch.randn(n, 1, 512), torch.ones(n, 1, dtype=torch.bool)).to(dev)

    peak_before = matmul_gflops(dev)
    flop = pass_gflop(cfg, n, n, f, 32)
    chunk = {"chunk_size": args.chunk} if args.chunk else {}
    similarity(model, texts.index(slice(0, 4)), clips.index(slice(0, 4)))  # warm-up
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    S = similarity(model, texts, clips, **chunk)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t_batched = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    # measured on both sides of the pass; the higher rate (the stricter limit) is used
    peak_after = matmul_gflops(dev)
    peak = max(peak_before, peak_after)

    g = torch.Generator().manual_seed(1)
    n_naive = min(args.naive_pairs, n * n)
    flat = torch.randperm(n * n, generator=g)[:n_naive]
    naive = torch.empty(n_naive)
    t0 = time.perf_counter()
    # the naive loop runs under the same rule as the pass (nas.model.packed: packed linear
    # layers from MIN_ROWS rows; its one-pair calls are smaller, so they keep the plain
    # kernels, which are faster there), so the ratio is the batching's alone
    with torch.no_grad(), packed_inference(model) as packed:
        keys = (f"self-attention {f} -> {padded_keys(f)} keys, cross-attention "
                f"{cfg.resampler_queries} -> {padded_keys(cfg.resampler_queries)} keys")
        for p, idx in enumerate(flat.tolist()):
            i, j = divmod(idx, n)
            cenc = model.encode_clips(clips.index(slice(j, j + 1)))
            tenc = model.encode_texts(texts.index(slice(i, i + 1)))
            zero = torch.zeros(1, dtype=torch.long, device=dev)
            naive[p] = model.score_pairs(cenc, tenc, zero, zero)[0]
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t_naive_part = time.perf_counter() - t0
    t_naive = t_naive_part * (n * n) / n_naive
    err = (naive - S.reshape(-1)[flat].cpu()).abs().max().item()
    rel = err / S.abs().max().item()
    print(f"config: width {cfg.width}, layers {cfg.layers}, heads {cfg.heads}, frames {f}, "
          f"overrides {overrides or 'none'}, "
          f"audio 32 tokens -> {cfg.resampler_queries} queries, text-conditioned "
          f"(id {cfg.fusion_id}); device {dev}, torch threads {torch.get_num_threads()}; "
          f"clips {'padded (--padded)' if args.padded else 'not padded'}")
    from nas.evaluate import pair_chunk

    used = args.chunk or pair_chunk(model, f)
    print(f"batched tiled similarity: {n} x {n} = {n * n} pairs in {t_batched:.2f} s "
          f"(chunk {used} pairs{'' if args.chunk else ', chosen by nas.evaluate.pair_chunk'}; "
          f"{n * n / t_batched:,.0f} pairs/s); CPU user {ru1.ru_utime - ru0.ru_utime:.2f} s, "
          f"sys {ru1.ru_stime - ru0.ru_stime:.2f} s, {ru1.ru_minflt - ru0.ru_minflt:,} minor "
          "page faults")
    print(f"FLOP limit: measured fp32 matmul {peak:.1f} GFLOP/s ({torch.get_num_threads()} "
          f"threads; {peak_before:.1f} before the pass, {peak_after:.1f} after, the higher "
          f"used); the pass does {flop:.1f} GFLOP (nas.cost) = {flop / t_batched:.1f} GFLOP/s"
          f", {flop / t_batched / peak:.0%} of the matmul rate (limit: {flop / peak:.2f} s; the "
          f"pass takes {t_batched / (flop / peak):.2f}x that)")
    hid = gemm_gflops(dev, used * f, cfg.width, 4 * cfg.width, packed)
    print(f"the pass's largest GEMM, the fused MLP's [{used * f} x {cfg.width}] @ "
          f"[{cfg.width} x {4 * cfg.width}] ({used} pairs x {f} frames), "
          f"{'oneDNN on packed weights' if packed else 'addmm'} as in the pass: {hid:.1f} "
          f"GFLOP/s alone, {hid / peak:.0%} of the square matmul's rate")
    print(f"linear layers on packed weights (nas.model.packed): {'yes' if packed else 'no'} "
          f"(NAS_PACKED_LINEAR=0 turns them off; from {packed_rows} rows, so not in the "
          f"naive loop's one-pair calls); attention keys in the pass: {keys}")
    print(f"naive per-pair loop: {n_naive} random pairs timed in {t_naive_part:.2f} s, "
          f"extrapolated to {n * n} pairs: {t_naive:.1f} s")
    print(f"same results: max |diff| = {err:.2e} (relative {rel:.1e}) on the {n_naive} pairs")
    print(f"speed ratio (naive / batched): {t_naive / t_batched:.1f}x")
    if rel > 1e-4:
        raise SystemExit("batched and naive scores differ")


if __name__ == "__main__":
    main()

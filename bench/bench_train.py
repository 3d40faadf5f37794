"""Training benchmarks: throughput against a naive implementation; one default proxy trial.

    python bench/bench_train.py            # both parts
    python bench/bench_train.py --part throughput|proxy [--steps N] [--threads N]

1. Throughput (clips/s) of the reference config (text-guided query fusion, 3-way gates
   reading [x̄; ā; t̄]) trained with ``nas.model`` against a naive implementation of the
   same model: ``nn.MultiheadAttention`` everywhere and the text-conditioned InfoNCE
   computed by a Python loop over the B x B (text, clip) pairs, one fused pass per pair
   (clip-side work — projections, resampler — is batched once per clip in both, so the
   ratio measures the pair fusion and the attention kernels, not a strawman).
2. Wall time and peak memory (maxrss, and tracemalloc for Python/numpy allocations) of one
   default proxy trial: what the default `nas search` trains (the gated_fusion space's
   data, base config and rungs); ``--data synthetic`` for the default synthetic set.
   Run ``--part proxy`` on its own for a clean maxrss.
"""

from __future__ import annotations

import argparse
import gc
import math
import resource
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from nas.config import FusionConfig, TrainConfig  # noqa: E402

# ----------------------------------------------------------------------------------
# the naive model (same architecture as the reference config; no variants)
# ----------------------------------------------------------------------------------

class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def gate_mlp(i: int, h: int) -> nn.Module:
    return nn.Sequential(nn.Linear(i, h, bias=False), QuickGELU(), nn.Linear(h, 1, bias=False))


def mlp(d: int, bias: bool = True) -> nn.Module:
    return nn.Sequential(nn.Linear(d, 4 * d, bias=bias), QuickGELU(),
                         nn.Linear(4 * d, d, bias=bias))


class NaiveResamplerLayer(nn.Module):
    def __init__(self, d: int, h: int) -> None:
        super().__init__()
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.sa = nn.MultiheadAttention(d, h, batch_first=True)
        self.ca = nn.MultiheadAttention(d, h, batch_first=True)
        self.mlp = mlp(d)

    def forward(self, q: torch.Tensor, a: torch.Tensor, amask: torch.Tensor) -> torch.Tensor:
        h = self.ln1(q)
        q = q + self.sa(h, h, h, need_weights=False)[0]
        q = q + self.ca(self.ln2(q), a, a, key_padding_mask=~amask, need_weights=False)[0]
        return q + self.mlp(self.ln3(q))


class NaiveBlock(nn.Module):
    """The reference block for ONE (text, clip) pair: x [1,F,D], a [1,Q,D], t̄ [1,D]."""

    def __init__(self, d: int, h: int) -> None:
        super().__init__()
        self.g_q, self.g_a, self.g_f = (gate_mlp(3 * d, d // 2) for _ in range(3))
        self.ln1, self.ln2, self.ln3, self.ln4 = (nn.LayerNorm(d) for _ in range(4))
        self.ca = nn.MultiheadAttention(d, h, batch_first=True)
        self.sa = nn.MultiheadAttention(d, h, batch_first=True)
        self.cff = mlp(d, bias=False)
        self.mlp = mlp(d)

    def forward(self, x, vmask, a, tbar):
        m = vmask.float().unsqueeze(-1)
        xbar = (x * m).sum(1) / m.sum(1).clamp_min(1)
        s = torch.cat([xbar, a.mean(1), tbar], -1)
        q = x + torch.tanh(self.g_q(s)).unsqueeze(1) * F.normalize(tbar, dim=-1).unsqueeze(1)
        attended = self.ca(self.ln3(q), a, a, need_weights=False)[0]
        x = x + torch.tanh(self.g_a(s)).unsqueeze(1) * attended
        x = x + torch.tanh(self.g_f(s)).unsqueeze(1) * self.cff(self.ln4(x))
        h = self.ln1(x)
        x = x + self.sa(h, h, h, key_padding_mask=~vmask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class NaiveModel(nn.Module):
    def __init__(self, cfg: FusionConfig) -> None:
        super().__init__()
        d, h = cfg.width, cfg.heads
        self.mix = cfg.residual_mix
        self.pv, self.pa, self.pt = (nn.Linear(cfg.video_dim, d), nn.Linear(cfg.audio_dim, d),
                                     nn.Linear(cfg.text_dim, d))
        self.pos = nn.Parameter(torch.zeros(cfg.max_frames, d))
        self.queries = nn.Parameter(torch.randn(cfg.resampler_queries, d) * 0.02)
        self.qpos = nn.Parameter(torch.zeros(cfg.resampler_queries, d))
        self.res = nn.ModuleList(NaiveResamplerLayer(d, h) for _ in range(cfg.resampler_layers))
        self.blocks = nn.ModuleList(NaiveBlock(d, h) for _ in range(cfg.layers))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(cfg.logit_scale_init)))

    def encode_clips(self, clips):
        x0 = self.pv(clips.video) + self.pos[: clips.video.shape[1]]
        a = self.pa(clips.audio)
        q = (self.queries + self.qpos).unsqueeze(0).expand(a.shape[0], -1, -1)
        for layer in self.res:
            q = layer(q, a, clips.audio_mask)
        return x0, q

    def score_pair(self, x0, vmask, a, t, tmask):
        m = tmask.float().unsqueeze(-1)
        tbar = (t * m).sum(1) / m.sum(1).clamp_min(1)
        x = x0
        for blk in self.blocks:
            x = blk(x, vmask, a, tbar)
        fused = self.mix * x + (1 - self.mix) * x0
        tn = F.normalize(tbar, dim=-1)
        fn = F.normalize(fused, dim=-1)
        s = self.logit_scale.exp().clamp(max=100)
        vm = vmask.float()
        pooled = F.normalize((fused * vm.unsqueeze(-1)).sum(1) / vm.sum(1, keepdim=True), dim=-1)
        glob = s * (tn * pooled).sum(-1)
        loc = (s * (fn * tn.unsqueeze(1)).sum(-1)).masked_fill(~vmask, -1e4).logsumexp(-1)
        return (glob + loc) / 2

    def training_loss(self, clips, texts):
        x0, a = self.encode_clips(clips)
        t = self.pt(texts.text)
        B = len(clips)
        rows = []
        for i in range(B):  # text i
            rows.append(torch.cat([self.score_pair(x0[j:j + 1], clips.video_mask[j:j + 1],
                                                   a[j:j + 1], t[i:i + 1],
                                                   texts.text_mask[i:i + 1])
                                   for j in range(B)]))
        S = torch.stack(rows)
        y = torch.arange(B)
        return (F.cross_entropy(S, y) + F.cross_entropy(S.t(), y)) / 2


# ----------------------------------------------------------------------------------
# benchmarks
# ----------------------------------------------------------------------------------

def _throughput(step_fn, batch: int, steps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        step_fn()
    t0 = time.perf_counter()
    for _ in range(steps):
        step_fn()
    return batch * steps / (time.perf_counter() - t0)


def bench_throughput(steps: int, batch: int) -> None:
    from nas.data import load_data
    from nas.model import build_model
    from nas.train import fit_to_data

    data = load_data("synthetic")
    # The reference config (model.md section 1) at the search's small CPU size.
    cfg, _ = fit_to_data(FusionConfig(width=128, layers=2, heads=4, resampler_queries=8),
                         data.shapes)
    rng = np.random.default_rng(0)
    clip_idx = rng.choice(data.train.n_clips, size=batch, replace=False)
    text_idx = data.train.sample_captions(clip_idx, rng)
    clips = data.train.clip_batch(clip_idx)
    texts = data.train.text_batch(text_idx)
    text_clip = torch.arange(batch)

    torch.manual_seed(0)
    ref = build_model(cfg)
    opt = torch.optim.AdamW(ref.parameters(), lr=1e-4)

    def ref_step() -> None:
        out = ref.training_loss(clips, texts, text_clip)
        opt.zero_grad()
        out.loss.backward()
        opt.step()

    naive = NaiveModel(cfg)
    opt2 = torch.optim.AdamW(naive.parameters(), lr=1e-4)

    def naive_step() -> None:
        loss = naive.training_loss(clips, texts)
        opt2.zero_grad()
        loss.backward()
        opt2.step()

    n_ref = sum(p.numel() for p in ref.parameters())
    n_naive = sum(p.numel() for p in naive.parameters())
    print(f"config: width {cfg.width}, layers {cfg.layers}, heads {cfg.heads}, resampler "
          f"{cfg.resampler_layers}x{cfg.resampler_queries}, batch {batch} ({batch * batch} fused "
          f"pairs/step), data {data.name} {data.shapes}, threads {torch.get_num_threads()}")
    print(f"params: nas.model {n_ref:,}   naive {n_naive:,}")
    r = _throughput(ref_step, batch, steps)
    n = _throughput(naive_step, batch, max(1, steps // 4))
    print(f"throughput  nas.model {r:8.1f} clips/s   naive (nn.MultiheadAttention, per-pair "
          f"loop) {n:8.2f} clips/s   ratio {r / n:.1f}x")


def bench_proxy(data_spec: str | None = None) -> None:
    """One trial as the default `nas search` runs it: the gated_fusion space's data, base
    config (the reference gating at the base sizes) and rungs (min 1, max 4, eta 2)."""
    from nas.data import load_data
    from nas.search.space import load_space
    from nas.train import train_proxy

    space = load_space("gated_fusion")
    rungs = space.proxy.rungs()
    spec = data_spec or space.data or "synthetic"
    fusion = FusionConfig.from_dict(space.base_fusion)
    train = TrainConfig.from_dict({**space.base_train, "epochs": rungs[-1]})
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    data = load_data(spec)
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    res = train_proxy(fusion, train, data, rungs=rungs,
                      report=lambda i, m: print(f"  rung {i}: {m['epochs']:.1f} epochs, recall "
                                                f"{m['recall']:.1f}, {m['wall_s']:.1f} s"))
    wall = time.perf_counter() - t0
    _, peak_py = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    t1 = time.perf_counter()
    lat = estimate_costs_latency(fusion, data)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"proxy trial: base config {space.base_fusion} on {spec} ({data.train.n_clips} train / "
          f"{data.val.n_clips} val clips), rungs {rungs} epochs, batch {train.batch_size}, "
          f"threads {train.num_threads or torch.get_num_threads()}")
    print(f"  wall {wall:.2f} s (training + 3 val evaluations + costs)   peak RSS "
          f"{rss1 / 1024:.0f} MiB (after imports: {rss0 / 1024:.0f} MiB)   tracemalloc peak "
          f"(Python/numpy allocations only) {peak_py / 2**20:.1f} MiB")
    print(f"  val recall {res.metrics['recall']:.1f} (t2v R@1 {res.metrics['t2v_r1']:.1f})   "
          f"query_gflops {res.costs['query_gflops']:.4f}   index_gflops "
          f"{res.costs['index_gflops']:.5f}   latency at G=1000 {lat:.1f} ms "
          f"(measured separately, {time.perf_counter() - t1:.1f} s)")


def estimate_costs_latency(fusion: FusionConfig, data) -> float:
    from nas.cost import estimate_costs

    return estimate_costs(fusion, data.shapes, measure_latency=True)["latency_ms"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["throughput", "proxy", "all"], default="all")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--data", default=None,
                    help="data spec of the proxy trial (default: the space's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.part in ("throughput", "all"):
        bench_throughput(args.steps, args.batch)
    if args.part in ("proxy", "all"):
        bench_proxy(args.data)


if __name__ == "__main__":
    main()

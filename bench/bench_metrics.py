"""Retrieval metrics on a 1000x1000 score matrix: nas.metrics vs torchmetrics' retrieval metrics.

Both compute text-to-video R@1/5/10 (torchmetrics: RetrievalRecall with ``indexes``, plus
RetrievalMRR as its closest rank statistic, it has no median rank); ours computes both
directions, MdR and MnR as well. Scores are positive and continuous (no ties), because
torchmetrics ranks by sorting and treats ties arbitrarily.

    python bench/bench_metrics.py [--n 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time

import torch
from torchmetrics.retrieval import RetrievalMRR, RetrievalRecall

from nas.metrics import retrieval_metrics


def _best_time(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    n = args.n
    S = torch.rand(n, n) + 0.1
    S += 0.5 * torch.eye(n)
    tc = torch.arange(n)
    target = torch.eye(n, dtype=torch.bool)
    indexes = torch.arange(n).repeat_interleave(n)

    def ours():
        return retrieval_metrics(S, tc)

    def theirs():
        out = {}
        for k in (1, 5, 10):
            out[f"t2v_r{k}"] = 100 * RetrievalRecall(top_k=k)(S.reshape(-1), target.reshape(-1),
                                                            indexes=indexes).item()
        out["mrr"] = RetrievalMRR()(S.reshape(-1), target.reshape(-1), indexes=indexes).item()
        return out

    ours()  # warm-up
    t_ours, m_ours = _best_time(ours, args.repeat)
    t_tm, m_tm = _best_time(theirs, max(1, args.repeat // 2))
    for k in (1, 5, 10):
        assert abs(m_ours[f"t2v_r{k}"] - m_tm[f"t2v_r{k}"]) < 1e-3, (k, m_ours, m_tm)
    print(f"matrix {n}x{n}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"nas.metrics.retrieval_metrics (t2v+v2t R@1/5/10, MdR, MnR): {t_ours * 1e3:9.2f} ms")
    print(f"torchmetrics RetrievalRecall@1/5/10 + RetrievalMRR (t2v): {t_tm * 1e3:9.2f} ms")
    print(f"ratio torchmetrics / ours: {t_tm / t_ours:.0f}x  "
          f"(R@1/5/10 agree: {m_ours['t2v_r1']:.1f}/{m_ours['t2v_r5']:.1f}/"
          f"{m_ours['t2v_r10']:.1f})")


if __name__ == "__main__":
    main()

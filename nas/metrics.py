"""Retrieval metrics (model.md section 5): R@1/5/10, median and mean rank, mean reciprocal
rank, both directions.

Conventions, fixed once here:

- ``S[i, j]`` is the score of text ``i`` against clip ``j``; ``text_clip[i]`` is text ``i``'s clip.
- Ranks start at 1. **Ties never favour the ground truth**: the rank of a target is the
  number of candidates scored ``>=`` it, itself included (``1 +`` the others that tie or beat it).
- Several captions per clip: in text-to-video every text has one target, its clip. In
  video-to-text a clip's rank is the best rank among its captions, i.e. the position of its
  first caption in the ranked list of texts, where the clip's other captions are not counted
  as competitors. Clips without any caption have no video-to-text rank and are left out of
  the video-to-text metrics.
- **NaN never helps the ground truth**: a NaN target scores as ``-inf`` and a NaN
  competitor as ``+inf`` (so a model that outputs NaN gets the worst ranks instead of an
  error in the middle of a report; training detects NaN losses itself).
- R@k is in percent (0-100); ``recall = t2v_r1 + t2v_r5 + t2v_r10`` (0-300), likewise
  ``v2t_recall``. MdR is the median as ``numpy.median`` computes it (mean of the two middle
  values for an even count).

Everything is vectorised: one comparison of the whole matrix against a per-row (or
per-column) threshold; no Python loop over rows.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["retrieval_metrics", "t2v_ranks", "v2t_ranks", "rank_summary",
           "RetrievalAccumulator"]  # noqa: F822 (resolved lazily by __getattr__ below)

_KS = (1, 5, 10)


def _check_inputs(S: Tensor, text_clip: Tensor) -> tuple[Tensor, Tensor]:
    if S.dim() != 2:
        raise ValueError(f"retrieval_metrics: S must be 2-D [N_t, N_v], got shape {tuple(S.shape)}")
    text_clip = torch.as_tensor(text_clip, device=S.device).long().reshape(-1)
    if text_clip.numel() != S.shape[0]:
        raise ValueError(f"retrieval_metrics: text_clip has {text_clip.numel()} entries, "
                         f"S has {S.shape[0]} rows")
    if text_clip.numel() and (int(text_clip.min()) < 0 or int(text_clip.max()) >= S.shape[1]):
        raise ValueError(f"retrieval_metrics: text_clip values must be in [0, {S.shape[1]}), got "
                         f"[{int(text_clip.min())}, {int(text_clip.max())}]")
    if not S.is_floating_point():
        S = S.float()
    return S, text_clip


def _beats(x: Tensor, threshold: Tensor) -> Tensor:
    """True where a candidate ties or beats ``threshold``; NaN candidates always do."""
    return (x >= threshold) | torch.isnan(x)


def t2v_ranks(S: Tensor, text_clip: Tensor) -> Tensor:
    """Rank (1-based, pessimistic on ties) of each text's clip among all clips: LongTensor[N_t]."""
    S, text_clip = _check_inputs(S, text_clip)
    target = S.gather(1, text_clip[:, None])  # [N_t, 1]
    target = torch.nan_to_num(target, nan=float("-inf"), posinf=float("inf"), neginf=float("-inf"))
    # The target itself satisfies ``>=`` (or is NaN), so the count already includes the "+1".
    return _beats(S, target).sum(dim=1)


def v2t_ranks(S: Tensor, text_clip: Tensor) -> tuple[Tensor, Tensor]:
    """Best rank of each clip's captions among all texts, and which clips have captions.

    Returns ``(ranks LongTensor[N_v], has_text BoolTensor[N_v])``; ranks of clips without
    captions are meaningless (set to ``N_t + 1``) and must be filtered with ``has_text``.
    """
    S, text_clip = _check_inputs(S, text_clip)
    n_t, n_v = S.shape
    pos = S.gather(1, text_clip[:, None]).squeeze(1)  # [N_t] each text's score with its clip
    pos_clean = torch.nan_to_num(pos, nan=float("-inf"), posinf=float("inf"), neginf=float("-inf"))
    # Best positive score per clip: the clip's first caption in the ranked list.
    best = torch.full((n_v,), float("-inf"), dtype=S.dtype, device=S.device)
    best = best.scatter_reduce(0, text_clip, pos_clean, reduce="amax", include_self=True)
    # All texts that tie or beat the best caption, minus the clip's own captions among them
    # (those are not competitors; the best caption itself is always among them).
    n_all = _beats(S, best[None, :]).sum(dim=0)
    own = _beats(pos, best[text_clip]).long()
    n_own = torch.zeros(n_v, dtype=torch.long, device=S.device).scatter_add_(0, text_clip, own)
    has_text = torch.bincount(text_clip, minlength=n_v) > 0
    ranks = torch.where(has_text, 1 + n_all - n_own, torch.full_like(n_all, n_t + 1))
    return ranks, has_text


def rank_summary(ranks: Tensor, prefix: str) -> dict[str, float]:
    """R@1/5/10 (percent), MdR, MnR and MRR of 1-based ranks, keys ``{prefix}_r1`` ..."""
    r = ranks.double().reshape(-1)
    if r.numel() == 0:
        nan = float("nan")
        return {f"{prefix}_r{k}": nan for k in _KS} | {f"{prefix}_mdr": nan, f"{prefix}_mnr": nan,
                                                       f"{prefix}_mrr": nan}
    out = {f"{prefix}_r{k}": float((r <= k).double().mean() * 100.0) for k in _KS}
    out[f"{prefix}_mdr"] = float(torch.quantile(r, 0.5))  # linear interpolation == numpy.median
    out[f"{prefix}_mnr"] = float(r.mean())
    # Mean reciprocal rank (0-1): moves with every rank, where R@k moves only when a
    # target crosses k (a finer signal on a small gallery, e.g. at a proxy's first rung).
    out[f"{prefix}_mrr"] = float((1.0 / r).mean())
    return out


@torch.no_grad()
def retrieval_metrics(S: Tensor, text_clip: Tensor) -> dict[str, float]:
    """Text-to-video and video-to-text metrics of a score matrix ``S[N_t, N_v]``.

    Keys: ``t2v_r1, t2v_r5, t2v_r10, t2v_mdr, t2v_mnr, t2v_mrr``, the same with ``v2t_``, plus
    ``recall`` (t2v R@1+R@5+R@10, percent) and ``v2t_recall``. See the module docstring for
    tie, NaN and multi-caption conventions.
    """
    S, text_clip = _check_inputs(S, text_clip)
    out = rank_summary(t2v_ranks(S, text_clip), "t2v")
    ranks, has_text = v2t_ranks(S, text_clip)
    out |= rank_summary(ranks[has_text], "v2t")
    out["recall"] = out["t2v_r1"] + out["t2v_r5"] + out["t2v_r10"]
    out["v2t_recall"] = out["v2t_r1"] + out["v2t_r5"] + out["v2t_r10"]
    return out


def __getattr__(name: str):
    # The torchmetrics-based accumulator lives in its own module: importing torchmetrics
    # costs seconds, and every trial's first evaluation would pay it for nothing.
    if name == "RetrievalAccumulator":
        from nas._accumulator import RetrievalAccumulator

        return RetrievalAccumulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""``RetrievalAccumulator``: a torchmetrics Metric over text-to-video ranks (see nas.metrics)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from nas.metrics import rank_summary, t2v_ranks


class RetrievalAccumulator(Metric):
    """Text-to-video metrics when score rows arrive in chunks (and across processes).

    ``update(S_rows, text_clip_rows)`` takes the scores of some texts against the *whole*
    gallery; the per-text ranks are kept (one integer per text) and gathered across
    processes by torchmetrics (``dist_reduce_fx="cat"``). ``compute()`` returns the ``t2v_*``
    keys and ``recall``. Video-to-text needs whole columns, so it is not accumulated here:
    use :func:`retrieval_metrics` on the full matrix for it.
    """

    full_state_update = False
    higher_is_better = None
    is_differentiable = False
    ranks: list[Tensor]  # torchmetrics state; one concatenated Tensor while synced for compute


    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("ranks", default=[], dist_reduce_fx="cat")

    def update(self, S_rows: Tensor, text_clip_rows: Tensor) -> None:  # type: ignore[override]
        """Add the ranks of texts whose score rows against the full gallery are ``S_rows``."""
        self.ranks.append(t2v_ranks(S_rows.detach(), text_clip_rows))

    def compute(self) -> dict[str, float]:  # type: ignore[override]
        """t2v R@1/5/10, MdR, MnR and ``recall`` over every text seen so far."""
        ranks: list[Tensor] | Tensor = self.ranks
        if isinstance(ranks, list):
            ranks = torch.cat(ranks) if ranks else torch.zeros(0, dtype=torch.long)
        out = rank_summary(ranks, "t2v")
        out["recall"] = out["t2v_r1"] + out["t2v_r5"] + out["t2v_r10"]
        return out

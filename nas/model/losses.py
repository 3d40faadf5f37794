"""Training losses: symmetric InfoNCE with several captions per clip, the reference's
no-grad margin, and the contrastive gate loss (variant 8)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["symmetric_infonce", "NoMargin", "Margin", "NoGateContrastive", "GateContrastive"]


def symmetric_infonce(S: Tensor, text_clip: Tensor) -> Tensor:
    """Mean of the text->video and video->text cross-entropies over ``S [B_t, B_v]``.

    Text i has exactly one positive, its clip ``text_clip[i]``. Clip j may have several
    captions in the batch (multi-positive): each positive (i, j) is scored against clip j's
    *negative* texts only, ``-log(e^{S_ij} / (e^{S_ij} + sum_{i' not of j} e^{S_i'j}))``, so
    sibling captions are never pushed apart; the clip's loss is the mean over its positives.
    Clips without a caption in the batch have no video->text term.
    """
    row = F.cross_entropy(S, text_clip)
    pos = F.one_hot(text_clip, S.shape[1]).bool()  # [B_t, B_v]
    neg_lse = S.masked_fill(pos, float("-inf")).logsumexp(0)  # [B_v]
    per_pos = torch.logaddexp(S, neg_lse.unsqueeze(0)) - S  # -log p for each positive
    n_pos = pos.sum(0)
    has = n_pos > 0
    col = (per_pos.masked_fill(~pos, 0.0).sum(0)[has] / n_pos[has]).mean()
    return 0.5 * (row + col)


class NoMargin(nn.Module):
    """No margin term."""

    def forward(self, t: Tensor, v: Tensor, text_clip: Tensor, scale: Tensor) -> Tensor | None:
        return None


class Margin(nn.Module):
    """The reference's no-grad margin on negative logits:
    M_ij = s * min(beta * (1 - (cos_tt + cos_vv) / 2), delta), 0 on positives.

    With separate text and clip batches: cos_vv[i, j] = cos(v of text i's clip, v_j) and
    cos_tt[i, j] = cos(t_i, mean of clip j's batch captions) (0 when clip j has none). v is
    the clip's text-independent embedding (normalised mean of its projected frames).
    """

    def __init__(self, beta: float, delta: float) -> None:
        super().__init__()
        self.beta, self.delta = beta, delta

    @torch.no_grad()
    def forward(self, t: Tensor, v: Tensor, text_clip: Tensor, scale: Tensor) -> Tensor:
        pos = F.one_hot(text_clip, v.shape[0]).to(t.dtype)  # [B_t, B_v]
        t_of_clip = F.normalize(pos.t() @ t, dim=-1)  # [B_v, D], zeros if no caption
        cos_tt = t @ t_of_clip.t()
        cos_vv = v[text_clip] @ v.t()
        m = scale * torch.clamp(self.beta * (1 - (cos_tt + cos_vv) / 2), max=self.delta)
        return m * (1 - pos)


class NoGateContrastive(nn.Module):
    """Variant 8 off."""

    active = False

    def forward(self, gates: Tensor | None, labels: Tensor) -> Tensor | None:
        return None


class GateContrastive(nn.Module):
    """Variant 8: supervised-contrastive loss on the normalised gate vectors.

    ``gates [B, G]`` holds one row per anchor (all gates of all layers, one mean value each);
    positives share a label (class label, or the clip for multi-caption batches); anchors
    without a positive are skipped; the loss is ``weight * mean_anchor mean_pos -log p``.
    """

    active = True

    def __init__(self, weight: float, tau: float) -> None:
        super().__init__()
        self.weight, self.tau = weight, tau

    def forward(self, gates: Tensor | None, labels: Tensor) -> Tensor | None:
        assert gates is not None
        z = F.normalize(gates, dim=-1)
        n = z.shape[0]
        eye = torch.eye(n, dtype=torch.bool, device=z.device)
        sim = (z @ z.t() / self.tau).masked_fill(eye, float("-inf"))
        pos = (labels[:, None] == labels[None, :]) & ~eye
        has = pos.any(1)
        if not bool(has.any()):
            return gates.sum() * 0.0  # no anchor has a positive in this batch
        logp = sim.log_softmax(1).masked_fill(~pos, 0.0)
        per_anchor = -logp.sum(1)[has] / pos.sum(1)[has]
        return self.weight * per_anchor.mean()

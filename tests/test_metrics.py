"""Retrieval metrics against a plain loop/argsort reference and against torchmetrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics import MetricCollection
from torchmetrics.functional.retrieval import retrieval_hit_rate, retrieval_recall
from torchmetrics.retrieval import RetrievalHitRate, RetrievalRecall

from nas.metrics import RetrievalAccumulator, retrieval_metrics, t2v_ranks, v2t_ranks


# ---------------------------------------------------------------- plain reference ------------
def _ref_ranks(S: np.ndarray, text_clip: np.ndarray) -> tuple[list[int], list[int]]:
    """Ranks by a stable argsort where every tie is broken against the ground truth."""
    n_t, n_v = S.shape
    t2v = []
    for i in range(n_t):
        target = text_clip[i]
        # Sort by (-score, is_target): among equal scores the target goes last.
        order = sorted(range(n_v), key=lambda j: (-S[i, j], j == target))
        t2v.append(order.index(target) + 1)
    v2t = []
    for j in range(n_v):
        mine = {i for i in range(n_t) if text_clip[i] == j}
        if not mine:
            continue
        order = sorted(range(n_t), key=lambda i: (-S[i, j], i in mine))
        # Position of the first own caption among the others' captions.
        others_before = 0
        for i in order:
            if i in mine:
                break
            others_before += 1
        v2t.append(others_before + 1)
    return t2v, v2t


def _ref_metrics(S: np.ndarray, text_clip: np.ndarray) -> dict[str, float]:
    t2v, v2t = _ref_ranks(S, text_clip)
    out = {}
    for name, r in (("t2v", np.array(t2v)), ("v2t", np.array(v2t))):
        for k in (1, 5, 10):
            out[f"{name}_r{k}"] = 100.0 * float(np.mean(r <= k))
        out[f"{name}_mdr"] = float(np.median(r))
        out[f"{name}_mnr"] = float(np.mean(r))
        out[f"{name}_mrr"] = float(np.mean(1.0 / r))
    out["recall"] = out["t2v_r1"] + out["t2v_r5"] + out["t2v_r10"]
    out["v2t_recall"] = out["v2t_r1"] + out["v2t_r5"] + out["v2t_r10"]
    return out


def _multi_caption(n_v: int, rng: np.random.Generator) -> np.ndarray:
    # 1-4 captions per clip, shuffled so captions of a clip are not contiguous.
    tc = np.concatenate([np.full(rng.integers(1, 5), j) for j in range(n_v)])
    return rng.permutation(tc)


def _assert_close(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-9), k


# ---------------------------------------------------------------- tests ----------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_one_caption_per_clip_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 37
    S = rng.normal(size=(n, n)) + 2.0 * np.eye(n)  # strong diagonal so ranks spread 1..n
    tc = np.arange(n)
    _assert_close(retrieval_metrics(torch.tensor(S), torch.tensor(tc)), _ref_metrics(S, tc))


@pytest.mark.parametrize("seed", [0, 1])
def test_several_captions_per_clip_match_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_v = 30
    tc = _multi_caption(n_v, rng)
    S = rng.normal(size=(len(tc), n_v)).astype(np.float32)
    S[np.arange(len(tc)), tc] += 1.5
    _assert_close(retrieval_metrics(torch.tensor(S), torch.tensor(tc)), _ref_metrics(S, tc))


def test_ties_never_favour_ground_truth() -> None:
    rng = np.random.default_rng(3)
    n_v = 25
    tc = _multi_caption(n_v, rng)
    # Scores on a coarse grid: many exact ties, including target vs distractors and
    # between captions of the same clip.
    S = rng.integers(0, 4, size=(len(tc), n_v)).astype(np.float32)
    got = retrieval_metrics(torch.tensor(S), torch.tensor(tc))
    _assert_close(got, _ref_metrics(S, tc))
    # A constant matrix: everything ties, so every rank is the worst one.
    C = torch.ones(len(tc), n_v)
    assert (t2v_ranks(C, torch.tensor(tc)) == n_v).all()
    v2t, has = v2t_ranks(C, torch.tensor(tc))
    n_own = np.bincount(tc, minlength=n_v)
    assert has.all()
    assert v2t.tolist() == (len(tc) - n_own + 1).tolist()


def test_identity_perfect_and_reversed() -> None:
    n = 12
    m = retrieval_metrics(torch.eye(n), torch.arange(n))
    assert m["t2v_r1"] == 100.0 and m["v2t_r1"] == 100.0 and m["recall"] == 300.0
    assert m["t2v_mdr"] == 1.0 and m["t2v_mnr"] == 1.0 and m["t2v_mrr"] == 1.0
    m = retrieval_metrics(-torch.eye(n), torch.arange(n))
    assert m["t2v_r10"] == 0.0 and m["t2v_mdr"] == n and m["v2t_mnr"] == n
    assert m["t2v_mrr"] == pytest.approx(1.0 / n)


def test_nan_never_helps_the_target() -> None:
    n = 6
    S = torch.eye(n)
    S[0, 0] = float("nan")  # NaN target: worst rank
    S[1, 3] = float("nan")  # NaN competitor: beats the target
    r = t2v_ranks(S, torch.arange(n))
    assert r[0] == n and r[1] == 2 and (r[2:] == 1).all()
    v2t, _ = v2t_ranks(S, torch.arange(n))
    assert v2t[0] == n  # clip 0's only caption is NaN
    assert v2t[3] == 2  # text 1 (NaN) competes with clip 3's caption


def test_clip_without_caption_is_left_out_of_v2t() -> None:
    S = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, 0.9]])
    m = retrieval_metrics(S, torch.tensor([0, 1]))
    assert m["v2t_r1"] == 100.0  # clip 2 (no caption) is not counted
    assert m["t2v_r1"] == 100.0


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="text_clip"):
        retrieval_metrics(torch.zeros(3, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="values"):
        retrieval_metrics(torch.zeros(2, 3), torch.tensor([0, 3]))


def test_agrees_with_torchmetrics_on_positive_scores() -> None:
    rng = np.random.default_rng(4)
    n_v = 40
    tc = torch.tensor(_multi_caption(n_v, rng))
    S = torch.rand(len(tc), n_v, dtype=torch.float64) + 0.1  # positive, continuous: no ties
    S[torch.arange(len(tc)), tc] += 0.3
    ours = retrieval_metrics(S, tc)
    target = torch.zeros_like(S, dtype=torch.bool)
    target[torch.arange(len(tc)), tc] = True
    for k in (1, 5, 10):
        # Text-to-video: one relevant clip per text, recall@k == hit rate@k.
        tm = torch.stack([retrieval_recall(S[i], target[i], top_k=k) for i in range(len(tc))])
        assert ours[f"t2v_r{k}"] == pytest.approx(100 * tm.double().mean().item(), abs=1e-4)
        # Video-to-text: a clip is found when any of its captions is in the top k.
        cols = MetricCollection({"hit": RetrievalHitRate(top_k=k)})
        idx = torch.arange(n_v).repeat(len(tc), 1)
        res = cols(S.reshape(-1), target.reshape(-1), indexes=idx.reshape(-1))
        assert ours[f"v2t_r{k}"] == pytest.approx(100 * res["hit"].item(), abs=1e-4)
        # Functional hit rate on a single column too.
        assert bool(retrieval_hit_rate(S[:, 0], target[:, 0], top_k=k)) == bool(
            v2t_ranks(S, tc)[0][0] <= k)
    # Module form of text-to-video recall.
    rr = RetrievalRecall(top_k=5)(S.reshape(-1), target.reshape(-1),
                                 indexes=torch.arange(len(tc)).repeat_interleave(n_v))
    assert ours["t2v_r5"] == pytest.approx(100 * rr.item(), abs=1e-4)


def test_accumulator_over_chunks_equals_full_matrix() -> None:
    rng = np.random.default_rng(5)
    n_v = 50
    tc = torch.tensor(_multi_caption(n_v, rng))
    S = torch.randn(len(tc), n_v)
    S[torch.arange(len(tc)), tc] += 1.0
    acc = RetrievalAccumulator()
    for rows in torch.arange(len(tc)).split(17):
        acc.update(S[rows], tc[rows])
    full = retrieval_metrics(S, tc)
    got = acc.compute()
    for k in ("t2v_r1", "t2v_r5", "t2v_r10", "t2v_mdr", "t2v_mnr", "recall"):
        assert got[k] == pytest.approx(full[k]), k
    acc.reset()
    acc.update(torch.eye(3), torch.arange(3))
    assert acc.compute()["t2v_r1"] == 100.0

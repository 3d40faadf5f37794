"""Honest scoring (model.md §2): S[i, j] is a function of (text i, clip j) only.

Each property is a check function that raises AssertionError when it does not hold. Every
check runs on the real scorer (it must pass) and on a deliberately leaky scorer kept here,
which fuses each clip with "the text in its batch slot" as the reference code does (it must
fail): the tests have teeth.
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from nas.batch import ClipBatch, TextBatch
from nas.evaluate import similarity
from nas.model import FusionContext, build_model

from model_helpers import make_clips, make_texts, randomize, text_conditioned_configs, tiny_config

Scorer = Callable[..., torch.Tensor]
CONFIGS = text_conditioned_configs()
TOL = dict(rtol=1e-9, atol=1e-8)


def honest(model, texts: TextBatch, clips: ClipBatch, chunk_size: int = 4096) -> torch.Tensor:
    return similarity(model, texts, clips, chunk_size=chunk_size)


@torch.no_grad()
def leaky(model, texts: TextBatch, clips: ClipBatch, chunk_size: int = 4096) -> torch.Tensor:
    """The reference's evaluation: texts and clips in lockstep batches of ``chunk_size``;
    clip j of a batch is fused with the text at slot j (mod the text batch size), and every
    text of the batch is scored against that fused clip."""
    model.eval()
    cenc, tenc = model.encode_clips(clips), model.encode_texts(texts)
    n_t, n_v = len(texts), len(clips)
    S = torch.empty(n_t, n_v, dtype=clips.video.dtype)
    for a in range(0, n_t, chunk_size):
        tb = torch.arange(a, min(a + chunk_size, n_t))
        for b in range(0, n_v, chunk_size):
            cb = torch.arange(b, min(b + chunk_size, n_v))
            slot = tb[torch.arange(len(cb)) % len(tb)]
            fused = model._fuse(cenc, tenc, cb, slot, FusionContext())
            S[a:a + len(tb), b:b + len(cb)] = model.dense_similarity(
                tenc.t[tb], fused, cenc.vmask[cb])
    return S


# ----------------------------------------------------------------------------------
# the checks
# ----------------------------------------------------------------------------------

def check_text_permutation(scorer: Scorer, model, texts, clips) -> None:
    perm = torch.randperm(len(texts), generator=torch.Generator().manual_seed(3))
    S = scorer(model, texts, clips)
    torch.testing.assert_close(scorer(model, texts.index(perm), clips), S[perm], **TOL)


def check_clip_permutation(scorer: Scorer, model, texts, clips) -> None:
    perm = torch.randperm(len(clips), generator=torch.Generator().manual_seed(4))
    S = scorer(model, texts, clips)
    torch.testing.assert_close(scorer(model, texts, clips.index(perm)), S[:, perm], **TOL)


def check_gallery_size(scorer: Scorer, model, texts, clips, big: ClipBatch) -> None:
    """The pair (text 1, clip 0) alone equals the same pair inside a gallery of 500."""
    pos = 8  # where clip 0 sits in the big gallery (slot 8 mod 3 = 2: not text 1's slot)
    idx = torch.arange(len(big))
    idx[pos], idx[0] = 0, pos
    gallery = _cat(clips.index(slice(0, 1)), big.index(idx[1:]), pos)
    alone = scorer(model, texts.index(slice(1, 2)), clips.index(slice(0, 1)))[0, 0]
    inside = scorer(model, texts.index(slice(0, 3)), gallery)[1, pos]
    torch.testing.assert_close(inside, alone, **TOL)


def check_chunk_size(scorer: Scorer, model, texts, clips) -> None:
    torch.testing.assert_close(scorer(model, texts, clips, chunk_size=3),
                               scorer(model, texts, clips, chunk_size=4096), **TOL)


def _cat(one: ClipBatch, rest: ClipBatch, pos: int) -> ClipBatch:
    """``rest`` with ``one`` inserted at ``pos``."""
    out = {}
    for name in ("video", "video_mask", "audio", "audio_mask", "has_audio", "labels"):
        a, b = getattr(one, name), getattr(rest, name)
        out[name] = torch.cat([b[:pos], a, b[pos:]])
    return ClipBatch(**out)


# ----------------------------------------------------------------------------------
# tests
# ----------------------------------------------------------------------------------

def _setup(name: str):
    cfg = CONFIGS[name].replace(residual_mix=0.5)  # a larger fused share: clearer effects
    torch.manual_seed(0)
    model = build_model(cfg).double()
    randomize(model)
    model.eval()
    clips = make_clips(10, cfg, seed=5, dtype=torch.float64)
    texts = make_texts(7, cfg, seed=6, dtype=torch.float64)
    return model, texts, clips


@pytest.mark.parametrize("name", list(CONFIGS))
def test_honest_scorer_passes(name: str) -> None:
    model, texts, clips = _setup(name)
    big = make_clips(500, model.cfg, seed=7, dtype=torch.float64)
    check_text_permutation(honest, model, texts, clips)
    check_clip_permutation(honest, model, texts, clips)
    check_gallery_size(honest, model, texts, clips, big)
    check_chunk_size(honest, model, texts, clips)


LEAKY_CONFIGS = ["base", "4_per_head_query", "6_dual_path", "13_temporal", "all_on"]


@pytest.mark.parametrize("name", LEAKY_CONFIGS)
def test_leaky_scorer_fails_every_check(name: str) -> None:
    model, texts, clips = _setup(name)
    big = make_clips(500, model.cfg, seed=7, dtype=torch.float64)
    # the leaky scorer is right on a single pair: the checks are not trivially failing
    torch.testing.assert_close(leaky(model, texts.index(slice(2, 3)), clips.index(slice(4, 5))),
                               honest(model, texts.index(slice(2, 3)), clips.index(slice(4, 5))),
                               **TOL)
    with pytest.raises(AssertionError):
        check_text_permutation(leaky, model, texts, clips)
    with pytest.raises(AssertionError):
        check_clip_permutation(leaky, model, texts, clips)
    with pytest.raises(AssertionError):
        check_gallery_size(leaky, model, texts, clips, big)
    with pytest.raises(AssertionError):
        check_chunk_size(leaky, model, texts, clips)


def test_text_independent_work_once_per_clip(monkeypatch) -> None:
    cfg = tiny_config()
    model = build_model(cfg)
    calls = {"encode_clips": 0, "score_pairs": 0}
    for meth in calls:
        orig = getattr(model, meth)

        def wrapped(*a, _orig=orig, _m=meth, **k):
            calls[_m] += 1
            return _orig(*a, **k)
        monkeypatch.setattr(model, meth, wrapped)
    similarity(model, make_texts(7, cfg), make_clips(10, cfg), chunk_size=16)
    # 70 pairs in grids of 1 text x 10 clips (at most 16 pairs each); score_grid fuses
    # them itself, without going through score_pairs
    assert calls == {"encode_clips": 1, "score_pairs": 0}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_grid_scores_equal_aligned_pair_scores(name: str) -> None:
    """score_grid reads each clip's keys/values once for all its texts (folded attention);
    its scores are those of the same pairs scored one memory per pair."""
    model, texts, clips = _setup(name)
    cenc, tenc = model.encode_clips(clips), model.encode_texts(texts)
    rows = torch.tensor([5, 1, 3])
    with torch.no_grad():
        G = model.score_grid(cenc, tenc, rows, slice(2, 9))
        ti, ci = rows.repeat_interleave(7), torch.arange(2, 9).repeat(3)
        P = model.score_pairs(cenc, tenc, ci, ti).view(3, 7)
    assert G.shape == (3, 7)
    torch.testing.assert_close(G, P, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("name", ["base", "12_reweighting", "6_dual_path", "5_film_keys", "all_on"])
def test_grid_training_loss_gradients_equal_aligned_pairs(name: str, monkeypatch) -> None:
    """Training's B x B pairs go through the grid; the loss and every gradient are those of
    the aligned-pair path."""
    model, texts, clips = _setup(name)
    model.train()
    text_clip = torch.tensor([0, 1, 2, 3, 4, 5, 6])

    def grads() -> tuple[float, dict[str, torch.Tensor]]:
        model.zero_grad()
        torch.manual_seed(0)
        out = model.training_loss(clips, texts, text_clip)
        out.loss.backward()
        return float(out.loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters()
                                 if p.grad is not None}

    loss_g, g_grid = grads()
    orig = model._fuse
    monkeypatch.setattr(model, "_fuse", lambda c, t, ci, ti, ctx, memory=None:
                        orig(c, t, ci, ti, ctx, None))  # one memory per pair
    loss_a, g_aligned = grads()
    assert loss_g == pytest.approx(loss_a, rel=1e-12)
    assert g_grid.keys() == g_aligned.keys() and g_grid
    for n in g_grid:
        torch.testing.assert_close(g_grid[n], g_aligned[n], rtol=1e-9, atol=1e-11, msg=n)


def test_text_agnostic_config_fuses_each_clip_once(monkeypatch) -> None:
    cfg = tiny_config(gate_inputs="va", query_fusion="none", routing=True)
    assert not cfg.text_conditioned
    model = build_model(cfg)
    calls = []
    orig = model._fuse
    monkeypatch.setattr(model, "_fuse", lambda *a, **k: calls.append(1) or orig(*a, **k))
    clips, texts = make_clips(10, cfg), make_texts(7, cfg)
    S = similarity(model, texts, clips)
    assert len(calls) == 1 and S.shape == (7, 10)
    # and it is honest too: equals aligned pair scoring
    cenc, tenc = model.encode_clips(clips), model.encode_texts(texts)
    ti, ci = torch.meshgrid(torch.arange(7), torch.arange(10), indexing="ij")
    with torch.no_grad():
        P = model.score_pairs(cenc, tenc, ci.reshape(-1), ti.reshape(-1)).view(7, 10)
    torch.testing.assert_close(S, P, rtol=1e-5, atol=1e-4)


def test_training_loss_fuses_every_pair(monkeypatch) -> None:
    cfg = tiny_config()
    model = build_model(cfg)
    seen = []
    orig = model._fuse

    def spy(clips, texts, ci, ti, ctx, memory=None):
        seen.append((ci.clone(), ti.clone()))
        return orig(clips, texts, ci, ti, ctx, memory)
    monkeypatch.setattr(model, "_fuse", spy)
    model.training_loss(make_clips(4, cfg), make_texts(5, cfg), torch.tensor([0, 1, 2, 3, 0]))
    ci, ti = seen[0]
    all_pairs = {(i, j) for i in range(5) for j in range(4)}
    assert {(int(a), int(b)) for a, b in zip(ti, ci)} == all_pairs
    seen.clear()
    model.training_loss(make_clips(4, cfg), make_texts(5, cfg), torch.tensor([0, 1, 2, 3, 0]),
                        negatives=2)
    ci, ti = seen[0]
    assert len(ci) == 5 * 3 + 5 * 2  # own + 2 negative clips, 2 negative texts, per text

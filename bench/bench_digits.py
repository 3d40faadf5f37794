"""Validation of the shipped ``digits`` data set, as a data-set paper would report it.

    nice -n 10 python bench/bench_digits.py                   # probes + 3 seeds of training
    python bench/bench_digits.py --part probes                # linear probes only (seconds)
    python bench/bench_digits.py --part train --seeds 3 --epochs 8

1. **Linear probes** (scikit-learn logistic regression on standardised features, C = 0.1):
   handwritten digit from one frame's pixels (train images -> test images, the writer-proxy
   split; and, for comparison, a random image split); spoken digit from a clip's
   mean-pooled audio tokens (train speakers -> the val speaker and the test speaker; and
   from the flattened tokens). Chance: 10 %.
2. **Audio matters**: one text-agnostic AVIGATE configuration (gates read [x̄; ā]) trained
   for ``--epochs`` on the train split, with audio and with audio cut off (audio zeroed and
   has_audio = 0 in every split), per seed; text-to-video R@1 / R@5 / R@10 and recall
   (their sum) on the **test** gallery (1,000 clips, unseen speaker and images), overall
   and per clip kind (ordinary, sound-only pairs, silent). Prints mean ± std over seeds.

Figures go to docs/data.md and BENCHMARKS.md; ``--out`` writes them as JSON.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import machine_info, print_machine, write_json  # noqa: E402


def mean_std(values) -> str:
    """``mean ± std`` (sample std; 0 for one value)."""
    v = np.asarray(list(values), dtype=np.float64)
    return f"{v.mean():.1f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.1f}"


# -------------------------------------------------------------------------------- probes --
def _probe(x_tr, y_tr, x_te, y_te) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(x_tr)
    clf = LogisticRegression(C=0.1, max_iter=3000).fit(sc.transform(x_tr), y_tr)
    return 100.0 * float(clf.score(sc.transform(x_te), y_te))


def probes() -> dict[str, float]:
    """Accuracy (%) of linear probes of each modality for its own labels."""
    from nas.data.digits import read_checked, shipped_path
    from nas.data.digits_build import ALL_SPEAKERS, IMAGE_SPLIT, SPEAKERS

    t = read_checked(shipped_path())
    img, dig = t["images"].astype(np.float64), t["image_digit"]
    (a, b), (c, d) = IMAGE_SPLIT["train"], IMAGE_SPLIT["test"]
    out = {"chance": 10.0,
           "video_unseen_writers": _probe(img[a:b], dig[a:b], img[c:d], dig[c:d])}
    perm = np.random.default_rng(0).permutation(len(img))
    tr, te = perm[:b - a], perm[len(img) - (d - c):]
    out["video_random_image_split"] = _probe(img[tr], dig[tr], img[te], dig[te])
    audio, rd, rs = t["audio"].astype(np.float64), t["rec_digit"], t["rec_speaker"]
    train = np.isin(rs, [ALL_SPEAKERS.index(s) for s in SPEAKERS["train"]])
    for split in ("val", "test"):
        held = np.isin(rs, [ALL_SPEAKERS.index(s) for s in SPEAKERS[split]])
        out[f"audio_pooled_{split}_speaker"] = _probe(audio[train].mean(1), rd[train],
                                                      audio[held].mean(1), rd[held])
        flat = audio.reshape(len(audio), -1)
        out[f"audio_flat_{split}_speaker"] = _probe(flat[train], rd[train], flat[held], rd[held])
    return out


# ------------------------------------------------------------------------------ training --
def cut_audio(data):
    """Every clip silent: audio zeroed and has_audio = 0, in every split."""
    out = copy.copy(data)
    for name, split in data.splits.items():
        s = copy.copy(split)
        s.audio = np.zeros_like(split.audio)
        s.has_audio = np.zeros_like(split.has_audio)
        setattr(out, name, s)
    return out


def train_and_test(data, kinds: np.ndarray, seed: int, epochs: float,
                   width: int) -> dict[str, float]:
    """Train one text-agnostic config; t2v metrics on the test gallery, overall and per kind."""
    from nas.config import FusionConfig, TrainConfig
    from nas.evaluate import retrieval_metrics, similarity
    from nas.metrics import t2v_ranks
    from nas.train import Trainer

    fusion = FusionConfig(width=width, layers=2, heads=2, resampler_layers=1, resampler_queries=4,
                          gate_inputs="va", query_fusion="none", residual_mix=1.0)
    train = TrainConfig(lr=3e-3, batch_size=32, epochs=epochs, seed=seed, num_threads=1)
    tr = Trainer(fusion, train, data)
    torch.set_num_threads(1)
    tr.train_until(tr.total_steps)
    tr.model.eval()
    test = data.test
    with torch.no_grad():
        S = similarity(tr.model, test.text_batch(np.arange(test.n_texts)),
                       test.clip_batch(np.arange(test.n_clips))).float()
    tc = torch.from_numpy(test.text_clip)
    m = {k: float(v) for k, v in retrieval_metrics(S, tc).items()}
    ranks = t2v_ranks(S, tc).numpy()
    kind_of_text = kinds[test.text_clip]
    for k, name in enumerate(("ordinary", "pairs", "silent")):
        m[f"r1_{name}"] = 100.0 * float((ranks[kind_of_text == k] == 1).mean())
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["all", "probes", "train"], default="all")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=float, default=8.0)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    info = machine_info()
    print_machine(info)
    result: dict = {"machine": info}
    if args.part in ("all", "probes"):
        p = probes()
        result["probes"] = p
        print("\nlinear probes, accuracy % (chance 10):")
        for k, v in p.items():
            print(f"  {k:28s} {v:5.1f}")
    if args.part in ("all", "train"):
        from nas.data.digits import load_digits_data

        data, kinds = load_digits_data(return_kinds=True)
        n = data.test.n_clips
        print(f"\ntest gallery: {n} clips, {data.test.n_texts} captions; chance recall "
              f"(R@1+R@5+R@10) = {100.0 * 16 / n:.1f}")
        runs: dict[str, list[dict]] = {"audio": [], "cut": []}
        for seed in range(args.seeds):
            for label, d in (("audio", data), ("cut", cut_audio(data))):
                t0 = time.perf_counter()
                m = train_and_test(d, kinds["test"], seed, args.epochs, args.width)
                runs[label].append(m)
                print(f"  seed {seed} {label:5s}: recall {m['recall']:.1f} R@1 {m['t2v_r1']:.1f} "
                      f"R@5 {m['t2v_r5']:.1f} R@10 {m['t2v_r10']:.1f} | R@1 ordinary "
                      f"{m['r1_ordinary']:.1f} pairs {m['r1_pairs']:.1f} silent "
                      f"{m['r1_silent']:.1f} ({time.perf_counter() - t0:.0f} s)", flush=True)
        keys = ("recall", "t2v_r1", "t2v_r5", "t2v_r10", "r1_ordinary", "r1_pairs", "r1_silent")
        print(f"\nmean ± std over {args.seeds} seeds ({args.epochs:g} epochs, width {args.width}):")
        for key in keys:
            a = mean_std(m[key] for m in runs["audio"])
            c = mean_std(m[key] for m in runs["cut"])
            diff = mean_std(x[key] - y[key] for x, y in zip(runs["audio"], runs["cut"]))
            print(f"  {key:12s} audio {a:14s} cut {c:14s} difference (paired) {diff}")
        result["train"] = runs
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()

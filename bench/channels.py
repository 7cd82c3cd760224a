"""What the autocorrelation input plane buys: one net on heights against the same net on
heights and their autocorrelation, same data, same time.

    .venv/bin/python bench/channels.py [--surface hsi100] [--seconds 420] [--n-train 24000]

A double tip images every feature twice with one offset, which puts a side peak in the
autocorrelation (:func:`tipd.preprocess.autocorrelation`); ``tipd train --channels height
autocorrelation`` gives it to the nets as a second plane, recomputed from the heights after
each augmentation (:func:`tipd.train.data.augment`). This trains the shipped recipe's first
VGG-BN candidate both ways for ``--seconds`` each on the same frames (training seed 1,
validation seed 2) and scores both on held-out seed 3: mean AUROC, balanced accuracy, macro
precision and AUROC per class.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from tipd.taxonomy import taxonomy
from tipd.train.data import Dataset, synthetic
from tipd.train.fit import fit, predict
from tipd.train.metrics import balanced_accuracy, macro_precision, mean_auroc, per_class_auroc
from tipd.train.pipeline import candidates_for

BOTH = ("height", "autocorrelation")


def heights_only(ds: Dataset) -> Dataset:
    return replace(ds, x=np.ascontiguousarray(ds.x[:, :1]), channels=("height",))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--surface", default="hsi100")
    parser.add_argument("--seconds", type=float, default=420.0, help="training time of each net")
    parser.add_argument("--n-train", type=int, default=24000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.workers)
    classes = taxonomy(args.surface).classes
    t0 = time.monotonic()
    train, val, test = (
        synthetic(args.surface, n, seed, workers=args.workers, channels=BOTH).columns(classes)
        for n, seed in ((args.n_train, 1), (1500, 2), (2000, 3))
    )
    took = time.monotonic() - t0
    print(f"{args.surface}: {len(train)} training frames, both planes ({took:.0f} s)")
    recipe = replace(
        dict(candidates_for(args.surface))["vgg_bn_adam"],
        max_seconds=args.seconds,
        epochs=40,
        patience=6,
        batch=32,
    )
    print(f"{'input':<24} {'s':>4} {'epochs':>6} {'AUROC':>6} {'bal.acc':>7} {'prec':>6}", end="")
    print("  AUROC per class")
    for name, pick in (("heights", heights_only), ("heights + autocorrelation", lambda d: d)):
        f = fit(name, recipe, pick(train), pick(val), log=lambda _: None)
        probs = predict(f.model, pick(test).x)
        per_class = np.round(per_class_auroc(test.y, probs), 3).tolist()
        print(
            f"{name:<24} {f.seconds:>4.0f} {f.epochs_run:>6} {mean_auroc(test.y, probs):>6.3f} "
            f"{balanced_accuracy(test, probs):>7.3f} {macro_precision(test, probs):>6.3f}  "
            f"{dict(zip(classes, per_class, strict=True))}",
            flush=True,
        )


if __name__ == "__main__":
    main()

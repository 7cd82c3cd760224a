"""What training time buys one net: the same candidate trained for several wall-time budgets on
the same frames, each scored on held-out frames.

    .venv/bin/python bench/budget.py [--surface hsi100] [--seconds 210 420 1260] [--device cpu]

Every member of a shipped model stopped at its time cap, not by early stopping (the
manifests' ``training.candidates``: 7–11 epochs of 40, patience 6), so the question for the
next training is what more time is worth. This trains the shipped recipe's first VGG-BN
candidate (``vgg_bn_adam``, width 0.25) once per budget, from scratch with the same seed; the
learning rate decays over each budget (:func:`tipd.train.fit.decayed_lr`), so each run is a
complete schedule of that length, not a snapshot of a longer one. Training frames are seed 1,
validation seed 2 (early stopping), test seed 3: mean AUROC, balanced accuracy, macro
precision, good/bad AUROC, and the frames the net saw.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from tipd.taxonomy import taxonomy
from tipd.train.data import synthetic
from tipd.train.fit import device_name, fit, predict, resolve_device
from tipd.train.pipeline import candidates_for, default_batch
from tipd.train.report import evaluate_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--surface", default="hsi100")
    parser.add_argument("--seconds", type=float, nargs="+", default=[210.0, 420.0, 1260.0])
    parser.add_argument("--n-train", type=int, default=24000)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.workers)
    device = resolve_device(args.device)
    tax = taxonomy(args.surface)
    classes = tax.classes
    desirable = [classes.index(d) for d in tax.desirable]
    t0 = time.monotonic()
    train, val, test = (
        synthetic(args.surface, n, seed, workers=args.workers).columns(classes)
        for n, seed in ((args.n_train, 1), (1500, 2), (2000, 3))
    )
    recipe = dict(candidates_for(args.surface))["vgg_bn_adam"]
    recipe = replace(recipe, width=0.25, epochs=1000, patience=6, batch=default_batch(device, 0.25))
    print(
        f"{args.surface}: {len(train)} training frames ({time.monotonic() - t0:.0f} s to render); "
        f"{recipe.family} width {recipe.width}, batch {recipe.batch}, on {device_name(device)}\n"
    )
    print("| budget (s) | epochs | frames seen | AUROC | bal. acc. | precision | good/bad |")
    print("|---|---|---|---|---|---|---|")
    for seconds in args.seconds:
        fitted = fit(
            "budget", replace(recipe, max_seconds=seconds), train, val, lambda _: None, device
        )
        seen = fitted.epochs_run * len(train)  # at most: the last epoch may be cut short
        e = evaluate_all(test, {"net": predict(fitted.model, test.x)}, desirable)["table"]["net"]
        print(
            f"| {seconds:.0f} | {fitted.epochs_run} | ≤ {seen:,} | {e['auroc']:.3f} | "
            f"{e['balanced_accuracy']:.3f} | {e['precision']:.3f} | {e['good_bad_auroc']:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

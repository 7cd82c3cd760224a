"""What the width multiplier costs in accuracy at a fixed training time, on one surface.

    .venv/bin/python bench/width.py [--surface au111] [--seconds 170] [--device auto]

Trains one VGG-like (batch norm) member per width on the same synthetic frames for the same
wall time, and prints MMAC, frames/s trained and held-out AUROC and balanced accuracy.
"""

from __future__ import annotations

import argparse

import torch

from tipd.taxonomy import taxonomy
from tipd.train.data import synthetic
from tipd.train.fit import Recipe, device_name, fit, predict, resolve_device
from tipd.train.metrics import balanced_accuracy, mean_auroc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--surface", default="au111")
    parser.add_argument("--seconds", type=float, default=170.0)
    parser.add_argument("--widths", type=float, nargs="+", default=[0.0625, 0.125, 0.25])
    parser.add_argument("--n-train", type=int, default=12000)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--workers", type=int, default=2, help="threads / render processes")
    args = parser.parse_args()
    torch.set_num_threads(args.workers)
    device = resolve_device(args.device)
    classes = taxonomy(args.surface).classes
    train, val, test = (
        synthetic(args.surface, n, seed, workers=args.workers).columns(classes)
        for n, seed in ((args.n_train, 1), (1500, 2), (2000, 3))
    )
    print(
        f"{args.surface}, {len(train)} training frames, {args.seconds:.0f} s per width on "
        f"{device_name(device)}"
    )
    print(f"{'width':>6} {'MMAC':>6} {'epochs':>6} {'frames/s':>9} {'AUROC':>6} {'bal.acc':>8}")
    for w in args.widths:
        f = fit(
            f"w{w}",
            Recipe(family="vgg_bn", width=w, max_seconds=args.seconds, epochs=30),
            train,
            val,
            log=lambda _: None,
            device=device,
        )
        p = predict(f.model, test.x)
        rate = f.epochs_run * len(train) / f.seconds
        print(
            f"{w:>6} {f.macs / 1e6:>6.1f} {f.epochs_run:>6} {rate:>9.0f} "
            f"{mean_auroc(test.y, p):>6.3f} {balanced_accuracy(test, p):>8.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()

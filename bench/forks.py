"""What forking buys: one VGG-BN net trained from scratch, then forks of it, on one surface.

    .venv/bin/python bench/forks.py [--surface au111] [--base 300] [--fork 225] [--from-first]

The shipped CPU recipe (``tipd.train.pipeline``) trains the first VGG-BN member from scratch,
the second starting from the first and the third from the second (a chain), each with its own
optimiser, seed, data order and augmentation. This prints held-out AUROC, balanced accuracy and
macro precision of the first net, of each fork, and of the equal and the validation-weighted
vote. ``--from-first`` forks both from the first net instead.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from tipd.taxonomy import taxonomy
from tipd.train.data import Dataset, synthetic
from tipd.train.fit import Fitted, Recipe, fit, predict
from tipd.train.metrics import balanced_accuracy, macro_precision, mean_auroc, per_class_auroc
from tipd.train.pipeline import WIDTH, candidates_for
from tipd.train.vote import vote_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--surface", default="au111")
    parser.add_argument("--base", type=float, default=300.0, help="s for the first net")
    parser.add_argument("--fork", type=float, default=225.0, help="s for each fork")
    parser.add_argument("--n-train", type=int, default=24000)
    parser.add_argument("--width", type=float, default=WIDTH)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--from-first", action="store_true", help="fork both from the first")
    args = parser.parse_args()
    torch.set_num_threads(2)
    classes = taxonomy(args.surface).classes
    t0 = time.monotonic()
    train, val, test = (
        synthetic(args.surface, n, seed).columns(classes)
        for n, seed in ((args.n_train, 1), (1500, 2), (2000, 3))
    )
    print(f"{args.surface}: {len(train)} training frames ({time.monotonic() - t0:.0f} s)")
    print(f"{'net':<22} {'s':>5} {'epochs':>6} {'AUROC':>6} {'bal.acc':>7} {'prec':>6}  per class")

    def row(name: str, probs: np.ndarray, seconds: float = 0, epochs: int = 0) -> None:
        print(
            f"{name:<22} {seconds:>5.0f} {epochs:>6} {mean_auroc(test.y, probs):>6.3f} "
            f"{balanced_accuracy(test, probs):>7.3f} {macro_precision(test, probs):>6.3f}  "
            f"{np.round(per_class_auroc(test.y, probs), 3).tolist()}",
            flush=True,
        )

    def run(name: str, recipe: Recipe, data: Dataset, init: Fitted | None) -> Fitted:
        f = fit(name, recipe, data, val, log=lambda _: None, init=init.model if init else None)
        row(
            name + (f" (from {init.name})" if init else ""),
            predict(f.model, test.x),
            f.seconds,
            f.epochs_run,
        )
        return f

    shipped = dict(candidates_for(args.surface))
    common = {"width": args.width, "batch": args.batch, "epochs": 40, "patience": 6}
    first = run(
        "vgg_bn_adam",
        replace(shipped["vgg_bn_adam"], max_seconds=args.base, **common),  # type: ignore[arg-type]
        train,
        None,
    )
    nets = [first]
    for name in ("vgg_bn_rmsprop", "vgg_bn_sgd"):
        recipe = replace(shipped[name], max_seconds=args.fork, **common)  # type: ignore[arg-type]
        nets.append(run(name, recipe, train, first if args.from_first else nets[-1]))
    probs = np.stack([predict(f.model, test.x) for f in nets])
    weights = vote_weights(val.y, np.stack([predict(f.model, val.x) for f in nets]))
    row("equal vote", probs.mean(axis=0))
    row(
        "weighted vote " + "/".join(f"{w:.2f}" for w in weights),
        np.tensordot(weights, probs, axes=1),
    )


if __name__ == "__main__":
    main()

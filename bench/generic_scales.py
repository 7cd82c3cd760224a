"""Held-out generic frames by scale: each model's figures on the atomic-scale frames (those of
generator version 2, the ones every earlier generic model was judged on) and on the 25–500 nm
survey frames, scored through ONNX Runtime as the daemon runs them.

    .venv/bin/python bench/generic_scales.py [--models generic /path/to/model] [--n 4000]

Frames are the test seed's (``tipd synth generic seed 3``), never used in training.
"""

from __future__ import annotations

import argparse

import numpy as np

from tipd.ensemble import Ensemble
from tipd.models import find
from tipd.synth.generate import generic_scale
from tipd.train.data import SEED_OFFSETS, synthetic
from tipd.train.evaluate import member_scores
from tipd.train.report import evaluate_all


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["generic"], help="model names or folders")
    ap.add_argument("--n", type=int, default=4000, help="test frames (about half of each scale)")
    ap.add_argument("--workers", type=int, default=2, help="render processes")
    args = ap.parse_args()
    seed = SEED_OFFSETS["test"]
    data = synthetic("generic", args.n, seed, 128, args.workers)
    scale = np.array([generic_scale(seed, i) for i in range(args.n)])
    print(f"{args.n} frames of tipd synth generic seed {seed}: {(scale == 'atomic').sum()} atomic")
    print("| model | frames | n | mean AUROC | good/bad AUROC | balanced accuracy |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        ens = Ensemble(find(name))
        m = ens.manifest
        ds = data.columns(tuple(m.classes))
        voted = member_scores(ens, ds.x.astype(np.float32))["Ensemble"]
        desirable = [m.classes.index(d) for d in m.desirable]
        for which in ("atomic", "meso", "all"):
            keep = np.flatnonzero(scale == which) if which != "all" else np.arange(args.n)
            part = {"Ensemble": voted[keep]}
            r = evaluate_all(ds.subset(keep), part, desirable)["table"]["Ensemble"]
            print(
                f"| {name} | {which} | {len(keep)} | {r['auroc']:.3f} | "
                f"{r['good_bad_auroc']:.3f} | {r['balanced_accuracy']:.3f} |"
            )


if __name__ == "__main__":
    main()

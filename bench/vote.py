"""What each way of voting gets from one trained model's nets, on held-out synthetic frames.

    .venv/bin/python bench/vote.py [--model cu111] [--n-stack 6000] [--workers 2]

Reads the model's member files (``members/*.onnx``) back into torch
(:func:`tipd.train.onnx_weights.load_member`, exact in eval mode) and reads their logits and
hidden features as the fused graph does (:func:`tipd.train.fuse.member_views`), on the frame
alone and averaged with its left-right mirror, then votes three ways, each on one view and on both
(``--no-mirror`` and the default of ``tipd train``): the weighted mean of the members'
confidences (the manifest's ``vote_weight``; the weighted-mean vote), the stacked vote
on the members' logits (:mod:`tipd.train.stack`, ``--logits-only``), and the stacked vote on
their logits and hidden features (the default). The stacked votes are fitted on the stacking
seed ``tipd train`` uses. Each is scored on the model's own test seed and on seed 99, as
``tipd evaluate`` does: mean AUROC, balanced accuracy, macro precision, good/bad AUROC.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from tipd.models import find, load_manifest
from tipd.train.data import Dataset, synthetic
from tipd.train.export import Fused
from tipd.train.fuse import member_views
from tipd.train.onnx_weights import load_member
from tipd.train.provenance import synth_seeds
from tipd.train.report import evaluate_all
from tipd.train.stack import fit_stack, stacked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="cu111")
    parser.add_argument("--n-stack", type=int, default=6000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(max(1, args.workers))
    folder = find(args.model)
    m = load_manifest(folder)
    voting = [e for e in m.members if e.vote_weight is not None]
    weights = np.array([e.vote_weight for e in voting], dtype=float)
    weights /= weights.sum()
    classes = tuple(m.classes)
    seeds = synth_seeds(m)
    started = time.monotonic()

    def frames(seed: int, n: int) -> Dataset:
        ds = synthetic(m.surface, n, seed, m.preprocessing.size, args.workers)
        return ds.columns(classes)

    sets = {
        "stack": frames(seeds.stack, args.n_stack),
        f"seed {seeds.test}": frames(seeds.test, seeds.n_test),
        "seed 99": frames(99, 2000),
    }
    calibration = sets["stack"].x[:256].astype(np.float32)
    nets = [
        load_member(folder / e.file, e.family, len(classes), e.width, calibration) for e in voting
    ]
    desirable = [m.classes.index(d) for d in m.desirable]
    print(
        f"{m.name}: {len(voting)} voting nets; stacked votes fitted on "
        f"{sets['stack'].source}; {time.monotonic() - started:.0f} s of frames\n"
    )
    tests = [k for k in sets if k != "stack"]
    print(
        "| vote | "
        + " | ".join(f"{k}: AUROC / bal. acc. / precision / good-bad" for k in tests)
        + " |"
    )
    print("|---" * (len(tests) + 1) + "|")
    for mirror in (False, True):
        graph = Fused(nets, [], np.full(len(classes), 0.5), mirror=mirror)  # as the graph sees
        feats = {k: member_views(graph, ds.x) for k, ds in sets.items()}
        z, h = feats["stack"]
        on_logits = fit_stack(sets["stack"].y, z)
        on_hidden = fit_stack(sets["stack"].y, z, hidden=h)
        for label, vote in (
            ("weighted mean", lambda z, h: np.tensordot(weights, 1 / (1 + np.exp(-z)), axes=1)),
            ("stacked on logits", lambda z, h, s=on_logits: stacked(s, z)),
            ("stacked on logits + hidden", lambda z, h, s=on_hidden: stacked(s, z, h)),
        ):
            cells = []
            for k in tests:
                r = evaluate_all(sets[k], {"E": vote(*feats[k])}, desirable)
                e = r["table"]["E"]
                cells.append(
                    f"{e['auroc']:.3f} / {e['balanced_accuracy']:.3f} / "
                    f"{e['precision']:.3f} / {e['good_bad_auroc']:.3f}"
                )
            print(f"| {label}{', mirrored' if mirror else ''} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

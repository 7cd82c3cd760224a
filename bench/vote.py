"""What each way of voting gets from one trained model's nets, on held-out synthetic frames.

    .venv/bin/python bench/vote.py [--model cu111] [--n-stack 6000] [--workers 2]

Runs the model's member files (``members/*.onnx``) with ONNX Runtime on the frame and on its
left-right mirror, then votes four ways: the weighted mean of the members' confidences (the
manifest's ``vote_weight``; the vote before the stacked one), the same on mirror-averaged
logits, the stacked vote (:mod:`tipd.train.stack`, fitted on the stacking seed ``tipd train``
uses), and the stacked vote on mirror-averaged logits (``tipd train``'s default). Each is scored
on the model's own test seed and on seed 99, as ``tipd evaluate`` does: mean AUROC, balanced
accuracy, macro precision, good/bad AUROC.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime as ort

from tipd.models import find, load_manifest
from tipd.train.data import Dataset, synthetic
from tipd.train.report import evaluate_all
from tipd.train.revote import synth_seeds
from tipd.train.stack import fit_stack, stacked


def member_logits(folder: str, files: list[str], x: np.ndarray, mirror: bool) -> np.ndarray:
    """``(M, N, K)`` logits of the member files on ``x``, mirror-averaged if ``mirror``."""
    out = []
    for f in files:
        session = ort.InferenceSession(f"{folder}/{f}", providers=["CPUExecutionProvider"])

        def run(v: np.ndarray, s: ort.InferenceSession = session) -> np.ndarray:
            parts = [
                s.run(None, {"x": np.ascontiguousarray(v[a : a + 256], dtype=np.float32)})[0]
                for a in range(0, len(v), 256)
            ]
            return np.concatenate(parts)

        z = run(x)
        out.append((z + run(x[..., ::-1])) / 2 if mirror else z)
    return np.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="cu111")
    parser.add_argument("--n-stack", type=int, default=6000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
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
    files = [e.file for e in voting]
    logits = {
        (name, mirror): member_logits(str(folder), files, ds.x, mirror)
        for name, ds in sets.items()
        for mirror in (False, True)
    }
    desirable = [m.classes.index(d) for d in m.desirable]
    print(
        f"{m.name}: {len(voting)} voting nets; stacked vote fitted on "
        f"{sets['stack'].source}; {time.monotonic() - started:.0f} s of frames and inference\n"
    )
    tests = [k for k in sets if k != "stack"]
    print(
        "| vote | "
        + " | ".join(f"{k}: AUROC / bal. acc. / precision / good-bad" for k in tests)
        + " |"
    )
    print("|---" * (len(tests) + 1) + "|")
    for mirror in (False, True):
        stack = fit_stack(sets["stack"].y, logits[("stack", mirror)])
        for label, vote in (
            ("weighted mean", lambda z: np.tensordot(weights, 1 / (1 + np.exp(-z)), axes=1)),
            ("stacked", lambda z, s=stack: stacked(s, z)),
        ):
            cells = []
            for k in tests:
                r = evaluate_all(sets[k], {"E": vote(logits[(k, mirror)])}, desirable)
                e = r["table"]["E"]
                cells.append(
                    f"{e['auroc']:.3f} / {e['balanced_accuracy']:.3f} / "
                    f"{e['precision']:.3f} / {e['good_bad_auroc']:.3f}"
                )
            print(f"| {label}{', mirrored' if mirror else ''} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

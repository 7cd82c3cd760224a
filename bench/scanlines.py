"""Fit and check the scan-line tip-change test (:mod:`tipd.scanlines`) on synthetic frames.

Renders generic frames of every class (seed 6, never a training or test seed of a shipped
model) at 128 and 256 px, takes each frame's largest line jump, and fits the logistic curve
``p = 1 / (1 + exp(-(A + B · ln jump)))`` of "tip change" on the first half of the frames
(corrupted frames left out: their jumps are the data's, not the tip's). Prints the fitted
coefficients and how the curve in :mod:`tipd.scanlines` does on the second half, and the
time one 512 × 512 frame takes.

    .venv/bin/python bench/scanlines.py [--frames 2000]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from tipd import scanlines
from tipd.synth.generate import generate
from tipd.taxonomy import taxonomy

SEED = 6


def _one(index: int) -> tuple[float, str, int]:
    frame = generate("generic", index, seed=SEED, pixels=128 if index % 2 else 256)
    ev = scanlines.tip_change_evidence(frame.heights_m)
    tax = taxonomy("generic")
    tip_change = int(frame.labels[tax.labels.index("tip_change")])
    return ev.jump_sigma, tax.classes[frame.primary], tip_change


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000, help="synthetic frames (default 2000)")
    ap.add_argument("--workers", type=int, default=2, help="render processes (default 2)")
    args = ap.parse_args()
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(_one, range(args.frames), chunksize=50))
    jump = np.array([r[0] for r in rows])
    primary = np.array([r[1] for r in rows])
    y = np.array([r[2] for r in rows])
    keep = primary != "corruption"
    x = np.log(np.maximum(jump, scanlines.FLOOR))[:, None]
    half = np.arange(len(x)) < len(x) // 2
    fit = LogisticRegression(C=1.0).fit(x[keep & half], y[keep & half])
    test = keep & ~half
    shipped = np.array([scanlines.probability(j) for j in jump])
    print(
        f"fitted on {int((keep & half).sum())} frames: A = {fit.intercept_[0]:.2f}, "
        f"B = {fit.coef_[0, 0]:.2f}   (shipped: A = {scanlines.LOGIT_A}, B = {scanlines.LOGIT_B})"
    )
    print(f"\nheld-out half, {int(test.sum())} frames (no corruption), shipped curve")
    print("| figure | value |\n|---|---|")
    print(f"| tip-change AUROC | {roc_auc_score(y[test], shipped[test]):.3f} |")
    for cut in (0.5, 0.9):
        neg = shipped[test & (y == 0)]
        pos = shipped[test & (y == 1)]
        print(f"| p ≥ {cut}: tip changes found | {np.mean(pos >= cut):.3f} |")
        print(f"| p ≥ {cut}: other frames flagged | {np.mean(neg >= cut):.3f} |")
    print("\nby class: median jump (σ), share with p ≥ 0.9")
    for name in sorted(set(primary)):
        sel = primary == name
        print(f"  {name:12s} {np.median(jump[sel]):6.1f}  {np.mean(shipped[sel] >= 0.9):.3f}")
    z = generate("generic", 0, seed=SEED, pixels=512).heights_m
    times = []
    for _ in range(50):
        t0 = time.perf_counter()
        scanlines.tip_change_evidence(z)
        times.append(time.perf_counter() - t0)
    print(f"\n512 × 512 frame: median {np.median(times) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()

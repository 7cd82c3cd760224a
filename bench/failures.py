"""Where a shipped ensemble fails on its held-out synthetic frames, by what the generator drew.

    .venv/bin/python bench/failures.py [--model hsi100] [--frames 2000] [--workers 2]

Renders the model's test seed (as ``tipd evaluate`` does) keeping each frame's generator
parameters, runs the fused graph with ONNX Runtime, and on the single-label frames (the ones
Table I's balanced accuracy and precision count) prints the confusion matrix of the arg-max,
then the arg-max error rate by each parameter that takes a few values (H:Si: ``defect``, the
kind of generic defect drawn, and ``mode``, the single tip's imaging mode; Au/Cu:
``secondary``, the second condition in view; all: ``corruption``) and by scan size (thirds).
A table says where the errors are, not why; that is for whoever reads it. The confusion
matrix and the single-label frames are :mod:`tipd.train.metrics`' own (so it needs the train
extra, torch, as ``tipd evaluate`` does).
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from tipd.ensemble import Ensemble
from tipd.models import find
from tipd.preprocess import model_input
from tipd.synth.generate import generate
from tipd.taxonomy import taxonomy
from tipd.train.data import Dataset
from tipd.train.metrics import confusion, single_label
from tipd.train.provenance import synth_seeds

#: parameters with more distinct values than this are not tabulated (seeds, indices, ...)
MAX_VALUES = 12


def _render(
    job: tuple[str, int, int, int, int],
) -> list[tuple[np.ndarray, np.ndarray, int, float, dict[str, Any]]]:
    """Frames ``start..stop`` of a seed: model input ``(S, S)``, truth labels, primary class,
    scan size (nm) and the generator's few-valued parameters."""
    surface, seed, start, stop, size = job
    out = []
    with threadpool_limits(1):
        for i in range(start, stop):
            f = generate(surface, i, seed=seed, pixels=size)
            flat = {k: v for k, v in f.params.items() if isinstance(v, str | bool | type(None))}
            x = model_input(f.heights_m, size)[0]
            out.append((x, f.labels, f.primary, f.scan_size_nm[0], flat))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="hsi100")
    parser.add_argument("--frames", type=int, default=0, help="default: the model's test set")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    ens = Ensemble(find(args.model), prefer_gpu=False, threads=args.workers)
    m = ens.manifest
    seeds = synth_seeds(m)
    n = args.frames or seeds.n_test
    jobs = [(m.surface, seeds.test, a, min(a + 250, n), ens.size) for a in range(0, n, 250)]
    with ProcessPoolExecutor(args.workers) as pool:
        rows = [r for part in pool.map(_render, jobs) for r in part]
    source = f"tipd synth {m.surface} seed {seeds.test} frames 0..{n - 1}"
    ds = Dataset(
        np.stack([r[0] for r in rows])[:, None],
        np.stack([r[1] for r in rows]).astype(np.float32),
        np.array([r[2] for r in rows], dtype=np.int64),
        taxonomy(m.surface).labels,
        source,
    ).columns(tuple(m.classes))
    voted = np.concatenate([ens.run(ds.x[a : a + 64]).voted for a in range(0, len(ds), 64)])
    probs = voted[:, : len(m.classes)]
    single = single_label(ds)
    wrong = (probs.argmax(axis=1) != ds.primary) & single
    print(
        f"{m.name}: {source}; {single.sum()} single-label frames, {wrong.sum()} arg-max "
        f"errors ({wrong.sum() / single.sum():.3f})\n"
    )
    width = max(len(c) for c in m.classes)
    header = "true / voted"
    print(f"{header:<{width}} " + " ".join(f"{c[:9]:>9}" for c in m.classes))
    for name, counts in zip(m.classes, confusion(ds, probs), strict=True):
        print(f"{name:<{width}} " + " ".join(f"{c:>9}" for c in counts))

    def table(title: str, values: list[Any]) -> None:
        print(f"\nby {title}: value, single-label frames, errors, error rate")
        for v in sorted(set(values), key=str):
            sel = single & np.array([u == v for u in values])
            if sel.any():
                print(f"  {v!s:<24} {sel.sum():>6} {wrong[sel].sum():>6} {wrong[sel].mean():>7.3f}")

    for key in sorted({key for r in rows for key in r[4]}):
        values = [r[4].get(key) for r in rows]
        if 1 < len(set(values)) <= MAX_VALUES:
            table(key, values)
    size = np.array([r[3] for r in rows])
    edges = np.quantile(size, [1 / 3, 2 / 3])
    lo, hi = (f"{e:.1f}" for e in edges)

    def third(s: float) -> str:
        return f"< {lo} nm" if s < edges[0] else f">= {hi} nm" if s >= edges[1] else f"{lo}-{hi} nm"

    table("scan size", [third(s) for s in size])


if __name__ == "__main__":
    main()

"""Synthetic frames per second, per surface, at the model size (128²) and at 512², on ONE core.

    .venv/bin/python bench/synth.py [--seconds 5]

The process pins itself to one CPU and limits BLAS/OpenMP to one thread before numpy loads,
so the figure is what one training data worker delivers. Target: ≥ 300 frames/s at 128².
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import argparse  # noqa: E402
import time  # noqa: E402

from tipd.synth import generate  # noqa: E402
from tipd.taxonomy import SURFACES  # noqa: E402


def rate(surface: str, pixels: int, seconds: float) -> tuple[float, int]:
    """Frames per second over at least ``seconds`` (classes cycle, so every class counts)."""
    generate(surface, 0, seed=1, pixels=pixels)  # warm caches
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or n < 12:
        generate(surface, n, seed=1, pixels=pixels)
        n += 1
    return n / (time.perf_counter() - start), n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per cell (default 5)")
    args = parser.parse_args()
    print(f"one core (cpu {sorted(os.sched_getaffinity(0))}), {args.seconds:.0f} s per cell")
    print(f"{'surface':<8} {'128x128 frames/s':>17} {'512x512 frames/s':>17}")
    for surface in SURFACES:
        small, _ = rate(surface, 128, args.seconds)
        large, _ = rate(surface, 512, args.seconds)
        print(f"{surface:<8} {small:>17.0f} {large:>17.1f}")


if __name__ == "__main__":
    main()

"""Inference latency of a shipped fused ensemble with ONNX Runtime, batch 1 and batch 64.

    .venv/bin/python bench/infer.py [--model au111] [--threads 2] [--runs 200]

Times ``session.run`` on preprocessed inputs (the daemon's hot path) and, separately, the
preprocessing of a 512×512 frame. Prints the provider and the card (or CPU) that ran it; on a
card, also how far its voted confidences are from the CPU's on 64 synthetic frames.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from tipd.ensemble import Ensemble
from tipd.models import find
from tipd.preprocess import to_model_input


def timings(fn: object, runs: int) -> np.ndarray:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - t)
    return np.array(out) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="au111")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (0: all)")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--cpu", action="store_true", help="force the CPU provider")
    args = parser.parse_args()
    ens = Ensemble(find(args.model), prefer_gpu=not args.cpu, threads=args.threads)
    device = platform.processor() or platform.machine()
    if ens.provider.startswith("CUDA"):
        import subprocess

        device = (
            subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            or "GPU"
        )
    size = ens.size
    rng = np.random.default_rng(0)
    print(
        f"model {ens.manifest.name}: {len(ens.manifest.members)} networks fused; provider "
        f"{ens.provider}; device {device}; {args.threads} threads"
    )
    print(f"{'batch':>5} {'median ms':>10} {'p90 ms':>8} {'ms/frame':>9} {'frames/s':>9}")
    for batch in (1, 64):
        x = rng.uniform(-1, 1, (batch, 1, size, size)).astype(np.float32)
        for _ in range(5):
            ens.run(x)
        t = timings(lambda x=x: ens.run(x), args.runs if batch == 1 else max(10, args.runs // 10))
        med = float(np.median(t))
        print(
            f"{batch:>5} {med:>10.2f} {np.percentile(t, 90):>8.2f} {med / batch:>9.3f} "
            f"{batch / med * 1e3:>9.0f}"
        )
    z = rng.normal(0, 1e-10, (512, 512))
    t = timings(lambda: to_model_input(z, size), 50)
    print(f"preprocessing a 512×512 frame to {size}²: median {np.median(t):.2f} ms")
    if ens.provider != "CPUExecutionProvider":
        # the card's vote against the CPU's, on synthetic frames of the model's surface
        from tipd.synth.generate import generate

        frames = [generate(ens.manifest.surface, i, seed=99, pixels=size) for i in range(64)]
        x = np.concatenate([ens.prepare(f.heights_m) for f in frames])
        cpu = Ensemble(ens.folder, prefer_gpu=False, threads=args.threads)
        diff = np.abs(ens.run(x).voted - cpu.run(x).voted).max()
        print(f"voted on {ens.provider} against the CPU, 64 frames: max |Δ| {diff:.1e}")


if __name__ == "__main__":
    main()

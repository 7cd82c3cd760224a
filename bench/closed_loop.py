"""Closed-loop conditioning on the virtual microscope: time to a good tip, per policy.

    .venv/bin/python bench/closed_loop.py [--episodes 200] [--surface au111] [--workers 2]

Seeded episodes, each starting from a degraded tip (double, blunt, contaminated, mixed, in
turn), run until the truth log shows a good tip for three frames in a row or ``--max-frames``
frames pass. Every policy meets the same seeds, so the same samples and tips. Frames are
128 × 128 at 0.5 s per line (64 s per frame, simulated). Prints one row per policy.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

from tipd.closedloop import (
    STARTS,
    Conditioner,
    Episode,
    NoConditioning,
    ScanbotHeuristic,
    TipdConditioner,
    run_episode,
    summarise,
)
from tipd.ensemble import Ensemble
from tipd.models import find

#: heuristic: Scanbot's 5 bad frames in a row; heuristic-1: the same acting on the first one
POLICIES = ("none", "heuristic", "heuristic-1", "tipd")


def _conditioner(policy: str, model: Path | None) -> Conditioner:
    if policy == "none":
        return NoConditioning()
    if policy == "heuristic":
        return ScanbotHeuristic("stm1")
    if policy == "heuristic-1":
        return ScanbotHeuristic("stm1", bad_run=1, name="heuristic-1")
    assert model is not None
    return TipdConditioner(Ensemble(model, prefer_gpu=False, threads=1), "stm1")


def _chunk(args: tuple[str, str, list[int], int, str | None]) -> list[Episode]:
    policy, surface, seeds, max_frames, model = args
    out = []
    for seed in seeds:
        conditioner = _conditioner(policy, Path(model) if model else None)  # fresh per episode
        out.append(run_episode(conditioner, surface, STARTS[seed % len(STARTS)], seed, max_frames))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=200, help="per policy (default 200)")
    parser.add_argument("--surface", default="au111")
    parser.add_argument("--model", help="model name or folder (default: the surface's)")
    parser.add_argument("--max-frames", type=int, default=60)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--json", type=Path, help="also write every episode here")
    args = parser.parse_args()
    model = str(find(args.model or args.surface))
    jobs = [
        (policy, args.surface, list(range(a, min(a + 10, args.episodes))), args.max_frames, model)
        for policy in args.policies
        for a in range(0, args.episodes, 10)
    ]
    start = time.monotonic()
    with ProcessPoolExecutor(args.workers) as pool:
        episodes = [e for chunk in pool.map(_chunk, jobs) for e in chunk]
    print(
        f"{args.episodes} episodes per policy on {args.surface} (starts: {', '.join(STARTS)}), "
        f"at most {args.max_frames} frames of 64 s; {time.monotonic() - start:.0f} s wall"
    )
    head = (
        f"{'policy':<12} {'recovered':>9} {'frames med/p90':>15} {'minutes med/p90':>16} "
        f"{'actions':>8} {'violations':>10} {'refused':>8}"
    )
    print(head)

    def fmt(v: float | None, spec: str) -> str:
        return "never" if v is None else format(v, spec)

    for policy in args.policies:
        s = summarise([e for e in episodes if e.policy == policy])
        frames = f"{fmt(s.frames_median, '.0f')} / {fmt(s.frames_p90, '.0f')}"
        minutes = f"{fmt(s.minutes_median, '.1f')} / {fmt(s.minutes_p90, '.1f')}"
        print(
            f"{s.policy:<12} {s.recovered:>5}/{s.episodes:<3} {frames:>15} {minutes:>16} "
            f"{s.actions_mean:>8.1f} {s.violations:>10} {s.refused_by_microscope:>8}"
        )
    if args.json:
        args.json.write_text(json.dumps([asdict(e) for e in episodes], indent=1))


if __name__ == "__main__":
    main()

"""Reprocessing an archive on Dask: frames per second and memory per worker.

    .venv/bin/python bench/reprocess.py [--frames 10000] [--model generic]

Writes ``--frames`` archived 512 × 512 frames (tipd's own archive layout, one microscope; the
frames of the shipped generator, each with its own noise; ``--bad`` of them then spoiled: cut
short, all NaN, or with a sidecar that is not JSON), then judges them again with
``tipd reprocess``'s code on a ``LocalCluster`` of 1 and of 2 worker processes, and with
``tipd classify``'s decision on one process (no Dask), and prints one row each: frames per
second, per worker, each worker's peak resident memory, and the spoiled scans' rows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from tipd.archive import Archive
from tipd.frames import Frame
from tipd.synth import generate


def write_archive(root: Path, n: int) -> Path:
    """``n`` archived 512² frames: 50 generator frames, each again with fresh noise."""
    a = Archive(root, 1e9, 3650)
    rng = np.random.default_rng(0)
    base = [generate("generic", k, seed=4, pixels=512) for k in range(50)]
    t0 = time.time() - n
    for k in range(n):
        lab = base[k % len(base)]
        z = lab.heights_m + rng.normal(0, 2e-12, lab.heights_m.shape).astype(np.float32)
        f = Frame(z, lab.scan_size_nm, microscope="stm1", frame_id=f"f{k:06d}", t_acquired=t0 + k)
        a.keep(f, {"model": "generic"}, t=t0 + k)
    return root


def spoil(root: Path, n: int) -> list[Path]:
    """Spoil ``n`` of the archived frames, spread over the archive, in turn: a heights file cut
    short, heights all NaN, a sidecar that is not JSON. The spoiled heights files."""
    scans = sorted(root.rglob("*.npy"))
    out = []
    for i in range(n):
        path = scans[(i * len(scans)) // max(n, 1) + len(scans) // (2 * max(n, 1))]
        if i % 3 == 0:
            path.write_bytes(path.read_bytes()[:1000])
        elif i % 3 == 1:
            z = np.load(path)
            np.save(path, np.full_like(z, np.nan))
        else:
            path.with_suffix(".json").write_text("{not json")
        out.append(path)
    return out


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def on_dask(src: Path, model: str, workers: int, out: Path) -> tuple[float, list[float], int]:
    """Seconds for the whole archive on ``workers`` local processes, each one's peak MB, and
    the rows of scans that could not be judged."""
    from distributed import Client, LocalCluster

    from tipd.reprocess.run import reprocess

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=None)  # fmt: skip
    client = Client(cluster)
    try:
        start = time.monotonic()
        s = reprocess([src], [model], out, scheduler=cluster.scheduler_address, batch=64)
        seconds = time.monotonic() - start
        assert s.complete, s.failed
        peaks = list(client.run(peak_mb).values())
    finally:
        client.close()
        cluster.close()
    import pyarrow.parquet as pq

    errors = pq.read_table(out, columns=["error"]).column("error").drop_null()
    return seconds, peaks, len(errors)


def on_one_process(src: Path, model: str) -> tuple[float, int]:
    """Seconds for ``tipd classify``'s decision on every frame, one process, no Dask, and the
    scans it could not judge."""
    from tipd.classify import judge
    from tipd.ensemble import Ensemble
    from tipd.models import find
    from tipd.readers import find_scans, read_any

    ens = Ensemble(find(model), prefer_gpu=False)
    start = time.monotonic()
    errors = 0
    for path in find_scans(src):
        try:
            judge(read_any(path), ens)
        except Exception:  # as tipd classify: the scan is reported, the run goes on
            errors += 1
    return time.monotonic() - start, errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10000)
    ap.add_argument("--model", default="generic")
    ap.add_argument("--bad", type=int, default=6, help="archived scans spoiled among them")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tipd-reprocess-"))
    try:
        t = time.monotonic()
        src = write_archive(tmp / "archive", args.frames)
        spoiled = spoil(src, args.bad)
        took = time.monotonic() - t
        print(f"{args.frames} frames of 512 × 512 archived in {took:.0f} s, {len(spoiled)} spoiled")
        print("\n| run | seconds | frames/s | per worker | peak MB per worker | error rows |")
        print("|---|---|---|---|---|---|")
        for workers in (1, 2):
            seconds, peaks, errors = on_dask(src, args.model, workers, tmp / f"w{workers}.parquet")
            rate = args.frames / seconds
            memory = ", ".join(f"{p:.0f}" for p in peaks)
            row = f"| Dask, {workers} worker(s) | {seconds:.0f} | {rate:.1f} | {rate / workers:.1f}"
            print(f"{row} | {memory} | {errors} |", flush=True)
        seconds, errors = on_one_process(src, args.model)
        rate = args.frames / seconds
        row = f"| tipd classify's decision, one process | {seconds:.0f} | {rate:.1f} | {rate:.1f}"
        print(f"{row} | {peak_mb():.0f} | {errors} |")
        print(f"\nmachine: {os.cpu_count()} CPUs visible")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Synthetic data sets on disk: ``.npz`` shards of frames plus a ``manifest.json``.

Layout of ``DIR``::

    manifest.json          surface, classes, labels, seed, n, pixels, shards (file, n, sha256)
    shard-00000.npz        heights (n, px, px) float32 m; labels (n, L) uint8; primary (n,)
                           int16; scan_size_nm (n, 2) float32; index (n,) int64
    shard-00000.jsonl      one JSON object of rendering parameters per frame, same order

Shards hold plain arrays only and are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tipd import __version__
from tipd.models import sha256_file
from tipd.synth.generate import generate
from tipd.taxonomy import taxonomy

MANIFEST = "manifest.json"


def _write_shard(args: tuple[str, int, int, int, int, Path, int]) -> dict[str, Any]:
    surface, seed, start, stop, pixels, out, number = args
    frames = [generate(surface, i, seed=seed, pixels=pixels) for i in range(start, stop)]
    name = f"shard-{number:05d}"
    npz = out / f"{name}.npz"
    tmp = out / f".{name}.tmp.npz"
    np.savez(
        tmp,
        heights=np.stack([f.heights_m for f in frames]),
        labels=np.stack([f.labels for f in frames]),
        primary=np.array([f.primary for f in frames], dtype=np.int16),
        scan_size_nm=np.array([f.scan_size_nm for f in frames], dtype=np.float32),
        index=np.arange(start, stop, dtype=np.int64),
    )
    os.replace(tmp, npz)
    params = out / f"{name}.jsonl"
    with params.open("w") as fh:
        for f in frames:
            fh.write(json.dumps(f.params, default=float) + "\n")
    return {
        "file": npz.name,
        "params": params.name,
        "n": stop - start,
        "first_index": start,
        "sha256": sha256_file(npz),
    }


def write_dataset(
    surface: str,
    n: int,
    out: Path,
    seed: int = 0,
    pixels: int = 128,
    shard_size: int = 1000,
    workers: int = 1,
    progress: bool = True,
) -> Path:
    """Render frames ``0 .. n-1`` of ``surface`` into shards under ``out``; returns the
    manifest path. Deterministic in ``(surface, seed, n, pixels)``, whatever ``workers``."""
    from tqdm import tqdm

    tax = taxonomy(surface)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [
        (surface, seed, a, min(a + shard_size, n), pixels, out, k)
        for k, a in enumerate(range(0, n, shard_size))
    ]
    t0 = time.time()
    bar = tqdm(total=n, unit="frame", desc=f"synth {surface}", disable=not progress)
    shards: list[dict[str, Any]] = []
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for shard in pool.map(_write_shard, jobs):
                shards.append(shard)
                bar.update(shard["n"])
    else:
        for job in jobs:
            shards.append(_write_shard(job))
            bar.update(shards[-1]["n"])
    bar.close()
    manifest = {
        "format": "tipd-synth-shards/1",
        "generator": f"tipd.synth {__version__}",
        "surface": surface,
        "classes": list(tax.classes),
        "labels": list(tax.labels),
        "desirable": list(tax.desirable),
        "seed": seed,
        "n": n,
        "pixels": pixels,
        "unit": "m",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.time() - t0, 2),
        "shards": shards,
    }
    path = out / MANIFEST
    path.write_text(json.dumps(manifest, indent=2))
    return path


@dataclass
class Shard:
    """One loaded shard: arrays as described in the module docstring."""

    heights: np.ndarray
    labels: np.ndarray
    primary: np.ndarray
    scan_size_nm: np.ndarray
    index: np.ndarray


def read_manifest(directory: Path) -> dict[str, Any]:
    """The data set's manifest; :class:`FileNotFoundError` if there is none."""
    manifest: dict[str, Any] = json.loads((directory / MANIFEST).read_text())
    return manifest


def iter_shards(directory: Path, verify: bool = True) -> Iterator[Shard]:
    """Load shards in order, checking each file's sha256 against the manifest first."""
    manifest = read_manifest(directory)
    for entry in manifest["shards"]:
        path = directory / entry["file"]
        if verify and sha256_file(path) != entry["sha256"]:
            raise ValueError(
                f"{path}: sha256 does not match the manifest (file changed or corrupt)"
            )
        with np.load(path, allow_pickle=False) as z:
            yield Shard(z["heights"], z["labels"], z["primary"], z["scan_size_nm"], z["index"])

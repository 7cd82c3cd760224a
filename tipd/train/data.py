"""Training data: synthetic frames (rendered on the fly or read from shards) or a folder of real
labelled files, preprocessed once into model inputs, and the paper's augmentations.

Arrays: ``x`` float16 ``(N, C, S, S)`` in [-1, 1] (channels as in
:func:`tipd.preprocess.model_input`); ``y`` float32 ``(N, L)`` multi-label targets; ``primary``
int64 ``(N,)`` (-1 where a frame has no single class).
"""

from __future__ import annotations

import itertools
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from tipd.errors import UserError
from tipd.preprocess import model_input
from tipd.readers import SUFFIXES, read_any
from tipd.synth.generate import GENERATOR, drawn_as, generate
from tipd.synth.shards import iter_shards
from tipd.taxonomy import taxonomy

#: the input channels tipd trains with by default: the preprocessed heights, as in the paper
#: (``autocorrelation`` can be added with ``tipd train --channels``)
DEFAULT_CHANNELS: tuple[str, ...] = ("height",)


#: ``tipd train``'s synthetic sets: seed ``1000 × --seed`` plus these, so that no two sets share
#: a frame: training, validation (epochs, vote weights, thresholds), held-out test, and the
#: frames the stacked vote is fitted on
SEED_OFFSETS = {"train": 1, "validation": 2, "test": 3, "stack": 4}


@dataclass
class Dataset:
    """Preprocessed frames with their truth; ``labels`` names the columns of ``y``,
    ``channels`` the planes of ``x`` (see :func:`tipd.preprocess.model_input`)."""

    x: np.ndarray
    y: np.ndarray
    primary: np.ndarray
    labels: tuple[str, ...]
    source: str
    channels: tuple[str, ...] = DEFAULT_CHANNELS
    #: model-input pixel size of each frame (nm), ``(N,)``, where known (synthetic frames)
    pixel_nm: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, index: np.ndarray) -> Dataset:
        pixel_nm = None if self.pixel_nm is None else self.pixel_nm[index]
        return replace(
            self,
            x=self.x[index],
            y=self.y[index],
            primary=self.primary[index],
            pixel_nm=pixel_nm,
        )

    def columns(self, names: tuple[str, ...]) -> Dataset:
        """The same frames with only the label columns ``names`` (e.g. the H:Si 4 classes)."""
        idx = [self.labels.index(n) for n in names]
        return replace(self, y=self.y[:, idx], labels=names)


def _render_chunk(
    args: tuple[str, int, tuple[int, ...], int, tuple[str, ...]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    surface, seed, indices, size, channels = args
    xs, ys, ps, px = [], [], [], []
    # one BLAS thread per renderer: the workers already fill the cores, and OpenBLAS threads on
    # top of them ran the H:Si and generic renders 4× slower on 2 cores (and stalled 16 cores)
    with threadpool_limits(1):
        for i in indices:
            f = generate(surface, i, seed=seed, pixels=size)
            xs.append(model_input(f.heights_m, size, channels).astype(np.float16))
            ys.append(f.labels)
            ps.append(f.primary)
            px.append(f.scan_size_nm[0] / size)
    return np.stack(xs), np.stack(ys), np.array(ps), np.array(px)


def synthetic(
    surface: str,
    n: int,
    seed: int,
    size: int = 128,
    workers: int = 2,
    channels: tuple[str, ...] = DEFAULT_CHANNELS,
    version: int | None = None,
) -> Dataset:
    """``n`` frames of ``surface`` rendered with ``seed``, preprocessed: frames 0..n-1 or, with
    ``version`` (a generator version of the surface, as a model's manifest records it), the
    first ``n`` frames that this generator draws as that version did
    (:func:`tipd.synth.generate.drawn_as`): the frames a model of that version knows."""
    tax = taxonomy(surface)
    source = f"tipd synth {surface} seed {seed} frames 0..{n - 1}"
    if version is None or version == GENERATOR[surface]:
        indices = list(range(n))
    else:
        same = (i for i in itertools.count() if drawn_as(surface, version, seed, i))
        indices = list(itertools.islice(same, n))
        source = f"tipd synth {surface} seed {seed}: the first {n} frames generator {version} drew"
    step = 250
    jobs = [
        (surface, seed, tuple(indices[a : a + step]), size, channels) for a in range(0, n, step)
    ]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_render_chunk, jobs))
    else:
        parts = [_render_chunk(j) for j in jobs]
    return Dataset(
        x=np.concatenate([p[0] for p in parts]),
        y=np.concatenate([p[1] for p in parts]).astype(np.float32),
        primary=np.concatenate([p[2] for p in parts]).astype(np.int64),
        labels=tax.labels,
        source=source,
        channels=channels,
        pixel_nm=np.concatenate([p[3] for p in parts]),
    )


def from_shards(
    directory: Path, size: int = 128, channels: tuple[str, ...] = DEFAULT_CHANNELS
) -> Dataset:
    """Frames from ``tipd synth --out`` shards, preprocessed to ``size``."""
    from tipd.synth.shards import read_manifest

    manifest = read_manifest(directory)
    xs, ys, ps = [], [], []
    for shard in iter_shards(directory):
        xs.append(
            np.stack([model_input(h, size, channels) for h in shard.heights]).astype(np.float16)
        )
        ys.append(shard.labels)
        ps.append(shard.primary)
    return Dataset(
        np.concatenate(xs),
        np.concatenate(ys).astype(np.float32),
        np.concatenate(ps).astype(np.int64),
        tuple(manifest["labels"]),
        str(directory),
        channels,
    )


class LabelFolderError(UserError, ValueError):
    """A folder of labelled scans whose sub-folders are not the taxonomy's classes."""


def from_folder(
    directory: Path,
    classes: tuple[str, ...],
    size: int = 128,
    channels: tuple[str, ...] = DEFAULT_CHANNELS,
) -> Dataset:
    """Real labelled scans: one sub-folder per class name, any format the readers take.

    Files that cannot be read are skipped with a message on stderr; sub-folders whose names
    are not classes raise :class:`LabelFolderError`.
    """
    import sys

    unknown = [p.name for p in directory.iterdir() if p.is_dir() and p.name not in classes]
    if unknown:
        raise LabelFolderError(
            f"{directory}: sub-folders {unknown} are not classes of this taxonomy; "
            f"name them {', '.join(classes)}"
        )
    xs, ps = [], []
    for k, cls in enumerate(classes):
        folder = directory / cls
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in SUFFIXES:
                continue
            try:
                frame = read_any(path)
            except ValueError as exc:
                print(f"skipped: {exc}", file=sys.stderr)
                continue
            xs.append(model_input(frame.data, size, channels).astype(np.float16))
            ps.append(k)
    if not xs:
        raise ValueError(f"{directory}: no readable scans in class sub-folders {list(classes)}")
    primary = np.array(ps, dtype=np.int64)
    y = np.zeros((len(ps), len(classes)), dtype=np.float32)
    y[np.arange(len(ps)), primary] = 1
    return Dataset(np.stack(xs), y, primary, classes, str(directory), channels)


def class_weights(y: np.ndarray) -> np.ndarray:
    """Per-label positive weights ∝ 1/frequency (the paper's weighting), shape ``(L,)``:
    ``(negatives / positives)`` per column, clipped to [0.2, 50]."""
    pos = y.sum(axis=0)
    neg = len(y) - pos
    out: np.ndarray = np.clip(neg / np.maximum(pos, 1), 0.2, 50.0).astype(np.float32)
    return out


def autocorrelation(u: torch.Tensor) -> torch.Tensor:
    """:func:`tipd.preprocess.autocorrelation` of a batch of model inputs ``(N, S, S)``, in
    torch (on the batch's device), shape ``(N, S, S)``."""
    s = u.shape[-1]
    a = u - u.mean(dim=(1, 2), keepdim=True)
    power = torch.fft.rfft2(a, s=(2 * s, 2 * s)).abs() ** 2
    ac = torch.fft.fftshift(torch.fft.irfft2(power, s=(2 * s, 2 * s)), dim=(1, 2))
    centre = ac[:, s, s][:, None, None]
    ac = ac[:, s // 2 : s // 2 + s, s // 2 : s // 2 + s] / torch.where(centre > 0, centre, 1.0)
    out: torch.Tensor = torch.where(centre > 0, torch.sign(ac) * torch.sqrt(ac.abs()), 0.0)
    return out


def augment(
    x: torch.Tensor,
    flips_only: torch.Tensor,
    generator: torch.Generator,
    rotate: bool,
    noise: float = 0.08,
    channels: tuple[str, ...] = DEFAULT_CHANNELS,
) -> torch.Tensor:
    """The paper's augmentations on a batch ``(N, C, S, S)`` whose planes are ``channels``.
    Random numbers come from ``generator`` on its own device (keep it on the batch's device:
    a GPU batch then needs no host round trip).

    The heights are augmented; an ``autocorrelation`` plane is computed again from the
    augmented heights, as the daemon computes it from the frame it sees (moving it like an
    image would pan its zero shift off the centre, which no frame's autocorrelation does).

    Every frame: random horizontal and vertical flips and Gaussian noise (σ up to ``noise``).
    Frames not marked ``flips_only`` (bool ``(N,)``, the tip-change frames) are also panned and
    cropped (zoom 0.75–1) and, with ``rotate``, rotated by 0–360° (zoomed in enough that no
    corner leaves the frame). Rotation is off for synthetic data by default: the generator
    already draws the sample orientation over 0–360°, and rotating a flattened image would turn
    its horizontal scan artefacts in directions no scan produces.
    """
    if x.shape[1] != len(channels):
        raise ValueError(f"a batch of {x.shape[1]} planes, but channels {list(channels)}")
    if "autocorrelation" in channels:
        if "height" not in channels:
            raise ValueError("the autocorrelation is recomputed from the heights: add 'height'")
        h = channels.index("height")
        heights = augment(x[:, h : h + 1], flips_only, generator, rotate, noise)
        ac = autocorrelation(heights[:, 0])[:, None]
        return torch.cat([heights if c == "height" else ac for c in channels], dim=1)
    n = x.shape[0]
    dev = x.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device=generator.device).to(dev)

    sx = torch.where(rand(n) < 0.5, -1.0, 1.0)
    sy = torch.where(rand(n) < 0.5, -1.0, 1.0)
    if rotate:
        angle = rand(n) * 2 * math.pi
        zoom = 0.6 + 0.1 * rand(n)  # ≤ 1/√2 so the rotated window stays inside
    else:
        angle = torch.zeros(n, device=dev)
        zoom = 0.75 + 0.25 * rand(n)
    keep = flips_only.to(dev)
    zoom = torch.where(keep, torch.ones_like(zoom), zoom)
    angle = torch.where(keep, torch.zeros_like(angle), angle)
    reach = 1 - zoom * (torch.abs(torch.cos(angle)) + torch.abs(torch.sin(angle)))
    pan = (rand(n, 2) * 2 - 1) * reach.clamp(min=0)[:, None]
    cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
    theta = torch.stack(
        [torch.stack([cos * sx, -sin, pan[:, 0]], 1), torch.stack([sin, cos * sy, pan[:, 1]], 1)], 1
    )
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    out = torch.nn.functional.grid_sample(
        x, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )
    sigma = rand(n, 1, 1, 1) * noise
    noise_t = torch.randn(x.shape, generator=generator, device=generator.device).to(dev) * sigma
    result: torch.Tensor = (out + noise_t).clamp(-1.5, 1.5)
    return result

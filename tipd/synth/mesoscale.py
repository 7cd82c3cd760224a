"""Frames of 25–500 nm, where the lattice is not resolved: terraces and step bunches, islands
and vacancy islands of random shape, granular films, rough amorphous ground, and adsorbates.

This is the half of the generic model's training frames that looks like most real survey
scans (``docs/synthetic-frames.md``). Here a tip shows itself by how it draws edges and small
things, not atoms: a sharp tip draws a step edge within a pixel and adsorbates as dots, a blunt
one smears both over several pixels, a double tip draws every edge and dot twice, a few pixels
to tens of pixels apart.

The surface is a height map (nm) on a regular grid of one frame pixel that covers the frame
with a margin for drift and ghost apexes, built by the pure functions below from white noise
(``rng``), plus adsorbates as point features. :class:`MesoSample` renders it through one apex
as :class:`tipd.synth.surfaces.Sample` does (same signature), so
:func:`tipd.synth.imaging.image` combines apexes, and tip changes and visibility checks work on
it unchanged.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
from scipy import fft, ndimage
from scipy.spatial import cKDTree

from tipd.synth.artefacts import add_spikes, pink_noise
from tipd.synth.generic import TipBands
from tipd.synth.geometry import ScanGrid
from tipd.synth.imaging import VISIBLE_NM, image, visible_difference
from tipd.synth.surfaces import (
    FeatureKind,
    Features,
    Sample,
    Steps,
    SurfaceParams,
    _splat,
)
from tipd.synth.tip import Tip

#: scan widths of mesoscale frames (nm), drawn log-uniform
SCAN_NM = (25.0, 500.0)
#: the surfaces drawn and how often
KINDS = ("terraces", "islands", "grains", "rough")
KIND_P = (0.35, 0.35, 0.15, 0.15)
#: frame pixels per lattice-spacing-like length ``a`` of :func:`tipd.synth.generic.truth`: a
#: tip is blunt from ``generic.BLUNT`` a = 0.7 px of σ (sharp tips stay below 0.4 px, blunt
#: ones above 1)
A_PIXELS = 2.0


# --------------------------------------------------------------------------- random fields


def gaussian_field(shape: tuple[int, int], rng: np.random.Generator, corr_px: float) -> np.ndarray:
    """White noise smoothed by a Gaussian of σ ``corr_px`` (pixels), scaled to zero mean and unit
    standard deviation; shape ``shape``. Periodic (filtered in Fourier space)."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    fy = fft.fftfreq(shape[0])[:, None]
    fx = fft.rfftfreq(shape[1])[None, :]
    spectrum = fft.rfft2(noise) * np.exp(-2 * math.pi**2 * corr_px**2 * (fx**2 + fy**2))
    out: np.ndarray = fft.irfft2(spectrum, shape)
    out -= out.mean()
    scaled: np.ndarray = out / (out.std() + 1e-12)
    return scaled


def power_law_field(shape: tuple[int, int], rng: np.random.Generator, beta: float) -> np.ndarray:
    """A self-affine random surface: power spectrum ∝ f^-``beta`` (2 < beta < 4 for real rough
    films), zero mean and unit standard deviation; shape ``shape``."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    fy = fft.fftfreq(shape[0])[:, None]
    fx = fft.rfftfreq(shape[1])[None, :]
    f = np.hypot(fx, fy)
    f[0, 0] = np.inf
    out: np.ndarray = fft.irfft2(fft.rfft2(noise) * f ** (-beta / 2), shape)
    out -= out.mean()
    scaled: np.ndarray = out / (out.std() + 1e-12)
    return scaled


# --------------------------------------------------------------------------- surfaces


def terraces(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, width_nm: float, pixel_nm: float
) -> tuple[np.ndarray, dict[str, Any]]:
    """A vicinal surface: parallel steps of one height, at irregular spacings (bunched now and
    then), with edges that meander on the scale of the frame and fray on the scale of a pixel.
    ``x, y``: world coordinates (nm), shape ``(n, m)`` on a regular grid. Returns heights (nm)
    and the parameters drawn."""
    q = float(x[0, 1] - x[0, 0])
    angle = float(rng.uniform(0, 2 * math.pi))
    mean_nm = width_nm * float(math.exp(rng.uniform(math.log(0.08), math.log(1.5))))
    extent = float(np.ptp(x) + np.ptp(y))
    widths = mean_nm * rng.lognormal(0.0, 0.6, int(extent / mean_nm) * 3 + 4)
    bunched = rng.random() < 0.3
    if bunched:  # some terraces shrink to a few nm: steps run together in bunches
        narrow = rng.random(len(widths)) < 0.5
        widths[narrow] = rng.uniform(1.0, 3.0, int(narrow.sum())) * pixel_nm
    edges = np.cumsum(widths)
    edges -= edges[len(edges) // 2] + float(rng.uniform(0, mean_nm))
    meander = float(rng.uniform(0.0, 0.4)) * mean_nm
    fray = float(rng.uniform(0.0, 1.5)) * pixel_nm
    s = x * math.cos(angle) + y * math.sin(angle)
    s = s + meander * gaussian_field(x.shape, rng, float(rng.uniform(0.1, 0.4)) * width_nm / q)
    s = s + fray * gaussian_field(x.shape, rng, float(rng.uniform(0.5, 1.5)) * pixel_nm / q)
    height = float(rng.uniform(0.1, 0.4)) * float(rng.choice([-1.0, 1.0]))
    z = height * np.searchsorted(edges, s).astype(np.float64)
    return z, {"terrace_nm": mean_nm, "step_nm": height, "bunched": bunched, "angle": angle}


def islands(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, width_nm: float, pixel_nm: float
) -> tuple[np.ndarray, dict[str, Any]]:
    """Monolayer islands (or vacancy islands) of random shape covering 5–60 % of a terrace,
    with compact or fractal edges, and now and then a second layer on top. Arguments as
    :func:`terraces`."""
    q = float(x[0, 1] - x[0, 0])
    size_nm = width_nm * float(math.exp(rng.uniform(math.log(0.02), math.log(0.15))))
    field = gaussian_field(x.shape, rng, max(size_nm, 2 * pixel_nm) / q)
    ragged = float(rng.uniform(0.0, 0.6))  # fractal, dendritic edges
    field += ragged * gaussian_field(x.shape, rng, max(size_nm / 4, pixel_nm) / q)
    cover = float(rng.uniform(0.05, 0.6))
    level = float(np.quantile(field, 1 - cover))
    height = float(rng.uniform(0.1, 0.4))
    vacancies = rng.random() < 0.3
    z = height * (field > level)
    layers = 1
    if rng.random() < 0.3:
        z += height * (field > float(np.quantile(field, 1 - cover * rng.uniform(0.1, 0.4))))
        layers = 2
    if vacancies:
        z = -z
    return z, {
        "island_nm": size_nm,
        "cover": cover,
        "step_nm": height,
        "layers": layers,
        "vacancies": vacancies,
    }


def grains(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, width_nm: float, pixel_nm: float
) -> tuple[np.ndarray, dict[str, Any]]:
    """A granular film: Voronoi grains, each a dome of its own height, grain size 3–15 % of the
    frame. Arguments as :func:`terraces`."""
    size_nm = width_nm * float(math.exp(rng.uniform(math.log(0.03), math.log(0.15))))
    x0, y0 = float(x.min()), float(y.min())
    span = (float(np.ptp(x)), float(np.ptp(y)))
    n = int(span[0] * span[1] / size_nm**2) + 1
    seeds = np.column_stack([x0 + rng.uniform(0, span[0], n), y0 + rng.uniform(0, span[1], n)])
    dist, owner = cKDTree(seeds).query(np.column_stack([x.ravel(), y.ravel()]))
    relief = width_nm * float(rng.uniform(0.002, 0.01))  # grain heights, nm
    tops = relief * rng.uniform(0, 1, n)
    dome = relief * float(rng.uniform(0.2, 1.0))
    z = tops[owner] - dome * (dist / size_nm) ** 2
    return z.reshape(x.shape), {"grain_nm": size_nm, "relief_nm": relief}


def rough(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, width_nm: float, pixel_nm: float
) -> tuple[np.ndarray, dict[str, Any]]:
    """Amorphous or rough ground: a self-affine field of rms 0.03–0.6 % of the frame width.
    Arguments as :func:`terraces`."""
    beta = float(rng.uniform(2.0, 3.8))
    rms = width_nm * float(math.exp(rng.uniform(math.log(0.0003), math.log(0.006))))
    return rms * power_law_field(x.shape, rng, beta), {"beta": beta, "rms_nm": rms}


SURFACES = {"terraces": terraces, "islands": islands, "grains": grains, "rough": rough}


# --------------------------------------------------------------------------- the sample


class MesoSample(Sample):
    """A sample given as a height map (nm) on a regular world grid plus point features.

    ``z_nm`` has shape ``(n, m)``; pixel ``(i, j)`` lies at ``origin_nm + (j, i) * step_nm``
    (x along columns). Features (adsorbates) come from ``kinds`` at their densities, as on any
    :class:`~tipd.synth.surfaces.Sample`."""

    def __init__(
        self,
        z_nm: np.ndarray,
        origin_nm: tuple[float, float],
        step_nm: float,
        seed: int,
        kinds: tuple[FeatureKind, ...],
        tile_nm: float,
    ) -> None:
        flat = SurfaceParams(
            surface="generic",
            lattice_angle=0.0,
            steps=Steps(0.0, math.inf, 0.0, 0.0),
            herringbone=0.0,
            waves=0.0,
        )
        super().__init__(flat, seed, tile_nm=tile_nm, kinds=kinds)
        self.z_nm = z_nm
        self.origin_nm = origin_nm
        self.step_nm = step_nm
        self._blurred: dict[float, np.ndarray] = {}

    def blurred(self, sigma_nm: float) -> np.ndarray:
        """The height map seen through a Gaussian apex of σ ``sigma_nm`` (cached)."""
        key = round(sigma_nm / self.step_nm, 3)
        out = self._blurred.get(key)
        if out is None:
            out = ndimage.gaussian_filter(self.z_nm, key, mode="nearest") if key > 0 else self.z_nm
            self._blurred[key] = out
        return out

    def render(
        self,
        grid: ScanGrid,
        blur_nm: float,
        offset_nm: tuple[float, float] = (0.0, 0.0),
        features: Features | None = None,
    ) -> np.ndarray:
        """Heights (nm), shape ``(rows, cols)``, seen through one Gaussian apex of σ ``blur_nm``
        displaced by ``offset_nm``; each pixel also averages over itself (σ 0.35 pixel), as a
        scan read out at a coarser raster would."""
        pixel = grid.pixel_nm[0]
        sigma = math.hypot(blur_nm, 0.35 * pixel)
        x, y = grid.sample_xy(offset_nm)
        cols = (x - self.origin_nm[0]) / self.step_nm
        rows = (y - self.origin_nm[1]) / self.step_nm
        height: np.ndarray = ndimage.map_coordinates(
            self.blurred(sigma), [rows, cols], order=1, mode="nearest"
        )
        if features is None:
            features = self.features_near(grid)
        if len(features):
            height += _splat(grid, features, blur_nm, offset_nm)
        return height


def adsorbate_kinds(pixel_nm: float) -> tuple[FeatureKind, ...]:
    """Adsorbates and clusters at a frame pixel of ``pixel_nm``: single ones 0.1–0.6 nm high and
    0.5–2.5 px wide (never below 0.3 nm), clusters of 3–10 blobs of up to 1.5 nm within a few
    pixels."""
    w = (max(0.3, 0.5 * pixel_nm), max(0.6, 2.5 * pixel_nm))
    return (
        FeatureKind("adsorbate", 0.0, (0.1, 0.6), w),
        FeatureKind("cluster", 0.0, (0.2, 1.5), w, (3, 10), 4 * pixel_nm),
    )


def make_sample(
    rng: np.random.Generator,
    centre_nm: tuple[float, float],
    width_nm: float,
    pixels: int,
    margin_nm: float,
) -> tuple[MesoSample, dict[str, Any]]:
    """A random mesoscale sample around ``centre_nm`` for a frame ``width_nm`` wide at
    ``pixels`` px, with ``margin_nm`` beyond each edge of the frame. Returns the sample and a
    description of what was drawn."""
    pixel = width_nm / pixels  # also the step of the height map's grid
    n = math.ceil((width_nm + 2 * margin_nm) / pixel)
    origin = (centre_nm[0] - n * pixel / 2, centre_nm[1] - n * pixel / 2)
    axis = (np.arange(n) - n / 2) * pixel
    x, y = np.meshgrid(axis, axis)
    kind = str(rng.choice(KINDS, p=KIND_P))
    z, desc = SURFACES[kind](x, y, rng, width_nm, pixel)
    if kind in ("terraces", "islands") and rng.random() < 0.3:  # islands on terraces, or steps
        other = "islands" if kind == "terraces" else "terraces"
        z2, desc2 = SURFACES[other](x, y, rng, width_nm, pixel)
        z = z + z2
        desc = {**desc, other: desc2}
    ground = width_nm * float(math.exp(rng.uniform(math.log(1e-5), math.log(4e-4))))
    z = z + ground * power_law_field(x.shape, rng, float(rng.uniform(2.0, 3.5)))
    # most survey scans show a few adsorbates, some many: log-uniform 0.5–40 per frame
    per_frame = {
        "adsorbate": float(math.exp(rng.uniform(math.log(0.5), math.log(40)))),
        "cluster": float(rng.uniform(0, 3)),
    }
    kinds = tuple(
        replace(k, density=per_frame[k.name] / width_nm**2) for k in adsorbate_kinds(pixel)
    )
    sample = MesoSample(z, origin, pixel, int(rng.integers(2**31)), kinds, tile_nm=width_nm)
    return sample, {"surface": kind, "ground_nm": ground, "adsorbates": per_frame, **desc}


# --------------------------------------------------------------------------- tips


#: survey-frame tips, in frame pixels: sharp σ 0.05–0.4 px, blunt 1–4 px, ghosts 3–20 px away
#: (never closer than 1 nm), up to 0.05 nm recessed
SURVEY_TIPS = TipBands((0.05, 0.4), (1.0, 4.0), (3.0, 20.0), 1.0, (0.0, 0.05), (0.8, 3.0))


def as_it_shows(sample: Sample, grid: ScanGrid, tip: Tip, blunt_nm: float) -> Tip:
    """``tip`` as the frame shows it over ``grid``: a main apex of σ ≥ ``blunt_nm`` that blurs
    nothing visibly (a smooth surface looks the same through a sharp tip) becomes the sharpest
    survey apex, so that the labels say what the frame shows."""
    main = tip.main
    if main.radius_nm < blunt_nm:
        return tip
    sharp = replace(main, radius_nm=SURVEY_TIPS.sharp[1] * grid.pixel_nm[0])
    features = sample.features_near(grid, margin_nm=6.0)
    seen = image(sample, grid, Tip((main,)), features)
    if visible_difference(seen, image(sample, grid, Tip((sharp,)), features)) > VISIBLE_NM:
        return tip
    return Tip(tuple(sharp if a is main else a for a in tip.apexes))


#: the largest ghost offset of :data:`SURVEY_TIPS`, in frame pixels (for the sample's margin)
GHOST_MAX_PX = SURVEY_TIPS.ghost_distance[1]


# --------------------------------------------------------------------------- scan defects


def streaks(z: np.ndarray, rng: np.random.Generator, step_nm: float) -> dict[str, Any]:
    """Add, in place, the short streaks survey scans show on any tip (a molecule dragged for a
    few pixels, a noisy moment of the junction): a Poisson number, of mean 0–8, of 1–24 pixels
    along a line, of 0.3–1.5 times a step height ``step_nm`` (nm). Returns what was drawn."""
    n = int(rng.poisson(rng.uniform(0, 8)))
    amplitude = abs(step_nm) * float(rng.uniform(0.3, 1.5))
    add_spikes(z, rng, n, amplitude, longest=24)
    return {"streaks": n, "streak_nm": amplitude}


def scan_noise(z: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    """Add, in place, the noise of a fast survey scan: white and 1/f noise along the scan's time
    series, each of σ log-uniform 0.3–20 pm (real 25–100 nm scans in reach show 0.4–30 pm
    between neighbouring pixels), on top of the quiet junction's noise every frame has.
    Returns what was drawn."""
    lo, hi = math.log(3e-4), math.log(0.02)
    white = float(math.exp(rng.uniform(lo, hi)))
    pink = float(math.exp(rng.uniform(lo, hi)))
    z += white * rng.standard_normal(z.shape) + pink_noise(z.shape, rng, pink)
    return {"survey_white_nm": white, "survey_pink_nm": pink}


def flicker(
    sample: Sample, grid: ScanGrid, z: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, list[list[int]]]:
    """An unstable tip: 2–6 bands of 1–12 lines in which the apex briefly changes (imaging
    through a blunter apex, σ 1–4 pixels, and 0.05–0.5 nm higher or lower) before it returns.
    Returns the new heights (nm) and the bands ``[first row, last row + 1]``."""
    rows = z.shape[0]
    pixel = grid.pixel_nm[0]
    out = z.copy()
    bands = []
    for _ in range(int(rng.integers(2, 7))):
        a = int(rng.integers(0, rows - 1))
        b = min(rows, a + int(rng.integers(1, 13)))
        blur = float(rng.uniform(1.0, 4.0)) * pixel
        jump = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.05, 0.5))
        out[a:b] = sample.render(grid.rows(a, b), blur) + jump
        bands.append([a, b])
    return out, bands

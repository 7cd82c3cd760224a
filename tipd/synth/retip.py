"""Real surfaces, known tips: a real scan imaged again through a simulated tip.

A good real scan is close to the surface itself. Imaging it again through a tip of known shape
gives a frame of that real surface with a known tip fault, on a surface no generator drew.
The imaging is geometric tip convolution (Villarrubia, J. Res. NIST 102, 425 (1997); Gwyddion's
"tip convolution"): the tip's lowest point touches the surface, so at tip position ``x``

    image(x) = max_u [ surface(x + u) − tip(u) ]

a grey dilation of the surface by the tip's shape ``tip(u) ≥ 0`` (``tip(0) = 0`` at the apex).

* a **blunt** tip is one wide paraboloid apex, ``tip(u) = |u|² / 2R``: protrusions widen and
  take the apex's rounded cap, holes narrow;
* a **double** tip is two apexes: the second ``offset`` away and ``retracted`` higher, so the
  image is ``max(surface(x), surface(x + offset) − retracted)``: whatever stands out by more
  than ``retracted`` is imaged twice, the second time ``−offset`` away;
* a **tip change** switches from one tip to another at a scan line, with or without a jump in
  the tip's length (every later line sits higher or lower).

Pure functions; heights in metres, ``(rows, cols)``, row 0 scanned first; lateral sizes in nm
(``pixel_nm`` is ``(dx, dy)``, nm per pixel along a line and between lines). The draws
(:func:`draw_double`, :func:`draw_blunt`, :func:`draw_change`) set each tip relative to the
scan's pixel size and height range, so that the fault shows on any surface at any scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tipd.preprocess import flatten_lines

#: lateral reach of an apex's paraboloid, in pixels each way (beyond it the cap is far below)
MAX_REACH_PX = 48


@dataclass(frozen=True)
class Apex:
    """One apex: ``offset_nm`` (dx, dy) from the tip's reference apex, ``retracted_nm`` above
    it (≥ 0), and its radius of curvature ``radius_nm`` (0: a point)."""

    offset_nm: tuple[float, float] = (0.0, 0.0)
    retracted_nm: float = 0.0
    radius_nm: float = 0.0


@dataclass(frozen=True)
class SimTip:
    """A tip of one or more apexes; ``kind`` names it (sharp, double, blunt)."""

    apexes: tuple[Apex, ...] = field(default_factory=lambda: (Apex(),))
    kind: str = "sharp"


SHARP = SimTip()


def _shifted(z: np.ndarray, dr: int, dc: int) -> np.ndarray:
    """``out[r, c] = z[r + dr, c + dc]``, −inf where that falls outside ``z``."""
    rows, cols = z.shape
    out = np.full(z.shape, -np.inf)
    r0, r1 = max(0, -dr), min(rows, rows - dr)
    c0, c1 = max(0, -dc), min(cols, cols - dc)
    if r1 > r0 and c1 > c0:
        out[r0:r1, c0:c1] = z[r0 + dr : r1 + dr, c0 + dc : c1 + dc]
    return out


def _dilate_1d(z: np.ndarray, cap_m: np.ndarray, axis: int) -> np.ndarray:
    """``max_k z[.. + k ..] − cap_m[|k|]`` along ``axis`` (k from −K to K, K = len(cap_m) − 1)."""
    out = z.copy()
    for k in range(1, len(cap_m)):
        for s in (k, -k):
            shifted = _shifted(z, s, 0) if axis == 0 else _shifted(z, 0, s)
            np.maximum(out, shifted - cap_m[k], out=out)
    return out


def dilate_paraboloid(z: np.ndarray, pixel_nm: tuple[float, float], radius_nm: float) -> np.ndarray:
    """The grey dilation of ``z`` (m) by a paraboloid apex of ``radius_nm``: ``max_u z(x + u)
    − |u|² / 2R``, separable into one pass along x and one along y. A radius of 0 (a point
    apex) returns ``z``."""
    z = np.asarray(z, dtype=np.float64)
    if radius_nm <= 0:
        return z.copy()
    span = float(np.nanmax(z) - np.nanmin(z)) if np.isfinite(z).any() else 0.0
    out = z
    for axis, step in ((1, pixel_nm[0]), (0, pixel_nm[1])):
        # the cap drops below the whole height range beyond this many pixels: they cannot win
        reach = min(MAX_REACH_PX, int(math.sqrt(2 * radius_nm * span * 1e9) / step) + 1)
        reach = min(reach, out.shape[axis] - 1)
        k = np.arange(reach + 1) * step
        cap_m = k**2 / (2 * radius_nm) * 1e-9
        # the surface goes on beyond the scan: mirrored, so the edges are imaged as the middle
        pad = [(0, 0), (0, 0)]
        pad[axis] = (reach, reach)
        wide = _dilate_1d(np.pad(out, pad, mode="reflect"), cap_m, axis)
        out = (
            wide[reach : reach + out.shape[0]]
            if axis == 0
            else wide[:, reach : reach + out.shape[1]]
        )
    return out


def image_through(surface: np.ndarray, pixel_nm: tuple[float, float], tip: SimTip) -> np.ndarray:
    """``surface`` (m, ``(rows, cols)``) imaged through ``tip``: the upper envelope of its
    apexes' images, each the surface dilated by the apex's paraboloid, shifted by its offset
    (whole pixels) and lowered by its retraction. Where an offset apex would reach beyond the
    scan, only the others image."""
    out = np.full(np.shape(surface), -np.inf)
    for apex in tip.apexes:
        seen = dilate_paraboloid(surface, pixel_nm, apex.radius_nm)
        dc = round(apex.offset_nm[0] / pixel_nm[0])
        dr = round(apex.offset_nm[1] / pixel_nm[1])
        np.maximum(out, _shifted(seen, dr, dc) - apex.retracted_nm * 1e-9, out=out)
    return out


def image_with_change(
    surface: np.ndarray,
    pixel_nm: tuple[float, float],
    before: SimTip,
    after: SimTip,
    row: int,
    jump_nm: float = 0.0,
) -> np.ndarray:
    """``surface`` imaged through ``before`` up to scan line ``row`` and through ``after`` from
    it on, every line from ``row`` on ``jump_nm`` higher (the tip got shorter: negative; or
    longer)."""
    out = image_through(surface, pixel_nm, before)
    out[row:] = image_through(surface, pixel_nm, after)[row:] + jump_nm * 1e-9
    return out


# ------------------------------------------------------------------------------- draws


def height_range_m(z: np.ndarray) -> float:
    """The scan's height range (m): the 2–98 % percentile spread of its line-flattened
    heights, the scale a tip's retraction and cap are set against."""
    flat = flatten_lines(z)
    ok = flat[np.isfinite(flat)]
    if ok.size == 0:
        return 1e-10
    lo, hi = np.percentile(ok, [2, 98])
    return float(max(hi - lo, 1e-12))


def pixel_noise_m(z: np.ndarray) -> float:
    """The scan's white noise (m): the robust spread of the differences between neighbouring
    pixels along a line, over √2."""
    d = np.diff(flatten_lines(z), axis=1)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2))


def draw_double(rng: np.random.Generator, z: np.ndarray, pixel_nm: tuple[float, float]) -> SimTip:
    """A double tip for scan ``z``: a second point apex 3–25 pixels away in any direction,
    retracted by 0–40 % of the scan's height range (so part of the surface shows twice)."""
    distance_px = math.exp(rng.uniform(math.log(3), math.log(25)))
    angle = rng.uniform(0, 2 * math.pi)
    retracted = rng.uniform(0.0, 0.4) * height_range_m(z) * 1e9
    offset = (
        distance_px * pixel_nm[0] * math.cos(angle),
        distance_px * pixel_nm[1] * math.sin(angle),
    )
    return SimTip((Apex(), Apex(offset, retracted)), "double")


def blunt_radius_nm(z: np.ndarray, pixel_nm: tuple[float, float], width_px: float) -> float:
    """The radius (nm) of a paraboloid apex whose cap falls by the scan's height range over
    ``width_px`` pixels: ``R = (width · dx)² / 2H``."""
    return (width_px * pixel_nm[0]) ** 2 / (2 * height_range_m(z) * 1e9)


def draw_blunt(rng: np.random.Generator, z: np.ndarray, pixel_nm: tuple[float, float]) -> SimTip:
    """A blunt tip for scan ``z``: one paraboloid apex whose cap falls by the scan's height
    range over 4–16 pixels."""
    width = math.exp(rng.uniform(math.log(4), math.log(16)))
    return SimTip((Apex(radius_nm=blunt_radius_nm(z, pixel_nm, width)),), "blunt")


@dataclass(frozen=True)
class Change:
    """A tip change for one scan: from ``before`` to ``after`` at scan line ``row``, the
    lines after it ``jump_nm`` higher."""

    before: SimTip
    after: SimTip
    row: int
    jump_nm: float


def draw_change(rng: np.random.Generator, z: np.ndarray, pixel_nm: tuple[float, float]) -> Change:
    """A tip change for scan ``z``: from the sharp tip to a double or blunt one at a line in the
    middle 60 % of the frame, with a jump in tip length (±10–60 % of the height range) half the
    time."""
    rows = z.shape[0]
    after = (draw_double if rng.random() < 0.5 else draw_blunt)(rng, z, pixel_nm)
    row = int(rng.integers(int(0.2 * rows), int(0.8 * rows)))
    jump = 0.0
    if rng.random() < 0.5:
        jump = float(rng.choice([-1, 1]) * rng.uniform(0.1, 0.6) * height_range_m(z) * 1e9)
    return Change(SHARP, after, row, jump)


def with_noise(rng: np.random.Generator, image: np.ndarray, sigma_m: float) -> np.ndarray:
    """``image`` with white noise of ``sigma_m`` (m) added: the noise of a scan comes from the
    feedback and the electronics, and a new tip does not take it away."""
    return image + rng.normal(0.0, sigma_m, image.shape)

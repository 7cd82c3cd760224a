"""A tip change, told from the surface: the tip images differently from one line on.

A tip change happens between two scan lines, and every line after it is imaged by another
apex: the image's resolution and texture change there (a blunter apex smooths every line after
it, a second apex adds its ghosts), and often its height jumps too (:mod:`tipd.scanlines`).
A step that runs along the fast-scan direction moves the height of the lines after it as a tip
change does, but leaves their texture as it was; noise and a few streaky lines change it for a
few lines only.

The test, on the whole frame's heights (read at most :data:`MAX_COLS` columns wide): each line's
*texture*, the mean absolute second difference along it (how sharply the
line bends from pixel to pixel: resolution and noise together); then for every boundary, the
median log texture of :data:`BLOCK` lines after against :data:`BLOCK` lines before, in robust
standard deviations of all boundaries' differences; the largest is the texture change, at its
row. Pure functions; heights in any unit, NaN for lines not scanned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tipd.preprocess import robust_spread

#: lines on each side of a boundary compared
BLOCK = 12
#: the most columns read (wider frames are read at every n-th column)
MAX_COLS = 256
#: the share of a frame's first lines not tested (piezo creep bends them on any tip)
CREEP = 0.04


@dataclass(frozen=True)
class TextureChange:
    """The largest change of line texture in a frame: at frame row ``row`` (the first line
    after it), by ``sigma`` robust standard deviations, the lines after it ``ratio`` times as
    sharp as those before."""

    sigma: float
    row: int
    ratio: float

    def reason(self) -> str:
        change = "sharper" if self.ratio >= 1 else "smoother"
        return (
            f"from line {self.row} on, every line is {max(self.ratio, 1 / self.ratio):.2g}× "
            f"{change} ({self.sigma:.1f} σ)"
        )


def line_texture(z: np.ndarray) -> np.ndarray:
    """Each line's texture, ``(rows,)``: the mean absolute second difference along it (a line
    offset or tilt does not change it; NaN for lines not fully scanned)."""
    z = np.asarray(z, dtype=np.float32)
    d2 = np.abs(z[:, 2:] - 2 * z[:, 1:-1] + z[:, :-2])
    out: np.ndarray = d2.mean(axis=1, dtype=np.float64)
    return out


def texture_change(z: np.ndarray, block: int = BLOCK) -> TextureChange | None:
    """The :class:`TextureChange` of frame ``z`` ``(rows, cols)``, or None when too few lines
    were scanned (fewer than ``3 · block``)."""
    z = np.asarray(z)
    step = max(1, math.ceil(z.shape[1] / MAX_COLS))
    scanned = np.flatnonzero(np.isfinite(z[:, ::step]).any(axis=1))
    if len(scanned) < 3 * block:
        return None
    tex = line_texture(z[scanned[0] : scanned[-1] + 1, ::step])
    ok = np.isfinite(tex) & (tex > 0)
    floor = float(np.median(tex[ok])) * 1e-3 if ok.any() else 1e-30
    log_t = np.log(np.where(ok, tex, floor) + floor)
    windows = sliding_window_view(log_t, block)  # (n - block + 1, block)
    med = np.median(windows, axis=1)
    diff = med[block:] - med[:-block]  # boundary before index k + block
    if diff.size < 3:
        return None
    centre, spread = robust_spread(diff)
    spread = spread if spread > 0 else float(np.abs(diff - centre).max()) / 100 or 1.0
    sigma = np.abs(diff - centre) / spread
    skip = math.ceil(CREEP * len(log_t))
    sigma[: max(0, skip - block)] = 0.0
    k = int(np.argmax(sigma))
    return TextureChange(float(sigma[k]), int(scanned[k + block]), float(math.exp(diff[k])))

"""The part of a frame the physical tests read: its line-flattened heights, at its own pixels,
cut to a central square of at most :data:`SIDE` pixels (a tip fault shows everywhere, so a
part shows it as well as the whole, at a fraction of the cost), with its noise and height
range."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tipd.preprocess import flatten_lines

#: the largest side (pixels) of the square the tests read
SIDE = 128
#: the smallest side (pixels) a frame needs for the tests to read it
SMALLEST = 64


@dataclass(frozen=True)
class View:
    """``z``: line-flattened heights (m) ``(rows, cols)``, no NaN; ``pixel_nm`` (dx, dy);
    ``noise_m``: white noise between neighbouring pixels; ``range_m``: the 2–98 % height
    spread."""

    z: np.ndarray
    pixel_nm: tuple[float, float]
    noise_m: float
    range_m: float

    @property
    def usable(self) -> bool:
        """Enough scanned pixels with any relief to test (:data:`SMALLEST` square at least):
        on fewer, the statistics of the tests are the noise's."""
        return min(self.z.shape) >= SMALLEST and self.range_m > 0


def noise(flat: np.ndarray) -> float:
    """White noise (m) of line-flattened heights: the robust spread of the differences between
    neighbouring pixels along a line, over √2 (surface slopes barely move a median)."""
    d = np.diff(flat[::2], axis=1).ravel()  # every other line is plenty for a median
    d = d[np.isfinite(d)]
    if d.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2))


def view(z: np.ndarray, pixel_nm: tuple[float, float], side: int = SIDE) -> View:
    """The :class:`View` of heights ``z`` (m, ``(rows, cols)``, NaN for lines not scanned) with
    pixels of ``pixel_nm``: the central ``side`` square of its scanned lines, flattened."""
    z = np.asarray(z)
    probe = z[:, :: max(1, z.shape[1] // 16)]  # a line not scanned is NaN all along
    scanned = np.flatnonzero(np.isfinite(probe).all(axis=1))
    if scanned.size == 0:
        return View(np.zeros((0, 0)), pixel_nm, 0.0, 0.0)
    lines = z[scanned[0] : scanned[-1] + 1]
    rows, cols = lines.shape
    r0, c0 = max(0, (rows - side) // 2), max(0, (cols - side) // 2)
    flat = flatten_lines(lines[r0 : r0 + side, c0 : c0 + side])
    if not np.isfinite(flat).all():  # a line missing inside the scanned block
        flat = np.where(np.isfinite(flat), flat, 0.0)
    lo, hi = np.percentile(flat[::2, ::2], [2, 98])
    return View(flat, pixel_nm, noise(flat), float(hi - lo))

"""Line-by-line evidence of a tip change, which needs no knowledge of the surface.

A tip change happens between two scan lines: the apex gains or loses an atom, and from that
line on every pixel is imaged through a different tip, usually at a different height. Whatever
the sample, the lines after the change then sit higher or lower than the lines before, and stay
there. Topography does not do that: a step edge or an island moves only the pixels it crosses,
and drift, creep and tilt move whole lines smoothly.

The test (:func:`tip_change_evidence`), on the raw heights:

1. for every boundary ``k`` between lines, the median over ``w`` lines after and ``w`` lines
   before, pixel by pixel (one or two streaky lines in a block change neither median);
2. the jump at ``k``: the median over columns of the difference (a feature crossing some
   columns moves few of them);
3. the jump in robust standard deviations of all the frame's jumps (1.4826 · MAD over ``k``),
   so that a frame with noisy lines needs a larger jump; the first :data:`CREEP` of the lines,
   bent by piezo creep on any tip, are not tested;
4. the largest jump of the frame as a probability, by a logistic curve in its logarithm fitted
   on labelled synthetic frames of every kind the generic model knows (tip changes against
   good, double, blunt tips; corrupted frames left out, their jumps are not the tip's):
   ``bench/scanlines.py`` fits it again and prints the coefficients.

All functions are pure; heights in any unit, ``(rows, cols)``, NaN for lines not scanned.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tipd.preprocess import robust_spread, row_median

#: lines on each side of a boundary whose pixel-wise median is compared
BLOCK = 5
#: logistic curve ``p = 1 / (1 + exp(-(A + B · ln jump)))`` of the largest jump (robust σ),
#: fitted on 800 synthetic generic frames (``bench/scanlines.py``: seed 6, 128 and 256 px)
LOGIT_A = -6.03
LOGIT_B = 3.47
#: the smallest jump (σ) put into the logarithm: below it a frame has no jump at all
FLOOR = 0.5
#: share of a frame's first lines whose boundaries are not tested: piezo creep bends the first
#: lines of every scan steeply, on good tips too
CREEP = 0.04
#: the most lines and columns looked at; longer frames are read at every n-th line or column
MAX_ROWS = 512
MAX_COLS = 128


@dataclass(frozen=True)
class TipChangeEvidence:
    """What the scan lines say: ``probability`` 0–1 that a tip change happened, at frame row
    ``row`` (the first line after it; None when too few lines were scanned), where the lines
    jump by ``jump_sigma`` robust standard deviations."""

    probability: float
    row: int | None
    jump_sigma: float


NONE = TipChangeEvidence(0.0, None, 0.0)


def median5(
    a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray, e: np.ndarray
) -> np.ndarray:
    """Element-wise median of five arrays of one shape, by comparisons only (a few times
    faster than ``np.median`` over a new axis): med3(e, max(min(a,b), min(c,d)),
    min(max(a,b), max(c,d)))."""
    f = np.maximum(np.minimum(a, b), np.minimum(c, d))
    g = np.minimum(np.maximum(a, b), np.maximum(c, d))
    out: np.ndarray = np.maximum(np.minimum(e, f), np.minimum(np.maximum(e, f), g))
    return out


def remove_slope(z: np.ndarray) -> np.ndarray:
    """``z`` ``(rows, cols)`` minus the straight line that best fits its line means along y
    (the slow-scan tilt of the sample), float64. A slope along y would otherwise tilt every
    block of lines and blur the pixel-wise medians of :func:`block_medians`."""
    z = np.asarray(z, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # lines with no finite pixel
        means = np.nanmean(z, axis=1)
    ok = np.isfinite(means)
    if ok.sum() < 2:
        return z
    y = np.arange(z.shape[0], dtype=np.float64)
    slope, offset = np.polyfit(y[ok], means[ok], 1)
    out: np.ndarray = z - (slope * y + offset)[:, None]
    return out


def block_medians(z: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """Pixel-wise median of every run of ``block`` consecutive lines of ``z`` ``(rows,
    cols)``: entry ``i`` is the median of lines ``i … i+block-1``, shape
    ``(rows - block + 1, cols)``."""
    n = z.shape[0] - block + 1
    if block == 5:
        return median5(*(z[i : i + n] for i in range(5)))
    out: np.ndarray = np.median(sliding_window_view(z, block, axis=0), axis=-1)
    return out


def line_jumps_sigma(z: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """The jump in height at every boundary between lines, in robust standard deviations of
    all the frame's jumps: entry ``j`` is the boundary before row ``j + block`` of ``z``
    (``rows - 2·block + 1`` entries; empty when fewer than ``2·block + 3`` lines).

    The jump at boundary ``k`` is the median over columns of (pixel-wise median of lines
    ``k … k+block-1``) − (pixel-wise median of lines ``k-block … k-1``), after
    :func:`remove_slope` (a tilt along x cancels in the difference). Rows that are all NaN
    (not scanned yet) should be left out first; see :func:`tip_change_evidence`."""
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] < 2 * block + 3:
        return np.zeros(0)
    blocks = block_medians(remove_slope(z), block)
    diff = blocks[block:] - blocks[:-block]
    if np.isfinite(diff).all():
        jumps = row_median(diff)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # lines with no finite pixel
            jumps = np.nanmedian(diff, axis=1)
    ok = np.isfinite(jumps)
    if ok.sum() < 3:
        return np.zeros(0)
    centre, spread = robust_spread(jumps[ok])
    if not spread > 0:  # a perfectly regular frame: any jump stands out completely
        spread = float(np.abs(jumps[ok] - centre).max()) / 100 or 1.0
    out: np.ndarray = np.where(ok, (jumps - centre) / spread, 0.0)
    return out


def probability(jump_sigma: float) -> float:
    """The logistic curve of :data:`LOGIT_A`, :data:`LOGIT_B`: the probability of a tip
    change given the largest line jump of a frame (robust σ)."""
    t = LOGIT_A + LOGIT_B * math.log(max(jump_sigma, FLOOR))
    return 1.0 / (1.0 + math.exp(-t))


def tip_change_evidence(z: np.ndarray, block: int = BLOCK) -> TipChangeEvidence:
    """The scan lines' evidence of a tip change in one frame ``z`` ``(rows, cols)``, heights in
    any unit, row 0 scanned first, NaN for lines not scanned. Frames longer than
    :data:`MAX_ROWS` lines are read every n-th line (a jump persists, so it survives)."""
    z = np.asarray(z)
    if z.ndim != 2:
        return NONE
    scanned = np.flatnonzero(np.isfinite(z).any(axis=1))
    if len(scanned) < 2 * block + 3:
        return NONE
    row_step = max(1, math.ceil(len(scanned) / MAX_ROWS))
    col_step = max(1, math.ceil(z.shape[1] / MAX_COLS))
    rows = scanned[::row_step]
    sigma = line_jumps_sigma(z[:, ::col_step][rows], block)
    skip = math.ceil(CREEP * len(rows))  # boundaries before row ``rows[skip + block]``
    if sigma.size <= skip:
        return NONE
    j = skip + int(np.argmax(np.abs(sigma[skip:])))
    jump = float(abs(sigma[j]))
    return TipChangeEvidence(probability(jump), int(rows[j + block]), jump)

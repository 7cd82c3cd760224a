"""A double tip, from the echo it writes into the frame.

Two apexes image the surface twice: whatever stands out of the surface by more than the second
apex is retracted shows again, shifted by the apexes' offset (``image = max(surface(x),
surface(x + o) − h)``, :mod:`tipd.synth.retip`). The frame then holds a shifted, weaker copy of
its own protrusions, and their autocorrelation a peak at that one offset.

The test, on a :class:`tipd.physics.view.View`:

1. the protrusions: a white top-hat (the heights minus their opening by a square of
   2 × :data:`TOPHAT_PX` + 1 pixels), less twice the noise, so that terraces, steps and slow
   relief drop out and what remains are the small things a ghost copies;
2. their autocorrelation (zero-padded FFT), with the surface's own periodicity taken out: a
   lattice repeats at its lattice vectors and their multiples, and puts sharp peaks into the
   power spectrum; those peaks are replaced by the spectrum's local level first (the mean of
   its logarithm around them);
3. the strongest peak of the autocorrelation beyond the central one, against its ring (the
   median at the same distance) and in robust standard deviations of the rest; not on the
   fast-scan line through the centre (streaks and line noise correlate along it);
4. the same offset twice over: an echo is one offset, a lattice the offset and its multiples,
   so a peak at twice the offset as strong as the first one makes it no echo (``periodic``).

``score`` is the peak's prominence in robust standard deviations, scaled down by the share the
offset's double repeats (periodicity). ``strength`` is the peak over the central one: roughly
the ghost's share of the protrusions' energy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft
from scipy.ndimage import gaussian_filter, maximum_filter, minimum_filter, uniform_filter

from tipd.physics.view import View

#: radius (pixels) of the disk whose opening leaves the slow relief: protrusions narrower
#: than twice this are kept
TOPHAT_PX = 4
#: the farthest echo looked for, pixels
MAX_OFFSET_PX = 30
#: a power-spectrum pixel this many times its local median is a lattice's, not the echo's
LATTICE_PEAK = 10.0
#: an echo stands out of the autocorrelation around it over this many pixels (a ridge, from a
#: step or a row of features, does not)
LOCAL_PX = 7


def _valid(m: int) -> np.ndarray:
    """The shifts (within ``m`` each way) an echo may lie at: beyond the protrusions' own width
    and within ``m`` of the centre, not on the fast-scan line through it."""
    yy, xx = np.mgrid[-m : m + 1, -m : m + 1]
    ring = np.rint(np.hypot(yy, xx))
    out: np.ndarray = (ring >= TOPHAT_PX + 1) & (ring <= m) & (yy != 0)
    return out


VALID = _valid(MAX_OFFSET_PX)


@dataclass(frozen=True)
class Echo:
    """The strongest echo in a frame: at ``offset_px`` (dy, dx) = ``offset_nm``, how prominent
    (``score``, robust σ), how ``strong`` against the protrusions themselves, and how much of
    it the offset's double repeats (``periodic``, 0–1)."""

    score: float
    strength: float
    offset_px: tuple[int, int]
    offset_nm: tuple[float, float]
    periodic: float
    features: float  #: the share of pixels that stand out of the noise (what a ghost copies)

    @property
    def distance_nm(self) -> float:
        return math.hypot(*self.offset_nm)

    @property
    def angle_deg(self) -> float:
        """Direction of the ghost from its feature, degrees anticlockwise from +x (image rows
        grow downwards, so +y is down the frame)."""
        return math.degrees(math.atan2(-self.offset_nm[1], self.offset_nm[0])) % 360

    def reason(self) -> str:
        return (
            f"an echo {self.distance_nm:.3g} nm away at {self.angle_deg:.0f}°, "
            f"{100 * self.strength:.0f} % as strong ({self.score:.1f} σ"
            + (f", {100 * self.periodic:.0f} % periodic)" if self.periodic > 0.05 else ")")
        )


def protrusions(v: View) -> np.ndarray:
    """What stands out of the slow relief by more than twice the noise (m), zero elsewhere."""
    z = gaussian_filter(v.z.astype(np.float32), 0.7)
    size = 2 * TOPHAT_PX + 1
    top = z - maximum_filter(minimum_filter(z, size), size)  # the opening by the square
    out: np.ndarray = np.clip(top - 2 * v.noise_m, 0.0, None)
    return out


def autocorrelation(a: np.ndarray, lattice_peak: float = LATTICE_PEAK) -> np.ndarray:
    """The autocorrelation of ``a`` ``(rows, cols)`` (mean removed, zero-padded) for shifts up
    to :data:`MAX_OFFSET_PX` each way, ``(2m + 1, 2m + 1)`` with zero shift in the middle,
    normalised to 1 there, with the power spectrum's sharp peaks (a lattice's) replaced by its
    local level."""
    rows, cols = a.shape
    centred = (a - a.mean()).astype(np.float32)
    # zero-padded by the farthest shift looked for: no wrap-around within it
    shape = (sfft.next_fast_len(rows + MAX_OFFSET_PX), sfft.next_fast_len(cols + MAX_OFFSET_PX))
    spec = sfft.rfft2(centred, s=shape)
    power = spec.real**2 + spec.imag**2
    level = np.log(power + power.max() * 1e-12)
    background = uniform_filter(level, size=9, mode="wrap")  # the local level, in log power
    peaks = level > background + math.log(lattice_peak)
    peaks[0, 0] = False
    power = np.where(peaks, np.exp(background), power)
    acf = sfft.irfft2(power, s=shape)
    m = min(MAX_OFFSET_PX, rows - 1, cols - 1)
    near = np.r_[-m:0, 0 : m + 1]  # shifts -m … m, as they lie in the unshifted array
    win = acf[np.ix_(near % acf.shape[0], near % acf.shape[1])]
    centre = win[m, m]
    out: np.ndarray = win / centre if centre > 0 else win
    return out


def echo(v: View) -> Echo | None:
    """The :class:`Echo` of a frame's view, or None when it has too little to read (no
    protrusion out of the noise)."""
    if not v.usable or min(v.z.shape) < 2 * MAX_OFFSET_PX + 2:
        return None
    top = protrusions(v)
    features = float(np.mean(top > 0))
    if features == 0.0:
        return None
    win = autocorrelation(top)
    m = MAX_OFFSET_PX
    res = win - uniform_filter(win, size=LOCAL_PX, mode="nearest")  # a point, not a ridge
    valid = VALID
    spread = 1.4826 * float(np.median(np.abs(res[valid] - np.median(res[valid])))) + 1e-12
    k = int(np.argmax(np.where(valid, res, -np.inf)))
    py, px = divmod(k, 2 * m + 1)
    dy, dx = py - m, px - m
    peak = float(res[py, px])
    twice = float(res[2 * dy + m, 2 * dx + m]) if max(abs(2 * dy), abs(2 * dx)) <= m else 0.0
    periodic = float(np.clip(twice / peak, 0.0, 1.0)) if peak > 0 else 1.0
    return Echo(
        score=peak / spread * (1.0 - periodic),
        strength=peak,
        offset_px=(dy, dx),
        offset_nm=(dx * v.pixel_nm[0], dy * v.pixel_nm[1]),
        periodic=periodic,
        features=features,
    )

"""Scan artefacts, as pure functions on height images (nm, shape ``(rows, cols)``).

Row ``r`` is the r-th scan line, columns run along the fast axis, so anything that happens in
time (noise, feedback, offsets, spikes) acts along rows and from one row to the next. Lateral
distortions (drift, creep) live in :class:`tipd.synth.geometry.ScanGrid` instead, because they
move where pixels sample the surface rather than what they record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
from scipy import fft
from scipy.signal import lfilter, lfilter_zi


@dataclass(frozen=True)
class Artefacts:
    """Strengths of the ordinary artefacts of one scan (heights in nm)."""

    white_nm: float = 0.002  #: white noise σ
    pink_nm: float = 0.002  #: 1/f noise σ (along the time series of the scan)
    line_walk_nm: float = 0.01  #: per-line offset, random-walk step σ
    line_jitter_nm: float = 0.005  #: per-line offset, white σ
    tilt: tuple[float, float] = (0.0, 0.0)  #: plane slope along (x, y), nm per nm
    feedback_r: float = 0.0  #: pole radius of the feedback response (0 = ideal feedback)
    feedback_w: float = 0.8  #: pole angle, rad per pixel (ringing frequency)
    spikes: int = 0  #: number of spikes / short streaks
    spike_nm: float = 0.3

    def to_dict(self) -> dict[str, object]:
        return {
            k: (list(v) if isinstance(v, tuple) else round(float(v), 6))
            for k, v in asdict(self).items()
        }


def draw_artefacts(rng: np.random.Generator, low_temperature: bool) -> Artefacts:
    """Typical artefacts of a scan, drawn at random. ``low_temperature`` (4.5 K, as the paper's
    Au and Cu data) has a quieter junction than room temperature (its H:Si data)."""
    noise = (0.0003, 0.0015) if low_temperature else (0.0008, 0.004)
    return Artefacts(
        white_nm=float(rng.uniform(*noise)),
        pink_nm=float(rng.uniform(*noise)),
        line_walk_nm=float(rng.uniform(0.0, 0.02)),
        line_jitter_nm=float(rng.uniform(0.0, 0.015)),
        tilt=(float(rng.normal(0, 0.02)), float(rng.normal(0, 0.02))),
        feedback_r=float(rng.choice([0.0, rng.uniform(0.3, 0.8)])),
        feedback_w=float(rng.uniform(0.3, 1.2)),
        spikes=int(rng.poisson(1.0)),
        spike_nm=float(rng.uniform(0.05, 0.5)),
    )


def feedback_response(z: np.ndarray, r: float, w: float) -> np.ndarray:
    """The z-feedback's lag and overshoot along each line: a resonant low-pass of unit DC gain
    with poles ``r·exp(±iw)`` (r < 1). Steps ring for a few pixels after the edge."""
    if r <= 0:
        return z
    a = np.array([1.0, -2 * r * np.cos(w), r * r])
    b = np.array([a.sum()])
    zi = lfilter_zi(b, a)[None, :] * z[:, :1]
    out, _ = lfilter(b, a, z, axis=1, zi=zi)
    result: np.ndarray = out
    return result


def pink_noise(shape: tuple[int, int], rng: np.random.Generator, sigma: float) -> np.ndarray:
    """1/f noise of σ ``sigma`` over the scan's time series (row-major), shape ``shape``."""
    n = shape[0] * shape[1]
    if sigma <= 0 or n < 2:
        return np.zeros(shape)
    parts = rng.standard_normal((2, n // 2 + 1), dtype=np.float32)
    spectrum = parts[0] + 1j * parts[1]
    spectrum *= _pink_weights(n)
    noise: np.ndarray = np.asarray(fft.irfft(spectrum, n), dtype=np.float64)
    noise *= sigma / (noise.std() + 1e-30)
    return noise.reshape(shape)


@lru_cache(maxsize=8)
def _pink_weights(n: int) -> np.ndarray:
    """Amplitude 1/√f of each rfft bin of an ``n``-sample series, zero at f = 0."""
    f = np.arange(n // 2 + 1, dtype=np.float32)
    f[0] = np.inf
    weights: np.ndarray = (1.0 / np.sqrt(f)).astype(np.complex64)
    return weights


def line_offsets(rows: int, rng: np.random.Generator, walk: float, jitter: float) -> np.ndarray:
    """Offset of each scan line (nm), shape ``(rows,)``: a random walk plus white jitter."""
    return np.cumsum(rng.normal(0, walk, rows)) + rng.normal(0, jitter, rows)


def tilt_plane(
    shape: tuple[int, int], pixel_nm: tuple[float, float], slope: tuple[float, float]
) -> np.ndarray:
    """Plane ``slope_x · x + slope_y · y`` (nm) over the frame, shape ``shape``."""
    rows, cols = shape
    x = np.arange(cols) * pixel_nm[0]
    y = np.arange(rows) * pixel_nm[1]
    result: np.ndarray = slope[0] * x[None, :] + slope[1] * y[:, None]
    return result


def add_spikes(
    z: np.ndarray, rng: np.random.Generator, n: int, amplitude: float, longest: int = 8
) -> None:
    """Add ``n`` spikes in place: streaks of 1–``longest`` pixels along a line, ±``amplitude``
    nm (times 0.5–1)."""
    rows, cols = z.shape
    for _ in range(n):
        r = int(rng.integers(rows))
        c = int(rng.integers(cols))
        length = int(rng.integers(1, longest + 1))
        z[r, c : c + length] += amplitude * float(rng.choice([-1.0, 1.0])) * rng.uniform(0.5, 1.0)


def apply_artefacts(
    z: np.ndarray, art: Artefacts, rng: np.random.Generator, pixel_nm: tuple[float, float]
) -> np.ndarray:
    """The recorded image: ``z`` (nm) through feedback, with noise, offsets, tilt and spikes."""
    out = feedback_response(z, art.feedback_r, art.feedback_w)
    out = out + tilt_plane(z.shape, pixel_nm, art.tilt)
    out += line_offsets(z.shape[0], rng, art.line_walk_nm, art.line_jitter_nm)[:, None]
    out += pink_noise(z.shape, rng, art.pink_nm)
    out += art.white_nm * rng.standard_normal(z.shape, dtype=np.float32)
    add_spikes(out, rng, art.spikes, art.spike_nm)
    result: np.ndarray = out
    return result


# --------------------------------------------------------------------------- corruption

CORRUPTIONS = ("saturated", "repeated", "stripes", "missing_block", "offset_bands", "lost_contact")


def corrupt(z: np.ndarray, rng: np.random.Generator, kind: str) -> np.ndarray:
    """A corrupted copy of ``z`` (nm): one of :data:`CORRUPTIONS`.

    saturated: lines pinned at the z-range limit; repeated: a block of lines repeats one line
    (the scan stalled); stripes: a band of violent high-frequency noise (unstable junction);
    missing_block: a block of constant value (data lost); offset_bands: blocks of lines shifted
    sideways and in height (controller glitches); lost_contact: lines from one point on that
    record the retracted z (the tip lost the surface).
    """
    out = z.copy()
    rows, cols = z.shape
    span = float(np.ptp(z)) + 0.05
    top = float(z.max())
    r0 = int(rng.integers(0, max(1, rows - 4)))
    n = int(rng.integers(max(2, rows // 6), max(3, rows // 2)))
    r1 = min(rows, r0 + n)
    if kind == "saturated":
        sel = rng.choice(np.arange(r0, r1), size=max(1, (r1 - r0) // 2), replace=False)
        out[sel] = top + span * rng.uniform(0.5, 2.0)
    elif kind == "repeated":
        out[r0:r1] = out[r0]
    elif kind == "stripes":
        out[r0:r1] += rng.normal(0, span * rng.uniform(0.2, 0.6), (r1 - r0, cols))
    elif kind == "missing_block":
        c0 = int(rng.integers(0, cols // 2))
        c1 = int(rng.integers(c0 + cols // 4, cols + 1))
        out[r0:r1, c0:c1] = float(rng.choice([0.0, top + span]))
    elif kind == "offset_bands":
        edges = np.sort(rng.choice(np.arange(1, rows), size=int(rng.integers(2, 6)), replace=False))
        for a, b in zip(edges[:-1:2], edges[1::2], strict=False):
            out[a:b] = np.roll(out[a:b], int(rng.integers(cols // 10, cols // 3)), axis=1)
            out[a:b] += span * rng.uniform(-0.5, 0.5)
    elif kind == "lost_contact":
        out[r0:] = top + span * rng.uniform(0.3, 1.0) + rng.normal(0, 0.002, (rows - r0, cols))
    else:
        raise ValueError(f"unknown corruption {kind!r}; known: {', '.join(CORRUPTIONS)}")
    return out

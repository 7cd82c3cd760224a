"""Preprocessing as in Gordon et al. (2019): line-by-line flattening along x, scaling to
[-1, 1], resampling to the model input. Pure functions on ``(rows, cols)`` arrays; NaN marks
lines not (yet) scanned.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.ndimage import zoom


def flatten_lines(z: np.ndarray) -> np.ndarray:
    """Subtract from each scan line (row) its least-squares straight line along x.

    Removes per-line offsets and the x component of a plane tilt; a line offset or tilt added to
    ``z`` leaves the result unchanged. NaN pixels are ignored in the fit and stay NaN; rows with
    fewer than two finite pixels become NaN. Returns float64 of the same shape.
    """
    z = np.asarray(z, dtype=np.float64)
    cols = z.shape[1]
    x = np.arange(cols, dtype=np.float64) - (cols - 1) / 2
    ok = np.isfinite(z)
    n = ok.sum(axis=1)
    zz = np.where(ok, z, 0.0)
    xx = np.where(ok, x[None, :], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = xx.sum(axis=1) / n
        mz = zz.sum(axis=1) / n
        dx = np.where(ok, x[None, :] - mx[:, None], 0.0)
        var = (dx**2).sum(axis=1)
        slope = np.where(
            var > 0, (dx * (zz - mz[:, None])).sum(axis=1) / np.where(var > 0, var, 1), 0.0
        )
    fit = mz[:, None] + slope[:, None] * (x[None, :] - mx[:, None])
    out: np.ndarray = np.where(ok & (n[:, None] >= 2), z - fit, np.nan)
    return out


def scale_unit(z: np.ndarray, clip_percentile: float = 0.5) -> np.ndarray:
    """Map finite values linearly onto [-1, 1] between the ``clip_percentile`` and
    ``100 - clip_percentile`` percentiles (clipping outliers such as spikes); NaN → 0 (the
    middle grey). A constant or all-NaN image maps to zeros. Always finite, within [-1, 1].
    """
    z = np.asarray(z, dtype=np.float64)
    ok = np.isfinite(z)
    out = np.zeros(z.shape)
    if not ok.any():
        return out
    lo, hi = np.percentile(z[ok], [clip_percentile, 100 - clip_percentile])
    if not hi > lo:
        return out
    out[ok] = np.clip(2 * (z[ok] - lo) / (hi - lo) - 1, -1, 1)
    return out


def resample(z: np.ndarray, size: int) -> np.ndarray:
    """Resample to ``(size, size)`` with linear interpolation (area mean when shrinking by an
    integer factor, to avoid aliasing)."""
    rows, cols = z.shape
    if (rows, cols) == (size, size):
        return z.astype(np.float64, copy=True)
    if rows % size == 0 and cols % size == 0:
        fr, fc = rows // size, cols // size
        # sums along contiguous axes (3× faster than a 4-D mean); a NaN or infinity anywhere
        # leaves its block's sum non-finite, so the check runs on the small image only
        rowsum = z.reshape(size, fr, cols).sum(axis=1, dtype=np.float64)
        out: np.ndarray = rowsum.reshape(size, size, fc).sum(axis=2) / (fr * fc)
        if np.isfinite(out).all():
            return out
        blocks = np.asarray(z, dtype=np.float64).reshape(size, fr, size, fc)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks stay NaN
            nan_out: np.ndarray = np.nanmean(blocks, axis=(1, 3))
        return nan_out
    result: np.ndarray = zoom(
        np.asarray(z, dtype=np.float64),
        (size / rows, size / cols),
        order=1,
        mode="nearest",
        grid_mode=True,
    )
    return result


def to_model_input(z: np.ndarray, size: int = 128) -> np.ndarray:
    """The whole chain: resample to ``(size, size)``, flatten lines, scale to [-1, 1], float32.

    Resampling comes first: a line's least-squares fit is linear in its data, so flattening
    commutes with area-mean resampling, and the percentiles of the scaling are taken on the
    image the model sees, as in training (frames rendered at the model size). It is also 16×
    cheaper for a 512 × 512 frame.
    """
    z = np.asarray(z)
    u = resample(z, size)
    if not np.isfinite(u).all() and np.isinf(z).any():  # infinities count as missing, like NaN
        u = resample(np.where(np.isfinite(z), z, np.nan), size)
    return scale_unit(flatten_lines(u)).astype(np.float32)


CHANNELS = ("height", "autocorrelation")


def autocorrelation(u: np.ndarray) -> np.ndarray:
    """Autocorrelation of a preprocessed image ``u`` ``(S, S)``, for shifts of ±S/2 pixels,
    shape ``(S, S)`` with zero shift at the centre, scaled to 1 there and compressed as
    ``sign · √|·|`` so that weak side peaks show.

    A double tip images every feature twice with the same offset, which puts a side peak at
    that offset, wherever the features are; a lattice puts a periodic grid of peaks.
    Zero-padded, so nothing wraps around.
    """
    s = u.shape[0]
    a = u - u.mean()
    spectrum = np.fft.rfft2(a, s=(2 * s, 2 * s))
    ac = np.fft.fftshift(np.fft.irfft2(np.abs(spectrum) ** 2, s=(2 * s, 2 * s)))
    centre = ac[s, s]
    if not centre > 0:
        return np.zeros_like(u)
    ac = ac[s // 2 : s // 2 + s, s // 2 : s // 2 + s] / centre
    out: np.ndarray = np.sign(ac) * np.sqrt(np.abs(ac))
    return out


def model_input(
    z: np.ndarray, size: int = 128, channels: tuple[str, ...] = ("height",)
) -> np.ndarray:
    """Model input of one frame, ``(C, size, size)`` float32 in [-1, 1]: the preprocessed
    heights and, when asked for, their :func:`autocorrelation`."""
    unknown = set(channels) - set(CHANNELS)
    if unknown:
        raise ValueError(f"unknown input channels {sorted(unknown)}; known: {list(CHANNELS)}")
    u = to_model_input(z, size)
    planes = [u if c == "height" else autocorrelation(u) for c in channels]
    return np.stack(planes).astype(np.float32)


def row_median(a: np.ndarray) -> np.ndarray:
    """Median of each row of a finite ``(rows, cols)`` array, as ``np.median(a, axis=1)`` but
    by one partial sort (6× faster for 511 × 128)."""
    k = a.shape[1] // 2
    if a.shape[1] % 2:
        odd: np.ndarray = np.partition(a, k, axis=1)[:, k]
        return odd
    part = np.partition(a, k, axis=1)  # the k smallest lie left of position k
    out: np.ndarray = (part[:, :k].max(axis=1) + part[:, k]) / 2
    return out


def robust_spread(x: np.ndarray) -> tuple[float, float]:
    """Median of ``x`` (any shape, finite) and its robust standard deviation, 1.4826 × the
    median absolute deviation (equal to σ for normal data, blind to a few outliers)."""
    centre = float(np.median(x))
    return centre, 1.4826 * float(np.median(np.abs(x - centre)))


def line_jumps(z: np.ndarray, k: float = 5.0) -> np.ndarray:
    """Rows of ``z`` ``(rows, cols)`` (any unit) that start a horizontal discontinuity: the
    median step from the line before lies more than ``k`` robust standard deviations (1.4826 ·
    MAD) from the frame's typical line-to-line step. A tip change shifts every pixel of the
    lines after it; noise, drift, tilt and line offsets move line medians smoothly. Returns
    row indices (int, ascending; empty for fewer than 8 lines)."""
    z = np.asarray(z)
    if z.ndim != 2 or z.shape[0] < 8:
        return np.zeros(0, dtype=int)
    stride = max(1, z.shape[1] // 128)  # 128 columns are plenty for a median (and fast)
    diff = np.diff(z[:, ::stride].astype(np.float64), axis=0)
    if np.isfinite(diff).all():
        steps = row_median(diff)
    else:
        with warnings.catch_warnings():  # all-NaN lines (not yet scanned) give NaN steps
            warnings.simplefilter("ignore", RuntimeWarning)
            steps = np.nanmedian(diff, axis=1)
    finite = np.isfinite(steps)
    if finite.sum() < 4:
        return np.zeros(0, dtype=int)
    centre, spread = robust_spread(steps[finite])
    scale = spread + 1e-30
    out: np.ndarray = np.flatnonzero(finite & (np.abs(steps - centre) > k * scale)) + 1
    return out

"""Scan geometry: where each pixel of a frame lies on the sample.

Frame coordinates ``(u, v)`` (nm) have ``u`` along the fast-scan axis (columns) and ``v`` along
the slow axis (rows, row 0 = first scan line), both centred on the frame. The sample point of a
pixel is ``p = centre + R(angle) · (u + shift[row], v[row])``: ``shift`` (nm, per row) is the
lateral thermal drift and piezo creep, and ``v`` need not be evenly spaced (creep compresses the
first lines).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ScanGrid:
    """Pixel positions of a frame (or of some of its rows).

    ``u`` has shape ``(cols,)``; ``v`` and ``shift`` have shape ``(rows,)``; all in nm.
    """

    centre_nm: tuple[float, float]
    size_nm: tuple[float, float]
    angle_deg: float
    u: np.ndarray
    v: np.ndarray
    shift: np.ndarray
    rows_total: int = field(default=0)

    @classmethod
    def regular(
        cls,
        centre_nm: tuple[float, float],
        size_nm: tuple[float, float],
        pixels: tuple[int, int],
        angle_deg: float = 0.0,
    ) -> ScanGrid:
        """An undistorted grid; ``pixels`` is ``(cols, rows)``, ``size_nm`` ``(width, height)``."""
        cols, rows = pixels
        w, h = size_nm
        u = (np.arange(cols) + 0.5) * (w / cols) - w / 2
        v = (np.arange(rows) + 0.5) * (h / rows) - h / 2
        return cls(centre_nm, size_nm, angle_deg, u, v, np.zeros(rows), rows)

    def distorted(
        self, drift_nm: tuple[float, float], creep_nm: float, creep_rows: float
    ) -> ScanGrid:
        """The grid with linear drift and exponential creep in the first lines.

        ``drift_nm = (dx, dy)`` is the total drift over the whole frame (nm): ``dx`` shears rows
        sideways, ``dy`` stretches the slow axis. ``creep_nm`` is the lateral offset of the first
        line decaying over ``creep_rows`` lines.
        """
        n = max(self.rows_total, len(self.v))
        t = np.arange(len(self.v)) / max(n - 1, 1)
        shift = (
            self.shift + drift_nm[0] * t + creep_nm * np.exp(-np.arange(len(self.v)) / creep_rows)
        )
        v = self.v + drift_nm[1] * t - 0.5 * creep_nm * np.exp(-np.arange(len(self.v)) / creep_rows)
        return ScanGrid(self.centre_nm, self.size_nm, self.angle_deg, self.u, v, shift, n)

    def rows(self, start: int, stop: int) -> ScanGrid:
        """The grid of rows ``start .. stop - 1``."""
        return ScanGrid(
            self.centre_nm,
            self.size_nm,
            self.angle_deg,
            self.u,
            self.v[start:stop],
            self.shift[start:stop],
            self.rows_total,
        )

    @property
    def pixel_nm(self) -> tuple[float, float]:
        """Nominal pixel pitch ``(du, dv)``, nm."""
        du = float(self.u[1] - self.u[0]) if len(self.u) > 1 else self.size_nm[0]
        rows = max(self.rows_total, len(self.v))
        return du, self.size_nm[1] / rows

    @property
    def axes(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors of the fast (u) and slow (v) axes on the sample, shape (2,)."""
        a = math.radians(self.angle_deg)
        return np.array([math.cos(a), math.sin(a)]), np.array([-math.sin(a), math.cos(a)])

    def sample_xy(
        self, offset_nm: tuple[float, float] = (0.0, 0.0)
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sample coordinates ``(x, y)`` (nm) of every pixel, each of shape ``(rows, cols)``,
        displaced by ``offset_nm`` (an apex offset)."""
        eu, ev = self.axes
        uu = self.u[None, :] + self.shift[:, None]
        vv = self.v[:, None]
        x = self.centre_nm[0] + offset_nm[0] + eu[0] * uu + ev[0] * vv
        y = self.centre_nm[1] + offset_nm[1] + eu[1] * uu + ev[1] * vv
        return x, y

    def to_frame(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frame coordinates ``(u, v)`` (nm) of sample points ``(x, y)``, drift ignored."""
        eu, ev = self.axes
        dx = x - self.centre_nm[0]
        dy = y - self.centre_nm[1]
        return eu[0] * dx + eu[1] * dy, ev[0] * dx + ev[1] * dy

    def contains(self, x: float, y: float, margin_nm: float = 0.0) -> bool:
        """True when sample point ``(x, y)`` lies within the frame (plus ``margin_nm``)."""
        u, v = self.to_frame(np.array(x), np.array(y))
        return bool(
            abs(float(u)) <= self.size_nm[0] / 2 + margin_nm
            and abs(float(v)) <= self.size_nm[1] / 2 + margin_nm
        )

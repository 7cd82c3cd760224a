"""A blunt tip, from the shape of what it imaged.

A tip images the surface as the grey dilation of the surface by its own shape (Villarrubia,
J. Res. NIST 102, 425 (1997)): every protrusion of the image takes the rounded cap of the
apex, so no peak of the image is sharper than the tip, while the valleys between protrusions
stay sharp (they close in). An image is consistent with a paraboloid apex where its
morphological opening by that paraboloid leaves it unchanged; what the opening removes are the
peaks too sharp for such a tip, what the closing fills the valleys too sharp for it. Blind tip
estimation (Villarrubia's, as in Gwyddion) finds the bluntest tip consistent with the image,
with a certainty map saying where the image had features sharp enough to tell.

Here, on a frame's :class:`tipd.physics.view.View`, with a
paraboloid whose cap falls by the frame's local relief (:func:`relief`) over ``w`` pixels:

* ``peaks``: the mean height the opening removes, ``valleys``: the mean the closing fills, both
  over the relief, at :data:`WIDTH_PX`;
* ``asymmetry`` = ln(valleys / peaks). A blunt tip rounds every peak and keeps the valleys
  sharp; a sharp tip leaves both as the surface has them, and noise is as much up as down;
* ``certain``: some of the image (:data:`CERTAIN_SHARE`) stands out of the opening or the
  closing by more than 4 × the noise and a tenth of the relief: the frame has features sharp
  enough to tell. A smooth surface has none, and then the
  frame says nothing about the tip ("cannot tell", not "good").

Pure functions; heights in metres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter, uniform_filter

from tipd.physics.view import View

#: the cap's width (pixels): it falls by the relief over this many pixels
WIDTH_PX = 4
#: the share of pixels the opening or closing changes by more than 4 × the noise and
#: :data:`SHARP_RELIEF` of the relief that makes a frame sharp enough to tell
CERTAIN_SHARE = 0.005
SHARP_RELIEF = 0.1


def relief(z: np.ndarray) -> float:
    """The local relief (m) of heights ``z``: the 2–98 % spread of what a 9-pixel running
    mean does not follow (the slow relief and the terraces taken out)."""
    hp = z - uniform_filter(z, 9, mode="nearest")
    lo, hi = np.percentile(hp[::2, ::2], [2, 98])
    return float(max(hi - lo, 1e-15))


def _morph(z: np.ndarray, cap: np.ndarray, dilate: bool) -> np.ndarray:
    """Grey dilation (``max_k z(x + k) − cap[|k|]``) or erosion (``min_k z(x + k) +
    cap[|k|]``) of ``z`` by the separable paraboloid of profile ``cap``, along both axes."""
    out = z
    best = np.maximum if dilate else np.minimum
    sign = -1.0 if dilate else 1.0
    for axis in (1, 0):
        acc = out.copy()
        for k in range(1, len(cap)):
            c = sign * cap[k]
            if axis == 1:
                best(acc[:, :-k], out[:, k:] + c, out=acc[:, :-k])
                best(acc[:, k:], out[:, :-k] + c, out=acc[:, k:])
            else:
                best(acc[:-k], out[k:] + c, out=acc[:-k])
                best(acc[k:], out[:-k] + c, out=acc[k:])
        out = acc
    return out


def residuals(z: np.ndarray, scale_m: float, width_px: float) -> tuple[np.ndarray, np.ndarray]:
    """What the opening (peaks) and the closing (valleys) of ``z`` by a paraboloid whose cap
    falls by ``scale_m`` over ``width_px`` pixels change: two non-negative maps (m)."""
    span = float(z.max() - z.min())
    reach = max(1, min(math.ceil(width_px * math.sqrt(span / scale_m)), int(width_px) + 2))
    k = np.arange(reach + 1, dtype=np.float32)
    cap = (scale_m * (k / width_px) ** 2).astype(np.float32)
    opened = _morph(_morph(z, cap, dilate=False), cap, dilate=True)
    closed = _morph(_morph(z, cap, dilate=True), cap, dilate=False)
    return z - opened, closed - z


@dataclass(frozen=True)
class Sharpness:
    """What the shapes in a frame say of its tip (see the module)."""

    asymmetry: float  #: ln(valleys / peaks)
    peaks: float  #: mean opening residual over the relief
    valleys: float  #: mean closing residual over the relief
    certain: bool  #: the frame has features sharp enough to tell
    radius_nm: float  #: the paraboloid tested, as a radius of curvature

    def reason(self) -> str:
        """The finding in a microscopist's words."""
        if not self.certain:
            return "nothing in the frame is sharp enough to tell how sharp the tip is"
        ratio = math.exp(self.asymmetry)
        if ratio >= 1:
            return (
                f"protrusions rounder than the valleys between them ({ratio:.2g}× against a "
                f"{self.radius_nm:.3g} nm apex)"
            )
        return f"protrusions as sharp as the valleys ({ratio:.2g}×)"


def sharpness(v: View) -> Sharpness | None:
    """The :class:`Sharpness` of a frame's view, or None when it has too little to read."""
    if not v.usable:
        return None
    z = gaussian_filter(v.z, 0.7).astype(np.float32)
    scale = max(relief(z), v.range_m / 10)  # a smooth frame's relief is not all its height
    ro, rc = residuals(z, scale, WIDTH_PX)
    floor = max(4 * v.noise_m, SHARP_RELIEF * scale)
    certain = bool(max(np.mean(ro > floor), np.mean(rc > floor)) > CERTAIN_SHARE)
    peaks, valleys = float(ro.mean() / scale), float(rc.mean() / scale)
    radius = (WIDTH_PX * v.pixel_nm[0]) ** 2 / (2 * scale * 1e9)
    asymmetry = math.log((valleys + 1e-6) / (peaks + 1e-6))
    return Sharpness(asymmetry, peaks, valleys, certain, radius)

"""Imaging a sample through a tip: the constant-current combination of several apexes."""

from __future__ import annotations

import numpy as np

from tipd.synth.geometry import ScanGrid
from tipd.synth.surfaces import TWO_KAPPA_PER_NM, Features, Sample
from tipd.synth.tip import Tip


def image(sample: Sample, grid: ScanGrid, tip: Tip, features: Features | None = None) -> np.ndarray:
    """Apparent height (nm), shape ``(rows, cols)``, of ``sample`` scanned with ``tip``.

    ``z = (1/2κ) ln Σ_i w_i exp(2κ (h_i - dz_i))`` where ``h_i`` is the surface seen by apex
    ``i`` (see :mod:`tipd.synth.tip`). With one apex this is just its blurred surface.
    """
    if features is None:
        features = sample.features_near(grid, margin_nm=6.0)
    seen = [
        sample.render(grid, a.radius_nm, (a.dx_nm, a.dy_nm), features) - a.dz_nm for a in tip.apexes
    ]
    if len(seen) == 1:
        return seen[0]
    k = TWO_KAPPA_PER_NM
    logw = np.log([a.weight for a in tip.apexes])
    stack = np.stack(seen) * k + logw[:, None, None]
    top = stack.max(axis=0)
    result: np.ndarray = (top + np.log(np.exp(stack - top).sum(axis=0))) / k
    return result


def image_with_change(
    sample: Sample,
    grid: ScanGrid,
    before: Tip,
    after: Tip,
    row: int,
    jump_nm: float,
    col: int = 0,
) -> np.ndarray:
    """A frame whose tip changes during scan line ``row`` at pixel ``col``: everything scanned
    before uses ``before``, everything after uses ``after`` and sits ``jump_nm`` higher (the
    apex got shorter or longer)."""
    features = sample.features_near(grid, margin_nm=6.0)
    rows = len(grid.v)
    out = np.empty((rows, len(grid.u)))
    if row > 0:
        out[:row] = image(sample, grid.rows(0, row), before, features)
    if row < rows:
        out[row:] = image(sample, grid.rows(row, rows), after, features) + jump_nm
        if col > 0:
            out[row, :col] = image(sample, grid.rows(row, row + 1), before, features)[0, :col]
    return out

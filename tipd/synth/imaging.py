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
    return image_and_main(sample, grid, tip, features)[0]


def image_and_main(
    sample: Sample, grid: ScanGrid, tip: Tip, features: Features | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`image`, and what the main apex alone would have recorded (free: it is one of the
    terms), for telling whether the other apexes show."""
    if features is None:
        features = sample.features_near(grid, margin_nm=6.0)
    seen = [
        sample.render(grid, a.radius_nm, (a.dx_nm, a.dy_nm), features) - a.dz_nm for a in tip.apexes
    ]
    main = seen[tip.apexes.index(tip.main)]
    if len(seen) == 1:
        return seen[0], main
    k = TWO_KAPPA_PER_NM
    logw = np.log([a.weight for a in tip.apexes])
    stack = np.stack(seen) * k + logw[:, None, None]
    top = stack.max(axis=0)
    result: np.ndarray = (top + np.log(np.exp(stack - top).sum(axis=0))) / k
    return result, main


def image_with_change(
    sample: Sample,
    grid: ScanGrid,
    before: Tip,
    after: Tip,
    row: int,
    jump_nm: float,
    col: int = 0,
    before_image: np.ndarray | None = None,
) -> np.ndarray:
    """A frame whose tip changes during scan line ``row`` at pixel ``col``: everything scanned
    before uses ``before``, everything after uses ``after`` and sits ``jump_nm`` higher (the
    apex got shorter or longer)."""
    features = sample.features_near(grid, margin_nm=6.0)
    rows = len(grid.v)
    out = np.empty((rows, len(grid.u)))
    if before_image is not None:  # the old tip's image of the whole frame is at hand
        out[:row] = before_image[:row]
    elif row > 0:
        out[:row] = image(sample, grid.rows(0, row), before, features)
    if row < rows:
        out[row:] = image(sample, grid.rows(row, rows), after, features) + jump_nm
        if col > 0:
            old_line = (
                before_image[row]
                if before_image is not None
                else image(sample, grid.rows(row, row + 1), before, features)[0]
            )
            out[row, :col] = old_line[:col]
    return out


#: A difference counts as visible when the largest |Δ| between two noise-free renderings, both
#: flattened line by line as the models see them and averaged over 2×2 pixels, exceeds this
#: (nm): ten times the noise of a quiet scan, a third of an adatom's height.
VISIBLE_NM = 0.03


def visible_difference(a: np.ndarray, b: np.ndarray) -> float:
    """How different two noise-free renderings of one area look after line flattening (nm):
    the largest 2×2-averaged |Δ| (features can be sparse, so no percentile)."""
    from tipd.preprocess import flatten_lines

    d = np.nan_to_num(np.abs(flatten_lines(a) - flatten_lines(b)))
    if d.shape[0] >= 2 and d.shape[1] >= 2:
        d = (d[1:, 1:] + d[:-1, 1:] + d[1:, :-1] + d[:-1, :-1]) / 4
    return float(d.max()) if d.size else 0.0


def ghost_visible(
    sample: Sample,
    grid: ScanGrid,
    tip: Tip,
    z: np.ndarray,
    features: Features,
    single: np.ndarray | None = None,
) -> bool:
    """True when the extra apexes of ``tip`` visibly change ``z`` (there is something to
    ghost); ``single`` is the main apex's own image when already at hand."""
    if tip.n_significant < 2 or len(grid.v) < 2:
        return False
    if single is None:
        single = image(sample, grid, Tip((tip.main,)), features)
    return visible_difference(z, single) > VISIBLE_NM


def change_visible(
    sample: Sample,
    grid: ScanGrid,
    before: Tip,
    z: np.ndarray,
    row: int,
    features: Features,
    before_image: np.ndarray | None = None,
) -> bool:
    """True when the lines after a tip change at ``row`` look visibly different from what the
    old tip would have recorded there (the change line itself is not counted; the 48 lines
    after it decide, as they would for a person looking at the frame)."""
    rows = len(grid.v)
    if row + 3 > rows:
        return False
    stop = min(rows, row + 49)
    if before_image is not None:
        old = before_image[row + 1 : stop]
    else:
        old = image(sample, grid.rows(row + 1, stop), before, features)
    return visible_difference(z[row + 1 : stop], old) > VISIBLE_NM

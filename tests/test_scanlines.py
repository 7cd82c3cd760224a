"""The scan-line tip-change test: jumps that persist are found, topography and streaks are not."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from tipd import scanlines


def terraces(rows: int = 256, cols: int = 256, seed: int = 0) -> np.ndarray:
    """A good scan (m): two terraces split by a diagonal step edge, 1/f-ish roughness, white
    noise and small random line offsets."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:rows, :cols]
    z = np.where(x > 0.6 * y + 40, 2e-10, 0.0)  # a monatomic step crossing the lines
    bumps = gaussian_filter(rng.normal(0, 1, (rows, cols)), 6)
    z = z + 2e-11 * bumps / bumps.std()
    z = z + rng.normal(0, 5e-12, (rows, cols)) + rng.normal(0, 3e-12, (rows, 1))
    return z


def test_a_persistent_jump_is_a_tip_change_at_its_row() -> None:
    z = terraces()
    z[150:] += 5e-11  # the tip lost an atom at line 150: every later line sits higher
    ev = scanlines.tip_change_evidence(z)
    assert ev.probability > 0.9 and abs(ev.row - 150) <= 1 and ev.jump_sigma > 10


def test_a_good_scan_with_a_step_edge_is_no_tip_change() -> None:
    ev = scanlines.tip_change_evidence(terraces())
    assert ev.probability < 0.5 and ev.jump_sigma < 5


def test_single_streaky_lines_are_not_a_tip_change() -> None:
    z = terraces()
    z[40::37] += 3e-10  # one bad line every 37, each alone: the tip flickered and came back
    assert scanlines.tip_change_evidence(z).probability < 0.5
    z[150:] += 5e-11  # ... but a jump between them is still found
    assert scanlines.tip_change_evidence(z).probability > 0.9


def test_a_tilted_sample_gives_the_same_evidence() -> None:
    z = terraces()
    z[150:] += 5e-11
    y, x = np.mgrid[: z.shape[0], : z.shape[1]]
    tilted = z + 3e-12 * x - 2e-12 * y
    a, b = scanlines.tip_change_evidence(z), scanlines.tip_change_evidence(tilted)
    assert b.row == a.row and b.jump_sigma == pytest.approx(a.jump_sigma, rel=0.05)


def test_lines_not_scanned_yet_are_skipped_and_rows_stay_frame_rows() -> None:
    z = terraces()
    z[90:] += 5e-11
    z[200:] = np.nan  # the frame is scanned down to line 199
    ev = scanlines.tip_change_evidence(z)
    assert ev.row == 90 and ev.probability > 0.9
    assert scanlines.tip_change_evidence(np.full((64, 64), np.nan)) == scanlines.NONE


def test_the_first_lines_bent_by_creep_are_not_tested() -> None:
    z = terraces()
    z[:6] += np.linspace(4e-10, 1e-10, 6)[:, None]  # creep: the first lines come in steeply
    assert scanlines.tip_change_evidence(z).probability < 0.5


def test_long_and_wide_frames_are_read_every_nth_line_and_still_found() -> None:
    z = terraces(1024, 1024)
    z[700:] += 5e-11
    ev = scanlines.tip_change_evidence(z)
    assert ev.probability > 0.9 and abs(ev.row - 700) <= 2


def test_median5_is_the_median() -> None:
    a = np.random.default_rng(1).normal(size=(5, 40, 7))
    np.testing.assert_array_equal(scanlines.median5(*a), np.median(a, axis=0))


def test_probability_is_the_fitted_logistic_curve() -> None:
    for jump in (0.1, 3.0, 6.0, 20.0):
        t = scanlines.LOGIT_A + scanlines.LOGIT_B * math.log(max(jump, scanlines.FLOOR))
        assert scanlines.probability(jump) == pytest.approx(1 / (1 + math.exp(-t)))
    assert scanlines.probability(3.0) < 0.1 < 0.9 < scanlines.probability(20.0)

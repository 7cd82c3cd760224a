"""Survey frames of 25–500 nm (tipd.synth.mesoscale): what the surfaces are and how tips of
each kind draw them."""

from __future__ import annotations

import numpy as np
import pytest

from tipd.synth import mesoscale
from tipd.synth.generate import generate, generic_scale
from tipd.synth.generic import generic_tip
from tipd.synth.generic import truth as generic_truth_labels
from tipd.synth.geometry import ScanGrid
from tipd.synth.imaging import image
from tipd.synth.tip import Apex, Tip
from tipd.taxonomy import TAXONOMIES

PIXEL = 0.8  # nm: a 102 nm frame at 128 px


def test_random_fields_have_unit_spread_and_the_slope_asked_for() -> None:
    rng = np.random.default_rng(0)
    smooth = mesoscale.gaussian_field((256, 256), rng, 8.0)
    assert abs(smooth.mean()) < 1e-6 and smooth.std() == pytest.approx(1.0, rel=1e-4)
    # correlated over its σ: neighbours nearly equal, 40 pixels apart nearly independent
    assert np.corrcoef(smooth[:, :-1].ravel(), smooth[:, 1:].ravel())[0, 1] > 0.98
    assert abs(np.corrcoef(smooth[:, :-40].ravel(), smooth[:, 40:].ravel())[0, 1]) < 0.2
    for beta in (2.0, 3.0):
        rough = mesoscale.power_law_field((512, 512), np.random.default_rng(1), beta)
        power = np.abs(np.fft.rfft(rough, axis=1)) ** 2
        f = np.arange(power.shape[1])
        band = (f >= 4) & (f <= 128)
        slope = np.polyfit(np.log(f[band]), np.log(power.mean(axis=0)[band]), 1)[0]
        # a line through an isotropic 2-D field of power f^-β has power f^-(β-1)
        assert slope == pytest.approx(1 - beta, abs=0.25)


def one_step_sample(height_nm: float = 0.25) -> tuple[mesoscale.MesoSample, ScanGrid]:
    """A single straight step at x = 0 running along y, under a 128 px frame of 0.8 nm pixels."""
    n = 256
    axis = (np.arange(n) - n / 2) * PIXEL
    x, _ = np.meshgrid(axis, axis)
    z = np.where(x > 0, height_nm, 0.0)
    kinds = mesoscale.adsorbate_kinds(PIXEL)  # densities 0: no adsorbates
    sample = mesoscale.MesoSample(z, (axis[0], axis[0]), PIXEL, 0, kinds, tile_nm=200.0)
    grid = ScanGrid.regular((0.0, 0.0), (128 * PIXEL, 128 * PIXEL), (128, 128))
    return sample, grid


def rise_px(line: np.ndarray) -> float:
    """Pixels between 10 % and 90 % of a rising edge."""
    lo, hi = line.min(), line.max()
    t = (line - lo) / (hi - lo)
    return float(np.argmax(t > 0.9) - np.argmax(t > 0.1))


def test_a_sharp_tip_draws_a_step_within_two_pixels_and_a_blunt_one_smears_it() -> None:
    sample, grid = one_step_sample()
    rng = np.random.default_rng(2)
    sharp = image(sample, grid, generic_tip(rng, "sharp", PIXEL, mesoscale.SURVEY_TIPS))[64]
    blunt = image(sample, grid, Tip((Apex(radius_nm=3.0 * PIXEL),)))[64]
    assert np.ptp(sharp) == pytest.approx(0.25, rel=0.02)
    assert rise_px(sharp) <= 2
    assert rise_px(blunt) >= 6


def test_a_double_tip_draws_the_step_twice_its_offset_apart() -> None:
    sample, grid = one_step_sample()
    offset = 12 * PIXEL
    double = Tip((Apex(radius_nm=0.2 * PIXEL), Apex(offset, 0.0, 0.05, 0.6, 0.2 * PIXEL)))
    line = image(sample, grid, double)[64]
    rises = np.flatnonzero(np.diff(line) > 0.02)
    # the ghost, 12 px to the left and 0.05 nm recessed, reaches the upper terrace first
    assert rises.min() == pytest.approx(64 - 12, abs=1) and rises.max() == pytest.approx(64, abs=1)
    assert len(np.unique(np.round(line[40:80], 2))) >= 3  # low, ghost step, full step


def test_survey_frames_span_their_scales_and_carry_their_truth() -> None:
    tax = TAXONOMIES["generic"]
    widths, surfaces = [], set()
    for i in [i for i in range(120) if generic_scale(6, i) == "meso"][:40]:
        f = generate("generic", i, seed=6)
        assert f.params["scale"] == "meso" and np.isfinite(f.heights_m).all()
        w = f.scan_size_nm[0]
        assert mesoscale.SCAN_NM[0] <= w <= mesoscale.SCAN_NM[1]
        widths.append(w)
        surfaces.add(f.params["surface"])
        name = tax.classes[f.primary]
        assert f.labels[f.primary] == 1, (name, f.label_names)
        if name == "good":
            assert f.label_names == ["good"] and "flicker_rows" not in f.params
        if "flicker_rows" in f.params:
            assert "tip_change" in f.label_names
    assert min(widths) < 60 and max(widths) > 200  # survey scans of every size
    assert surfaces == set(mesoscale.KINDS)


def test_an_unstable_tip_changes_only_its_bands() -> None:
    sample, grid = one_step_sample()
    z = image(sample, grid, Tip((Apex(radius_nm=0.1),)))
    out, bands = mesoscale.flicker(sample, grid, z, np.random.default_rng(5))
    assert 2 <= len(bands) <= 6
    inside = np.zeros(z.shape[0], dtype=bool)
    for a, b in bands:
        assert 1 <= b - a <= 12
        inside[a:b] = True
        assert np.abs(out[a:b] - z[a:b]).max() >= 0.05  # jumped or smeared
    np.testing.assert_array_equal(out[~inside], z[~inside])


def test_a_blunt_tip_is_labelled_blunt_only_where_its_blur_shows() -> None:
    step, grid = one_step_sample()
    blunt = Tip((Apex(radius_nm=3.0 * PIXEL),))
    a = mesoscale.A_PIXELS * PIXEL
    assert mesoscale.as_it_shows(step, grid, blunt, 0.35 * a) is blunt  # the step smears
    n = 256
    axis = (np.arange(n) - n / 2) * PIXEL
    x, _ = np.meshgrid(axis, axis)
    hills = 0.3 * np.sin(x / 40.0)  # 250 nm waves: the same through any of these apexes
    kinds = mesoscale.adsorbate_kinds(PIXEL)
    smooth = mesoscale.MesoSample(hills, (axis[0], axis[0]), PIXEL, 0, kinds, tile_nm=200.0)
    shown = mesoscale.as_it_shows(smooth, grid, blunt, 0.35 * a)
    assert shown.radius_nm < 0.35 * a and generic_truth_labels([shown], a, False, False) == {"good"}
    for i in [i for i in range(200) if generic_scale(7, i) == "meso"][:60]:
        f = generate("generic", i, seed=7, pixels=64)
        if TAXONOMIES["generic"].classes[f.primary] == "blunt":
            assert f.label_names == ["blunt"]  # every blunt survey frame has something to blur

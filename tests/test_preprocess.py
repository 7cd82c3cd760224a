"""Preprocessing: line flattening, scaling, resampling (property tests)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tipd.preprocess import flatten_lines, resample, row_median, scale_unit, to_model_input

images = arrays(
    np.float64,
    st.tuples(st.integers(2, 24), st.integers(2, 24)),
    elements=st.floats(-1e-8, 1e-8, allow_nan=False),
)


@settings(max_examples=200, deadline=None)
@given(
    z=images,
    offsets=st.lists(st.floats(-1e-6, 1e-6), min_size=24, max_size=24),
    slope=st.floats(-1e-9, 1e-9),
)
def test_flattening_ignores_line_offsets_and_tilt(
    z: np.ndarray, offsets: list[float], slope: float
) -> None:
    rows, cols = z.shape
    tilted = z + np.array(offsets[:rows])[:, None] + slope * np.arange(cols)[None, :]
    np.testing.assert_allclose(flatten_lines(tilted), flatten_lines(z), atol=1e-12)


@settings(max_examples=200, deadline=None)
@given(z=images, nan_rows=st.integers(0, 24))
def test_model_input_is_finite_and_in_range(z: np.ndarray, nan_rows: int) -> None:
    z = z.copy()
    z[: min(nan_rows, z.shape[0])] = np.nan
    out = to_model_input(z, 16)
    assert out.shape == (16, 16) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= -1 and out.max() <= 1


def test_scale_unit_maps_to_full_range_and_constant_to_zero() -> None:
    z = np.linspace(0, 1, 100).reshape(10, 10)
    s = scale_unit(z, clip_percentile=0)
    assert s.min() == -1 and s.max() == 1
    assert not scale_unit(np.full((4, 4), 3.0)).any()
    assert not scale_unit(np.full((4, 4), np.nan)).any()


def test_resample_by_integer_factor_is_area_mean() -> None:
    z = np.arange(16.0).reshape(4, 4)
    np.testing.assert_allclose(resample(z, 2), [[2.5, 4.5], [10.5, 12.5]])
    assert resample(np.ones((150, 150)), 128).shape == (128, 128)


def test_autocorrelation_has_a_side_peak_at_a_ghost_offset() -> None:
    from tipd.preprocess import autocorrelation, model_input

    rng = np.random.default_rng(0)
    base = np.zeros((64, 64))
    for r, c in rng.integers(8, 48, (12, 2)):
        base[r, c] = 1.0
    ghosted = base + 0.6 * np.roll(base, (5, 9), axis=(0, 1))
    ac = autocorrelation(ghosted)
    assert ac[32, 32] == 1.0
    side = ac[32 + 5, 32 + 9]
    assert (
        side > 0.5
        and side > np.delete(ac.ravel(), [32 * 64 + 32, 37 * 64 + 41, 27 * 64 + 23]).max()
    )
    assert autocorrelation(base)[37, 41] < 0.3
    x = model_input(rng.normal(0, 1e-10, (40, 50)), 32, ("height", "autocorrelation"))
    assert x.shape == (2, 32, 32) and np.isfinite(x).all() and np.abs(x).max() <= 1


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 9), st.integers(1, 12)),
        elements=st.floats(-1e6, 1e6, allow_nan=False) | st.sampled_from([0.0, 1.0, -1.0]),
    )
)
def test_row_median_is_numpys_median(a: np.ndarray) -> None:
    assert np.array_equal(row_median(a), np.median(a, axis=1))


def test_area_mean_resample_is_the_block_mean() -> None:
    z = np.random.default_rng(3).normal(size=(256, 384))
    want = z.reshape(64, 4, 64, 6).mean(axis=(1, 3))
    np.testing.assert_allclose(resample(z, 64), want, rtol=1e-12)

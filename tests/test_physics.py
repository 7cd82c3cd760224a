"""Tip evidence from physics on surfaces with known tips: geometric tip convolution, the echo of
a double tip, the rounded peaks of a blunt one, a change of line texture, and the memory of an
area telling a new tip from the same one."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from tipd.frames import Frame
from tipd.physics.echo import echo
from tipd.physics.linechange import texture_change
from tipd.physics.memory import SampleMemory, compare
from tipd.physics.sharpness import sharpness
from tipd.physics.view import view
from tipd.synth import retip

PX = (0.2, 0.2)  #: nm per pixel


def adsorbates(seed: int, n: int = 60, size: int = 192) -> np.ndarray:
    """A flat terrace (m) with ``n`` small round adsorbates 0.1–0.3 nm high, and 1 pm noise."""
    rng = np.random.default_rng(seed)
    z = np.zeros((size, size))
    yy, xx = np.mgrid[:size, :size]
    for _ in range(n):
        y, x = rng.uniform(-4, size + 4, 2)  # as many near the edges as in the middle
        h, r = rng.uniform(0.1, 0.3), rng.uniform(1.0, 2.0)
        z = np.maximum(z, h * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * r * r)))
    return z * 1e-9 + rng.normal(0, 1e-12, z.shape)


def test_tip_convolution_raises_the_image_and_a_point_apex_changes_nothing() -> None:
    z = adsorbates(0)
    assert np.array_equal(retip.image_through(z, PX, retip.SHARP), z)
    blunt = retip.image_through(z, PX, retip.SimTip((retip.Apex(radius_nm=2.0),), "blunt"))
    double = retip.image_through(
        z, PX, retip.SimTip((retip.Apex(), retip.Apex((2.0, 0.0), 0.02)), "double")
    )
    for im in (blunt, double):  # a dilation: never below what the sharp apex saw
        assert (im >= z - 1e-18).all() and (im > z + 1e-11).mean() > 0.02
    # the second apex, 10 px to the right, images each adsorbate again 10 px to the left
    peak = np.unravel_index(np.argmax(z[:, 20:-20]), z[:, 20:-20].shape)
    y, x = peak[0], peak[1] + 20
    assert double[y, x - 10] > z[y, x - 10] + 0.05e-9


def test_a_tip_change_switches_tips_at_its_line_with_its_jump() -> None:
    z = adsorbates(1)
    blunt = retip.SimTip((retip.Apex(radius_nm=3.0),), "blunt")
    changed = retip.image_with_change(z, PX, retip.SHARP, blunt, 100, jump_nm=0.05)
    assert np.array_equal(changed[:100], z[:100])
    np.testing.assert_allclose(changed[100:], retip.image_through(z, PX, blunt)[100:] + 0.05e-9)


def test_an_echo_is_found_at_the_apexes_offset_and_not_on_a_single_tip() -> None:
    z = adsorbates(2)
    single = echo(view(z, PX))
    ghosted = retip.image_through(
        z, PX, retip.SimTip((retip.Apex(), retip.Apex((1.6, 1.2), 0.05)), "double")
    )
    found = echo(view(ghosted, PX))
    assert single is not None and found is not None
    assert sorted((abs(found.offset_px[0]), abs(found.offset_px[1]))) == [6, 8]
    assert found.distance_nm == pytest.approx(2.0, abs=0.05)
    assert found.score > 2 * single.score and found.strength > 2 * single.strength
    assert "nm away" in found.reason()


def test_a_lattice_repeats_itself_and_is_no_echo() -> None:
    yy, xx = np.mgrid[:192, :192]
    lattice = 0.1e-9 * (np.cos(2 * np.pi * xx / 8) + np.cos(2 * np.pi * yy / 8))
    lattice += np.random.default_rng(3).normal(0, 1e-12, lattice.shape)
    found = echo(view(lattice, PX))
    assert found is None or found.periodic > 0.5 or found.score < 3


def test_a_blunt_tip_rounds_the_peaks_and_keeps_the_valleys_sharp() -> None:
    z = adsorbates(4, n=150)
    sharp = sharpness(view(z, PX))
    blunt = sharpness(
        view(retip.image_through(z, PX, retip.SimTip((retip.Apex(radius_nm=2.0),))), PX)
    )
    assert sharp is not None and blunt is not None and sharp.certain and blunt.certain
    assert blunt.asymmetry > sharp.asymmetry + 0.3
    assert "rounder" in blunt.reason()


def test_a_smooth_surface_cannot_tell_a_blunt_tip() -> None:
    rng = np.random.default_rng(5)
    hills = gaussian_filter(rng.normal(0, 1, (192, 192)), 12.0) * 1e-9
    s = sharpness(view(hills, PX))
    assert s is not None and not s.certain
    assert "cannot" in s.reason() or "nothing" in s.reason()


def test_the_texture_of_the_lines_changes_where_the_tip_did() -> None:
    z = adsorbates(6, n=200, size=256)
    blunt = retip.SimTip((retip.Apex(radius_nm=1.0),), "blunt")
    changed = retip.image_with_change(z, PX, retip.SHARP, blunt, 150)
    found = texture_change(changed)
    assert found is not None and abs(found.row - 150) <= 3 and found.ratio > 1.5


def test_the_memory_tells_a_new_tip_from_a_rescan_by_the_same_one() -> None:
    from tipd.evidence import examine, seen

    z = adsorbates(7)

    def look(data: np.ndarray, name: str) -> object:
        return seen(name, examine(Frame(data, (38.4, 38.4), frame_id=name)), {})

    reference = look(z, "first")
    rng = np.random.default_rng(8)
    rescan = look(np.roll(z, (1, 2), axis=(0, 1)) + rng.normal(0, 1e-12, z.shape), "again")
    same = compare(rescan, reference)  # type: ignore[arg-type]
    assert same.same_area and same.unchanged and same.shift_px == (1, 2)
    blunt = retip.image_through(z, PX, retip.SimTip((retip.Apex(radius_nm=2.0),)))
    worse = compare(look(blunt, "blunt"), reference)  # type: ignore[arg-type]
    assert worse.same_area and not worse.unchanged and worse.raised > 1.0
    changed = retip.image_with_change(
        z, PX, retip.SHARP, retip.SimTip((retip.Apex(radius_nm=2.0),)), 120
    )
    change = compare(look(changed, "change"), reference)  # type: ignore[arg-type]
    assert change.row is not None and abs(change.row - 120) <= 8 and change.split > 3
    elsewhere = compare(look(adsorbates(9), "elsewhere"), reference)  # type: ignore[arg-type]
    assert not elsewhere.same_area


def test_the_memory_keeps_an_operators_reference_and_forgets_the_oldest_area() -> None:
    from tipd.evidence import examine, seen
    from tipd.physics import memory

    mem = SampleMemory()
    z = adsorbates(10)
    frames = [Frame(z, (38.4, 38.4), frame_id=f"f{k}", position_nm=(k * 500.0, 0.0))
              for k in range(memory.AREAS + 2)]  # fmt: skip
    for f in frames:
        mem.keep(f, seen(f.frame_id, examine(f), {}), adopt=True)
    assert mem.reference(frames[0]) is None  # forgotten: the least recently scanned
    assert mem.reference(frames[-1]) is not None
    marked = mem.mark_good("f33")
    assert marked is not None and marked.operator
    f = frames[-1]
    mem.keep(f, seen("later", examine(f), {}), adopt=True)  # not an operator: kept
    ref = mem.reference(f)
    assert ref is not None and ref.frame_id == "f33" and ref.operator
    assert mem.mark_good("nowhere") is None

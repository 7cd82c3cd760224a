"""Labelled synthetic frames: a recipe per class of the taxonomy, seeded and deterministic.

Frame ``index`` of ``surface`` under ``seed`` is drawn from its own generator
``default_rng([seed, surface_id, index])``, so a data set is the same whatever the sharding,
order or number of workers. Classes cycle with the index (balanced sets); ``mixed`` is the share
of frames that get a second, independent condition (a double tip over a step edge, say) so that
the multi-label ground truth is exercised.

Ground truth per frame: ``labels`` (multi-label, one column per :attr:`Taxonomy.labels`,
computed from what is actually in view and which tips imaged it) and ``primary`` (the class the
recipe aimed at, for multiclass training as in the paper). ``params`` keeps every rendering
parameter.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tipd.synth.artefacts import CORRUPTIONS, apply_artefacts, corrupt, draw_artefacts
from tipd.synth.generic import TipBands
from tipd.synth.geometry import ScanGrid
from tipd.synth.imaging import (
    change_visible,
    ghost_visible,
    image,
    image_and_main,
    image_with_change,
)
from tipd.synth.surfaces import Sample, Steps, SurfaceParams, default_params
from tipd.synth.tip import (
    HSI_MODES,
    METAL_SHARP,
    Tip,
    changed_tip,
    multi_tip,
    single_tip,
)
from tipd.taxonomy import Taxonomy, taxonomy

SURFACE_IDS = {"hsi100": 1, "au111": 2, "cu111": 3, "generic": 4}
#: the generator's version per surface: raised whenever a change alters the frames a seed of
#: that surface renders, so that ``tipd synth S seed N`` names one set of frames per version.
#: Manifests record it (``training.generator``; ``revote.generator``: the frames a vote was
#: built again on). ``tests/test_synth.py`` pins a few frames per version and fails when they
#: change under an unchanged version. 1: a model whose manifest records no version.
#: generic 2: its rows surfaces show their rows (:meth:`tipd.synth.surfaces.Lattice.rows`).
#: generic 3: half its frames are 25–500 nm survey scans (:mod:`tipd.synth.mesoscale`, as of
#: its first version); generic 4: those drawn on a grid of one frame pixel, with streaks on
#: every survey frame and unstable tips among its tip changes; generic 5: fewer and lower
#: adsorbates on most survey frames, as real survey scans show them; generic 6: survey frames
#: as noisy as real fast scans (:func:`tipd.synth.mesoscale.scan_noise`); generic 7: a survey
#: frame is blunt only where the blur shows, and blunt ones get adsorbates to blur.
GENERATOR = {"hsi100": 1, "au111": 1, "cu111": 1, "generic": 7}
#: share of generic frames drawn at 25–500 nm rather than at the atomic scale
MESOSCALE_SHARE = 0.5
METAL_SCAN_NM = 30.0  #: Au/Cu frames as in the paper: 30 nm at 150 px (here at ``pixels``)
HSI_SCAN_NM = (4.0, 20.0)  #: H:Si scan sizes, log-uniform; rows need < 0.38 nm per pixel


@dataclass
class Labelled:
    """One synthetic frame with its truth.

    ``heights_m`` has shape ``(rows, cols)``, float32, metres. ``labels`` is uint8 of shape
    ``(len(taxonomy.labels),)``; ``primary`` indexes ``taxonomy.classes``.
    """

    surface: str
    heights_m: np.ndarray
    labels: np.ndarray
    primary: int
    scan_size_nm: tuple[float, float]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def label_names(self) -> list[str]:
        tax = taxonomy(self.surface)
        return [n for n, v in zip(tax.labels, self.labels, strict=True) if v]


def hsi_mode(radius_nm: float) -> str:
    """H:Si(100) imaging mode of an apex of this radius: ``atoms``, ``dimers`` or ``rows``."""
    if radius_nm < (HSI_MODES["atoms"][1] + HSI_MODES["dimers"][0]) / 2:
        return "atoms"
    if radius_nm < (HSI_MODES["dimers"][1] + HSI_MODES["rows"][0]) / 2:
        return "dimers"
    return "rows"


def steps_in_view(sample: Sample, grid: ScanGrid) -> bool:
    """True when at least one step edge crosses the frame."""
    x, y = grid.sample_xy()
    s = sample.params.steps.coordinate(x[::4, ::4], y[::4, ::4])
    if not np.isfinite(s).all():
        return False
    return bool(np.floor(s).min() != np.floor(s).max())


def kinds_in_view(sample: Sample, grid: ScanGrid, kind: str) -> int:
    """How many features (clusters) of ``kind`` have their centre inside the frame."""
    f = sample.features_near(grid, margin_nm=0.0)
    index = [k.name for k in sample.kinds].index(kind)
    sel = f.kind == index
    if not sel.any():
        return 0
    _, first = np.unique(f.group[sel], return_index=True)
    u, v = grid.to_frame(f.x[sel][first], f.y[sel][first])
    inside = (np.abs(u) <= grid.size_nm[0] / 2) & (np.abs(v) <= grid.size_nm[1] / 2)
    return int(inside.sum())


def truth_labels(
    tax: Taxonomy,
    tips: list[Tip],
    changed: bool,
    corrupted: bool,
    steps: bool,
    impurities: int,
    contaminated: bool = False,
) -> np.ndarray:
    """Multi-label truth of a frame from what imaged it and what is in view.

    The desirable classes mean what the paper's did: a good tip over a clean area. Au/Cu:
    ``individual_atoms`` only when every tip is single and sharp and nothing undesirable is in
    the frame; ``double_tip`` when any tip has two or more significant apexes; ``step_edge``
    and ``impurity`` from what is in view, whatever the tip. H:Si: the imaging mode of each
    single tip (``atoms``, ``dimers``, ``rows``), or ``generic_defect`` instead for double
    tips, corruption or a contaminated area; ``tip_change`` as a separate flag.
    """
    on: set[str] = set()
    multi = any(t.n_significant >= 2 for t in tips)
    if tax.surface == "hsi100":
        if multi or corrupted or contaminated:
            on.add("generic_defect")
        else:
            on.update(hsi_mode(t.radius_nm) for t in tips)
    else:
        good = all(t.kind() == "sharp" for t in tips)
        if good and not (changed or corrupted or steps or impurities):
            on.add("individual_atoms")
        if multi:
            on.add("double_tip")
        if steps:
            on.add("step_edge")
        if impurities:
            on.add("impurity")
        if corrupted:
            on.add("corruption")
    if changed:
        on.add("tip_change")
    return np.array([1 if n in on else 0 for n in tax.labels], dtype=np.uint8)


def _random_steps(rng: np.random.Generator, base: Steps, size_nm: float, present: bool) -> Steps:
    """Steps that surely cross the frame (``present``) or surely stay out of it."""
    if not present:
        return Steps(height_nm=base.height_nm)
    spacing = float(rng.uniform(0.2, 0.9)) * size_nm
    return Steps(
        angle=base.angle,
        spacing_nm=spacing,
        offset_nm=float(rng.uniform(0, spacing)),
        height_nm=base.height_nm,
        wiggle=tuple((a * spacing / 40, k, p) for a, k, p in base.wiggle),
    )


def _tip_for(rng: np.random.Generator, surface: str, want: str, strong: bool = False) -> Tip:
    """A tip of kind ``want``: an H:Si imaging mode, ``sharp``, ``double`` or ``multiple``."""
    band = HSI_MODES.get(want, METAL_SHARP if surface != "hsi100" else HSI_MODES["dimers"])
    if want == "double":
        return multi_tip(rng, band, 2, strong)
    if want == "multiple":
        return multi_tip(rng, band, int(rng.integers(3, 5)), strong)
    return single_tip(rng, band)


def generate(
    surface: str,
    index: int,
    seed: int = 0,
    pixels: int = 128,
    cls: str | None = None,
    mixed: float = 0.2,
) -> Labelled:
    """Frame ``index`` of ``surface`` (deterministic in ``seed, index``), ``pixels`` square.

    ``cls`` forces the primary class (default: classes cycle with ``index``).
    """
    tax = taxonomy(surface)
    rng = np.random.default_rng([seed & 0xFFFFFFFF, SURFACE_IDS[surface], index])
    primary = cls if cls is not None else tax.classes[index % len(tax.classes)]
    if primary not in tax.classes:
        raise KeyError(f"unknown class {primary!r} for {surface}; known: {', '.join(tax.classes)}")
    if surface == "hsi100":
        return _generate_hsi(tax, rng, primary, pixels, mixed, seed, index)
    if surface == "generic":
        return _generate_generic(tax, rng, primary, pixels, mixed, seed, index)
    return _generate_metal(tax, rng, primary, pixels, mixed, seed, index)


SYNTH_TILE_NM = 80.0  #: feature tile of a synthetic sample; each frame sits inside one tile


def _grid(rng: np.random.Generator, size_nm: float, pixels: int) -> tuple[ScanGrid, dict[str, Any]]:
    # the frame sits in the middle of one feature tile so that only one tile is ever drawn
    cx, cy = (rng.integers(-8, 8, size=2) + 0.5) * SYNTH_TILE_NM
    centre = (float(cx), float(cy))
    grid = ScanGrid.regular(centre, (size_nm, size_nm), (pixels, pixels))
    drift = (float(rng.normal(0, 0.02 * size_nm)), float(rng.normal(0, 0.02 * size_nm)))
    creep = float(rng.uniform(0.3, 3.0)) if rng.random() < 0.3 else 0.0
    creep_rows = float(rng.uniform(3, max(3.0, 0.15 * pixels)))
    grid = grid.distorted(drift, creep, creep_rows)
    return grid, {
        "centre_nm": list(centre),
        "drift_nm": drift,
        "creep_nm": creep,
        "creep_rows": creep_rows,
    }


def _render(
    sample: Sample,
    grid: ScanGrid,
    rng: np.random.Generator,
    draw_tip: Callable[[bool], Tip],
    draw_after: Callable[[bool], Tip] | None,
    rows_range: tuple[float, float] = (0.15, 0.85),
    need_ghost: bool = False,
) -> tuple[np.ndarray, list[Tip], bool, dict[str, Any]]:
    """Image through a tip from ``draw_tip`` or, with ``draw_after``, with a tip change to
    the tip it draws, at a line within ``rows_range`` (fractions of the frame). Both take
    ``strong``: a tip whose ghost or change cannot be missed.

    Labels must say what the frame shows: a double tip with nothing to ghost looks single, and
    a tip change that alters nothing visible is no tip change. So the render is checked
    (:func:`tipd.synth.imaging.ghost_visible`, :func:`~tipd.synth.imaging.change_visible`)
    and, when the recipe needs a visible ghost or change, drawn again (the last tries with a
    strong tip). Returns ``(z, tips as they show, change shows, params)``.
    """
    features = sample.features_near(grid, margin_nm=6.0)
    rows = len(grid.v)
    for attempt in range(6):
        if need_ghost and attempt == 3:  # nothing to ghost in view: place a few features
            size = grid.size_nm[0]
            for _ in range(4):
                u, v = rng.uniform(-0.4, 0.4, size=2) * size
                cx, cy = grid.centre_nm[0] + u, grid.centre_nm[1] + v
                sample.add(sample.draw_feature(sample.kinds[0].name, cx, cy, rng))
            features = sample.features_near(grid, margin_nm=6.0)
        tip = draw_tip(attempt >= 3)
        params: dict[str, Any] = {"tip": tip.to_dict(), "attempts": attempt + 1}
        if draw_after is None:
            z, main = image_and_main(sample, grid, tip, features)
            shows = [
                tip if ghost_visible(sample, grid, tip, z, features, main) else Tip((tip.main,))
            ]
            params["ghost_visible"] = shows[0] is tip and tip.n_significant >= 2
            if not need_ghost or params["ghost_visible"]:
                return z, shows, False, params
            continue
        row = int(rng.integers(int(rows_range[0] * rows), int(rows_range[1] * rows)))
        after = changed_tip(rng, tip, draw_after(attempt >= 3), strong=attempt >= 3)
        jump = float(rng.choice([-1, 1]) * rng.uniform(0.02, 0.3))
        col = int(rng.integers(0, len(grid.u)))
        whole_before = image(sample, grid, tip, features)
        z = image_with_change(sample, grid, tip, after, row, jump, col, whole_before)
        visible = change_visible(sample, grid, tip, z, row, features, whole_before)
        params.update(
            tip_after=after.to_dict(),
            change_row=row,
            change_col=col,
            jump_nm=jump,
            change_visible=visible,
        )
        shows = [
            t if ghost_visible(sample, grid.rows(a, b), t, z[a:b], features) else Tip((t.main,))
            for t, a, b in ((tip, 0, row), (after, row, rows))
        ]
        ghost_ok = not need_ghost or any(t.n_significant >= 2 for t in shows)
        if (visible and ghost_ok) or attempt == 5:
            return z, shows if visible else shows[:1], visible, params
    return z, shows, False, params


def _finish(
    tax: Taxonomy,
    z_nm: np.ndarray,
    grid: ScanGrid,
    rng: np.random.Generator,
    corruption: str | None,
    labels: np.ndarray,
    primary: str,
    params: dict[str, Any],
) -> Labelled:
    art = draw_artefacts(rng, low_temperature=tax.surface != "hsi100")
    out = apply_artefacts(z_nm, art, rng, grid.pixel_nm)
    if corruption is not None:
        out = corrupt(out, rng, corruption)
    params.update({"artefacts": art.to_dict(), "corruption": corruption, "class": primary})
    return Labelled(
        surface=tax.surface,
        heights_m=(out * 1e-9).astype(np.float32),
        labels=labels,
        primary=tax.classes.index(primary),
        scan_size_nm=grid.size_nm,
        params=params,
    )


def _generate_metal(
    tax: Taxonomy,
    rng: np.random.Generator,
    primary: str,
    pixels: int,
    mixed: float,
    seed: int,
    index: int,
) -> Labelled:
    surface = tax.surface
    size = METAL_SCAN_NM
    grid, geo = _grid(rng, size, pixels)
    secondary = None
    if rng.random() < mixed:
        # a second condition must leave the primary class true: a good tip stays good
        spoil = (
            ("double_tip", "tip_change", "step_edge", "impurity")
            if primary == "individual_atoms"
            else ()
        )
        options = [
            c
            for c in ("double_tip", "step_edge", "impurity", "tip_change")
            if c != primary and c not in spoil
        ]
        secondary = str(rng.choice(options)) if options else None
    wants = {primary, secondary}
    base = default_params(surface, rng)
    params = SurfaceParams(
        surface=surface,
        lattice_angle=base.lattice_angle,
        steps=_random_steps(rng, base.steps, size, "step_edge" in wants),
        herringbone=base.herringbone * float(rng.uniform(0.6, 1.4)),
        herringbone_angle=base.herringbone_angle,
        herringbone_phase=base.herringbone_phase,
        waves=base.waves * float(rng.uniform(0.5, 1.5)),
    )
    adatoms = float(rng.uniform(0.006, 0.02))  # enough adatoms in view to show a ghost
    sample = Sample(
        params,
        seed=int(rng.integers(2**31)),
        densities={"adatom": adatoms, "impurity": 0.0},
        tile_nm=SYNTH_TILE_NM,
    )
    if "impurity" in wants:
        for _ in range(int(rng.integers(1, 4))):
            u, v = rng.uniform(-0.4, 0.4, size=2) * size
            x = grid.centre_nm[0] + u
            y = grid.centre_nm[1] + v
            sample.add(sample.draw_feature("impurity", x, y, rng))
    kind = "sharp"
    if "double_tip" in wants:
        kind = "double" if rng.random() < 0.75 else "multiple"
    change_to = str(rng.choice(["sharp", "double"], p=[0.7, 0.3]))
    z, tips, changed, tip_params = _render(
        sample,
        grid,
        rng,
        lambda strong: _tip_for(rng, surface, kind, strong),
        (lambda strong: _tip_for(rng, surface, change_to, strong))
        if "tip_change" in wants
        else None,
        need_ghost="double_tip" in wants,
    )
    corruption = str(rng.choice(CORRUPTIONS)) if primary == "corruption" else None
    labels = truth_labels(
        tax,
        tips,
        changed,
        corruption is not None,
        steps_in_view(sample, grid),
        kinds_in_view(sample, grid, "impurity"),
    )
    meta = {
        "seed": seed,
        "index": index,
        "secondary": secondary,
        **geo,
        **tip_params,
        "adatom_density": adatoms,
        "step_spacing_nm": params.steps.spacing_nm,
    }
    return _finish(tax, z, grid, rng, corruption, labels, primary, meta)


def _generate_hsi(
    tax: Taxonomy,
    rng: np.random.Generator,
    primary: str,
    pixels: int,
    mixed: float,
    seed: int,
    index: int,
) -> Labelled:
    lo, hi = HSI_SCAN_NM
    size = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    size = min(size, 0.3 * pixels)  # keep rows resolvable (pixel < 0.3 nm)
    grid, geo = _grid(rng, size, pixels)
    base = default_params("hsi100", rng)
    steps = base.steps
    if rng.random() < 0.5:  # Si(100) terraces are narrow: often a step or two in view
        steps = _random_steps(rng, base.steps, size * 1.5, True)
    params = SurfaceParams(
        surface="hsi100",
        lattice_angle=float(rng.uniform(0, math.pi)),  # scans at any rotation, as the paper's
        steps=steps,
        buckling=float(rng.uniform(0.1, 0.6))
        if primary == "dimers" and rng.random() < 0.5
        else 0.0,
        herringbone=0.0,
        waves=0.0,
    )
    densities = {
        "dangling_bond": float(rng.uniform(0.002, 0.03)),
        "vacancy": float(rng.uniform(0.0, 0.01)),
        "cluster": 0.0,
    }
    defect = None
    if primary == "generic_defect":
        defect = str(rng.choice(["contamination", "double", "corruption", "vacancies"]))
        if defect == "contamination":
            densities["cluster"] = float(rng.uniform(0.01, 0.05))
        elif defect == "vacancies":
            densities["vacancy"] = float(rng.uniform(0.05, 0.15))
            densities["dangling_bond"] = float(rng.uniform(0.05, 0.15))
    sample = Sample(
        params, seed=int(rng.integers(2**31)), densities=densities, tile_nm=SYNTH_TILE_NM
    )
    if defect == "contamination":
        for _ in range(int(rng.integers(2, 6))):
            u, v = rng.uniform(-0.45, 0.45, size=2) * size
            sample.add(
                sample.draw_feature("cluster", grid.centre_nm[0] + u, grid.centre_nm[1] + v, rng)
            )
    mode = primary if primary in HSI_MODES else str(rng.choice(list(HSI_MODES)))
    n_apex = 2 if rng.random() < 0.75 else 3

    def draw(strong: bool) -> Tip:
        if defect == "double":
            return multi_tip(rng, HSI_MODES[mode], n_apex, strong)
        return single_tip(rng, HSI_MODES[mode])

    change = rng.random() < 0.3
    change_to = mode if rng.random() < 0.6 else str(rng.choice(list(HSI_MODES)))
    # when the mode changes, the tip before must image most lines so the class stays true
    rows_range = (0.15, 0.85) if change_to == mode else (0.55, 0.85)
    z, tips, changed, tip_params = _render(
        sample,
        grid,
        rng,
        draw,
        (lambda strong: single_tip(rng, HSI_MODES[change_to])) if change else None,
        rows_range,
        need_ghost=defect == "double",
    )
    corruption = str(rng.choice(CORRUPTIONS)) if defect == "corruption" else None
    labels = truth_labels(
        tax,
        tips,
        changed,
        corruption is not None,
        False,
        0,
        contaminated=defect in ("contamination", "vacancies"),
    )
    meta = {
        "seed": seed,
        "index": index,
        "defect": defect,
        "mode": mode,
        **geo,
        **tip_params,
        "buckling": params.buckling,
        "step_spacing_nm": params.steps.spacing_nm,
    }
    return _finish(tax, z, grid, rng, corruption, labels, primary, meta)


def _render_generic(
    sample: Sample,
    grid: ScanGrid,
    rng: np.random.Generator,
    primary: str,
    unit: float,
    bands: TipBands,
) -> tuple[np.ndarray, list[Tip], bool, dict[str, Any]]:
    """:func:`_render` with the generic tips of ``bands`` in units of ``unit`` (nm): the
    class's tip and, for a tip change, a sharp, blunt or double one after it."""
    from tipd.synth import generic

    change_to = str(rng.choice(["sharp", "blunt", "double"]))
    return _render(
        sample,
        grid,
        rng,
        lambda strong: generic.tip_for_class(rng, primary, unit, bands),
        (lambda strong: generic.generic_tip(rng, change_to, unit, bands))
        if primary == "tip_change"
        else None,
        need_ghost=primary == "double_tip",
    )


def generic_scale(seed: int, index: int) -> str:
    """``meso`` or ``atomic``: the scale of generic frame ``index`` of ``seed``, drawn from a
    stream of its own (so the atomic frames are those of generator version 2)."""
    scale_rng = np.random.default_rng([seed & 0xFFFFFFFF, SURFACE_IDS["generic"], index, 11])
    return "meso" if scale_rng.random() < MESOSCALE_SHARE else "atomic"


def drawn_as(surface: str, version: int, seed: int, index: int) -> bool:
    """True when frame ``index`` of ``seed`` is drawn as generator ``version`` of ``surface``
    drew it: every frame of the current version; of earlier generic versions, the atomic-scale
    frames (exactly those of versions 2 on; version 1 drew its rows surfaces without their
    rows, and versions 3 on drew their survey frames otherwise).
    ``ValueError`` for a version whose frames this generator no longer draws."""
    if version == GENERATOR[surface]:
        return True
    if surface == "generic" and 1 <= version < GENERATOR["generic"]:
        return generic_scale(seed, index) == "atomic"
    raise ValueError(f"{surface} frames of generator version {version} are no longer drawn")


def _generate_generic(
    tax: Taxonomy,
    rng: np.random.Generator,
    primary: str,
    pixels: int,
    mixed: float,
    seed: int,
    index: int,
) -> Labelled:
    """A random surface imaged in a surface-agnostic state: at the atomic scale (see
    :mod:`tipd.synth.generic`) or, for :data:`MESOSCALE_SHARE` of the frames, at 25–500 nm
    (:mod:`tipd.synth.mesoscale`). Which of the two is drawn from a stream of its own, so the
    atomic frames are those of generator version 2 at the same seed and index."""
    from tipd.synth import generic

    if generic_scale(seed, index) == "meso":
        return _generate_mesoscale(tax, rng, primary, pixels, seed, index)
    params, a, densities, desc = generic.random_surface(rng)
    size = float(np.clip(pixels * a / rng.uniform(4, 10), 3.0, 80.0))
    grid, geo = _grid(rng, size, pixels)
    sample = generic.make_sample(params, densities, int(rng.integers(2**31)), SYNTH_TILE_NM, a)
    for _ in range(int(rng.integers(1, 4))):  # features a ghost can double
        u, v = rng.uniform(-0.4, 0.4, size=2) * size
        sample.add(
            sample.draw_feature("molecule", grid.centre_nm[0] + u, grid.centre_nm[1] + v, rng)
        )
    z, tips, changed, tip_params = _render_generic(sample, grid, rng, primary, a, generic.ATOMIC)
    corruption = str(rng.choice(CORRUPTIONS)) if primary == "corruption" else None
    on = generic.truth(tips, a, changed, corruption is not None)
    labels = np.array([1 if n in on else 0 for n in tax.labels], dtype=np.uint8)
    meta = {"seed": seed, "index": index, **desc, **geo, **tip_params}
    return _finish(tax, z, grid, rng, corruption, labels, primary, meta)


def _generate_mesoscale(
    tax: Taxonomy, rng: np.random.Generator, primary: str, pixels: int, seed: int, index: int
) -> Labelled:
    """A 25–500 nm frame of terraces, islands, grains or rough ground (see
    :mod:`tipd.synth.mesoscale`) imaged in a surface-agnostic state."""
    from tipd.synth import generic, mesoscale

    lo, hi = mesoscale.SCAN_NM
    size = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    pixel = size / pixels
    grid, geo = _grid(rng, size, pixels)
    margin = 0.12 * size + mesoscale.GHOST_MAX_PX * pixel + 8 * pixel
    sample, desc = mesoscale.make_sample(rng, grid.centre_nm, size, pixels, margin)
    if primary == "blunt":  # a blunt tip shows where there is something sharp to blur
        for _ in range(int(rng.integers(3, 9))):
            u, v = rng.uniform(-0.4, 0.4, size=2) * size
            cx, cy = grid.centre_nm[0] + u, grid.centre_nm[1] + v
            sample.add(sample.draw_feature("adsorbate", cx, cy, rng))
    z, tips, changed, tip_params = _render_generic(
        sample, grid, rng, primary, pixel, mesoscale.SURVEY_TIPS
    )
    a = mesoscale.A_PIXELS * pixel
    spans = (
        [(0, pixels)]
        if len(tips) == 1
        else [(0, tip_params["change_row"]), (tip_params["change_row"], pixels)]
    )
    tips = [
        mesoscale.as_it_shows(sample, grid.rows(lo_row, hi_row), t, generic.BLUNT * a)
        for t, (lo_row, hi_row) in zip(tips, spans, strict=True)
    ]
    if changed and rng.random() < 0.4:  # a tip that keeps changing, as unstable ones do
        z, tip_params["flicker_rows"] = mesoscale.flicker(sample, grid, z, rng)
    step_nm = float(desc.get("step_nm", 0.2))
    defects = {**mesoscale.scan_noise(z, rng), **mesoscale.streaks(z, rng, step_nm)}
    corruption = str(rng.choice(CORRUPTIONS)) if primary == "corruption" else None
    on = generic.truth(tips, a, changed, corruption is not None)
    labels = np.array([1 if n in on else 0 for n in tax.labels], dtype=np.uint8)
    meta = {"seed": seed, "index": index, "scale": "meso", **desc, **geo, **tip_params, **defects}
    return _finish(tax, z, grid, rng, corruption, labels, primary, meta)

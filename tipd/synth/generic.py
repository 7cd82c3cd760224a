"""Frames of surfaces nobody has labelled: randomised lattices, rows, moirés, molecules,
islands and steps, imaged by tips in the states that do not depend on the surface.

This is the training data of ``models/generic`` (beyond the paper, whose ensembles each know
one surface). Every frame draws a new surface:

* a 2-D Bravais lattice of spacing 0.25–2 nm with any angle (square, hexagonal, oblique) and a
  basis of one to three lobes; or 1-D rows; or two lattices of nearly equal spacing and angle
  (a moiré with a long beat period);
* molecules (round or paired blobs), pits, islands of 0.1–0.4 nm and monatomic-like steps of
  0.1–0.35 nm;
* a scan size such that the lattice spans 4–10 pixels (resolved when the tip is sharp).

Tip states are relative to the lattice spacing ``a``: sharp σ = 0.05–0.18 a, blunt σ =
0.45–0.9 a (the lattice is lost, larger features remain), double tips ghost molecules, islands
and steps 1.5–6 a (at least 0.5 nm) away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tipd.synth.surfaces import FeatureKind, Islands, Lattice, Sample, Steps, SurfaceParams
from tipd.synth.tip import Apex, Tip

GENERIC_KINDS = (
    FeatureKind("molecule", 0.0, (0.08, 0.3), (0.3, 0.8), (1, 2), 0.8),
    FeatureKind("pit", 0.0, (-0.15, -0.05), (0.3, 0.8)),
    FeatureKind("cluster", 0.0, (0.2, 0.6), (0.4, 1.0), (3, 8), 1.4),
)


def random_lattice(rng: np.random.Generator, a: float) -> Lattice:
    """A Bravais lattice of spacing ``a`` (nm) with a random angle and basis."""
    gamma = float(rng.choice([math.pi / 2, math.pi / 3, rng.uniform(math.pi / 3, 2 * math.pi / 3)]))
    b = a * float(rng.choice([1.0, rng.uniform(1.0, 2.0)]))
    a1 = (a, 0.0)
    a2 = (b * math.cos(gamma), b * math.sin(gamma))
    n = int(rng.integers(1, 4))
    basis = [(0.0, 0.0, 0.05)]
    for _ in range(n - 1):
        u, v = rng.uniform(0.2, 0.8, 2)
        basis.append((u * a1[0] + v * a2[0], u * a1[1] + v * a2[1], float(rng.uniform(0.01, 0.05))))
    lobe = float(rng.uniform(0.12, 0.3)) * a
    return Lattice.from_cell(a1, a2, basis, lobe_nm=lobe, nmax=4)


def random_rows(rng: np.random.Generator, a: float) -> Lattice:
    """1-D rows of period ``a`` (nm), ridges 0.06 nm high of σ 0.12–0.3 ``a`` (as the lobes of
    :func:`random_lattice`)."""
    return Lattice.rows(a, 0.06, lobe_nm=float(rng.uniform(0.12, 0.3)) * a)


def random_surface(
    rng: np.random.Generator,
) -> tuple[SurfaceParams, float, dict[str, float], dict[str, Any]]:
    """``(params, lattice spacing a in nm, feature densities per nm², description)``."""
    a = float(math.exp(rng.uniform(math.log(0.25), math.log(2.0))))
    kind = str(rng.choice(["lattice", "lattice", "rows", "moire"]))
    if kind == "rows":
        lattices: tuple[tuple[Lattice, float], ...] = ((random_rows(rng, a), 0.0),)
    elif kind == "moire":
        lat = random_lattice(rng, a)
        other = Lattice(lat.G * float(rng.uniform(0.9, 0.97)), lat.c * 0.7)
        lattices = ((lat, 0.0), (other, float(rng.uniform(-0.08, 0.08))))
    else:
        lattices = ((random_lattice(rng, a), 0.0),)
    steps = Steps(
        angle=float(rng.uniform(0, 2 * math.pi)),
        spacing_nm=float(rng.uniform(8, 80)) if rng.random() < 0.4 else math.inf,
        offset_nm=float(rng.uniform(0, 50)),
        height_nm=float(rng.uniform(0.1, 0.35)),
        wiggle=(
            (
                float(rng.uniform(0, 3)),
                float(2 * math.pi / rng.uniform(10, 50)),
                float(rng.uniform(0, 6.3)),
            ),
        ),
    )
    islands = None
    if rng.random() < 0.3:
        islands = Islands.random(
            rng,
            float(rng.uniform(0.1, 0.4)),
            float(rng.uniform(4, 20)) * a,
            float(rng.uniform(0.1, 0.4)),
        )
    params = SurfaceParams(
        surface="generic",
        lattice_angle=float(rng.uniform(0, math.pi)),
        steps=steps,
        herringbone=0.0,
        waves=0.0,
        lattices=lattices,
        islands=islands,
    )
    densities = {
        "molecule": float(rng.uniform(0.5, 3.0)) / (10 * a) ** 2,
        "pit": float(rng.uniform(0, 0.5)) / (10 * a) ** 2,
        "cluster": float(rng.uniform(0, 0.2)) / (10 * a) ** 2,
    }
    return (
        params,
        a,
        densities,
        {
            "surface": kind,
            "a_nm": a,
            "islands": islands is not None,
            "steps": math.isfinite(steps.spacing_nm),
        },
    )


@dataclass(frozen=True)
class TipBands:
    """The tips of one scale of generic frames, in units of a length ``unit`` (nm) that the
    frame sets: the lattice spacing of atomic frames, the pixel of survey frames. Each band is
    a uniform range: the Gaussian σ of a sharp and of a blunt apex, how far a ghost apex sits
    (never closer than ``ghost_min_nm``), how far it is recessed (nm) and its σ relative to the
    main apex's."""

    sharp: tuple[float, float]
    blunt: tuple[float, float]
    ghost_distance: tuple[float, float]
    ghost_min_nm: float
    ghost_dz_nm: tuple[float, float]
    ghost_radius: tuple[float, float]


#: atomic frames, in lattice spacings: blunt tips lose the lattice, larger features remain
ATOMIC = TipBands((0.05, 0.18), (0.45, 0.9), (1.5, 6.0), 0.5, (0.0, 0.03), (0.8, 1.5))


def generic_tip(rng: np.random.Generator, kind: str, unit: float, bands: TipBands = ATOMIC) -> Tip:
    """A tip of ``kind`` (sharp, blunt, double, multiple) scaled to ``unit`` (nm)."""
    if kind == "blunt":
        return Tip((Apex(radius_nm=float(rng.uniform(*bands.blunt)) * unit),))
    main = Apex(radius_nm=float(rng.uniform(*bands.sharp)) * unit)
    if kind == "sharp":
        return Tip((main,))
    ghosts = []
    for _ in range(1 if kind == "double" else int(rng.integers(2, 4))):
        d = max(bands.ghost_min_nm, float(rng.uniform(*bands.ghost_distance)) * unit)
        ang = float(rng.uniform(0, 2 * math.pi))
        ghosts.append(
            Apex(
                d * math.cos(ang),
                d * math.sin(ang),
                float(rng.uniform(*bands.ghost_dz_nm)),
                float(rng.uniform(0.35, 1.0)),
                main.radius_nm * float(rng.uniform(*bands.ghost_radius)),
            )
        )
    return Tip((main, *ghosts))


#: a tip is blunt from an apex σ of this many lengths ``a`` (:func:`truth`)
BLUNT = 0.35


def truth(tips: list[Tip], a: float, changed: bool, corrupted: bool) -> set[str]:
    """Generic labels: good only for a single sharp tip, nothing changed or corrupted."""
    on: set[str] = set()
    if any(t.n_significant >= 2 for t in tips):
        on.add("double_tip")
    elif any(t.radius_nm >= BLUNT * a for t in tips):
        on.add("blunt")
    elif not (changed or corrupted):
        on.add("good")
    if changed:
        on.add("tip_change")
    if corrupted:
        on.add("corruption")
    return on


def make_sample(
    params: SurfaceParams, densities: dict[str, float], seed: int, tile_nm: float, a: float
) -> Sample:
    """A sample whose molecules and clusters scale with the lattice spacing ``a`` (nm)."""
    s = float(np.clip(a / 0.5, 0.6, 3.0))
    kinds = tuple(
        FeatureKind(
            k.name,
            k.density,
            k.height_nm,
            (k.width_nm[0] * s, k.width_nm[1] * s),
            k.cluster,
            k.spread_nm * s,
        )
        for k in GENERIC_KINDS
    )
    return Sample(params, seed=seed, densities=densities, tile_nm=tile_nm, kinds=kinds)


def tip_for_class(
    rng: np.random.Generator, primary: str, unit: float, bands: TipBands = ATOMIC
) -> Tip:
    """The tip a generic frame of class ``primary`` starts with (``unit``, ``bands``: as
    :func:`generic_tip`)."""
    if primary == "double_tip":
        return generic_tip(rng, "double" if rng.random() < 0.75 else "multiple", unit, bands)
    return generic_tip(rng, "blunt" if primary == "blunt" else "sharp", unit, bands)

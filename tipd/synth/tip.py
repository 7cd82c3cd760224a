"""The tip model: one or more apexes, each a Gaussian imaging kernel at an offset.

Constant-current STM images the surface through every apex at once. Apex ``i`` sits at lateral
offset ``(dx, dy)`` (nm) and ``dz`` (nm) above the lowest apex; it sees the surface height
``h_i(x) = (h ⊛ G_{r_i})(x + d_i)`` blurred by its own radius ``r_i``. The tunnelling current
is the sum ``Σ w_i exp(-2κ (z - h_i + dz_i))``, so at constant current the recorded height is

    z(x) = (1 / 2κ) · ln Σ_i w_i · exp(2κ (h_i(x) - dz_i))

with 2κ ≈ 20 nm⁻¹ (κ ≈ 1 Å⁻¹ for a 4–5 eV barrier). One narrow apex images atoms; a wide one
("blunt") loses atoms but keeps rows and steps; two or more apexes 0.5–3 nm apart ghost every
feature in the same direction (DESIGN.md, "Physics for synthetic frames").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from tipd.synth.surfaces import TWO_KAPPA_PER_NM

GHOST_MIN = 0.12  #: effective weight above which an extra apex counts as a second tip

#: Apex radius bands (Gaussian σ of the imaging kernel, nm). Per surface: below ``sharp_max``
#: the tip is sharp; above ``blunt_min`` blunt. For H:Si(100) the three imaging modes.
HSI_MODES = {"atoms": (0.03, 0.065), "dimers": (0.09, 0.135), "rows": (0.17, 0.25)}
METAL_SHARP = (0.12, 0.30)
METAL_BLUNT = (0.6, 1.2)


@dataclass(frozen=True)
class Apex:
    """One tip apex: offset ``dx_nm, dy_nm`` (nm) from the tip reference, ``dz_nm`` (nm) above
    the lowest apex, tunnelling ``weight`` (0–1) and imaging ``radius_nm`` (Gaussian σ, nm)."""

    dx_nm: float = 0.0
    dy_nm: float = 0.0
    dz_nm: float = 0.0
    weight: float = 1.0
    radius_nm: float = 0.2

    @property
    def effective_weight(self) -> float:
        """Share of current at equal surface height: ``w · exp(-2κ dz)``."""
        return self.weight * math.exp(-TWO_KAPPA_PER_NM * self.dz_nm)


@dataclass(frozen=True)
class Tip:
    """A tip: its apexes (the first is the main one) and a free-form note of its history."""

    apexes: tuple[Apex, ...]

    @property
    def main(self) -> Apex:
        return max(self.apexes, key=lambda a: a.effective_weight)

    @property
    def n_significant(self) -> int:
        """How many apexes carry at least :data:`GHOST_MIN` of the main apex's current."""
        top = self.main.effective_weight
        return sum(1 for a in self.apexes if a.effective_weight >= GHOST_MIN * top)

    @property
    def radius_nm(self) -> float:
        """Imaging radius of the main apex, nm."""
        return self.main.radius_nm

    def kind(self, blunt_min: float = 0.45) -> str:
        """``sharp``, ``blunt``, ``double`` or ``multiple``."""
        n = self.n_significant
        if n >= 3:
            return "multiple"
        if n == 2:
            return "double"
        return "blunt" if self.radius_nm >= blunt_min else "sharp"

    def shifted(self, dx_nm: float, dy_nm: float) -> Tip:
        """The same tip with every apex moved laterally (a tip change that shifts the apex)."""
        return Tip(
            tuple(replace(a, dx_nm=a.dx_nm + dx_nm, dy_nm=a.dy_nm + dy_nm) for a in self.apexes)
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind(),
            "apexes": [{k: round(float(v), 5) for k, v in a.__dict__.items()} for a in self.apexes],
        }


def _uniform(rng: np.random.Generator, band: tuple[float, float]) -> float:
    return float(rng.uniform(*band))


def single_tip(rng: np.random.Generator, radius_band: tuple[float, float]) -> Tip:
    """One apex with radius drawn uniformly from ``radius_band`` (nm)."""
    return Tip((Apex(radius_nm=_uniform(rng, radius_band)),))


def ghost_apex(
    rng: np.random.Generator, radius_nm: float, direction: float | None = None, strong: bool = False
) -> Apex:
    """A second apex 0.5–3 nm away with effective relative weight 0.25–1 (``strong``: 1–3 nm,
    0.6–1, for a ghost that cannot be missed)."""
    distance = float(rng.uniform(1.0, 3.0) if strong else rng.uniform(0.5, 3.0))
    angle = float(rng.uniform(0, 2 * math.pi)) if direction is None else direction
    dz = float(rng.uniform(0.0, 0.04))
    target = float(rng.uniform(0.6, 1.0) if strong else rng.uniform(0.25, 1.0))
    weight = min(1.0, target * math.exp(TWO_KAPPA_PER_NM * dz))
    return Apex(
        dx_nm=distance * math.cos(angle),
        dy_nm=distance * math.sin(angle),
        dz_nm=dz,
        weight=weight,
        radius_nm=radius_nm * float(rng.uniform(0.8, 1.4)),
    )


def multi_tip(
    rng: np.random.Generator, radius_band: tuple[float, float], n: int, strong: bool = False
) -> Tip:
    """A main apex and ``n - 1`` ghosts (n = 2: double tip, n ≥ 3: multiple tip)."""
    main = Apex(radius_nm=_uniform(rng, radius_band))
    return Tip((main, *(ghost_apex(rng, main.radius_nm, strong=strong) for _ in range(n - 1))))


def changed_tip(
    rng: np.random.Generator, tip: Tip, new: Tip | None = None, strong: bool = False
) -> Tip:
    """The tip after a tip change: ``new`` (or ``tip``) with the apex moved 0.3–1.5 nm
    (``strong``: 1–2 nm)."""
    base = tip if new is None else new
    shift = float(rng.uniform(1.0, 2.0) if strong else rng.uniform(0.3, 1.5))
    angle = float(rng.uniform(0, 2 * math.pi))
    return base.shifted(shift * math.cos(angle), shift * math.sin(angle))

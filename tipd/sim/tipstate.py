"""The virtual microscope's hidden tip: how it degrades on its own and how it answers pulses
and crashes.

Every number here is a modelling choice, marked as such:

* **[guess]**: chosen so that the demo and the closed-loop benchmark show the behaviour
  within minutes; no source gives a rate for "a tip".
* **[lit]**: follows a published figure or a qualitative report, cited beside it.

Sources used: Krull et al., Commun. Phys. 3, 54 (2020) ("DeepSPM"): conditioning by bias pulses
(±2.5, ±4, ±8 V, 200 ms) and dips (0.8–5 nm); several actions are usually needed before a tip
is good, and the outcome of any one action is random. Rashidi & Wolkow, ACS Nano 12, 5185
(2018): tip-shaping by controlled contacts on H:Si, again repeated until the tip images well.
Gordon et al. (2019): tip changes appear as horizontal discontinuities at one scan line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tipd.synth.tip import HSI_MODES, METAL_BLUNT, METAL_SHARP, Apex, Tip, changed_tip, multi_tip

TIP_KINDS = ("sharp", "blunt", "double", "multiple", "contaminated")


@dataclass(frozen=True)
class TipRates:
    """Rates of spontaneous degradation (all **[guess]**, tuned for a lively demo)."""

    change_per_line: float = 1 / 4000  #: spontaneous tip change probability per scan line
    contaminated_factor: float = 8.0  #: a contaminated tip changes this much more often
    wear_per_frame: float = 0.01  #: apex radius grows by this fraction per frame (blunting)
    pickup_per_frame: float = 0.01  #: probability per frame of picking up an adsorbate
    #: what a spontaneous change turns a tip into (sharp, blunt, double, multiple)
    change_to: tuple[float, float, float, float] = (0.25, 0.3, 0.35, 0.1)


@dataclass
class HiddenTip:
    """The true state of the tip: its apex geometry and whether it carries loose material.

    ``contaminated`` means an adsorbate on the apex: it images blurred and noisy and changes
    often. ``surface`` sets what "sharp" and "blunt" radii mean.
    """

    tip: Tip
    surface: str
    contaminated: bool = False
    history: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """One of :data:`TIP_KINDS` (contamination wins over geometry)."""
        if self.contaminated:
            return "contaminated"
        return self.tip.kind(blunt_min=self.blunt_min)

    @property
    def blunt_min(self) -> float:
        return 0.17 if self.surface == "hsi100" else 0.45

    @property
    def good(self) -> bool:
        """True when the tip images the surface as a user wants (sharp, clean)."""
        return self.kind == "sharp"

    @property
    def imaging_tip(self) -> Tip:
        """The tip as it images: a contaminated apex is wider and carries a weak ghost."""
        if not self.contaminated:
            return self.tip
        main = self.tip.main
        wide = Apex(main.dx_nm, main.dy_nm, main.dz_nm, main.weight, main.radius_nm * 1.8)
        ghost = Apex(main.dx_nm + 0.7, main.dy_nm - 0.4, 0.02, 0.35, main.radius_nm * 2.5)
        return Tip((wide, ghost))

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "contaminated": self.contaminated, **self.tip.to_dict()}


def sharp_band(surface: str) -> tuple[float, float]:
    """Apex radii (nm) that count as sharp: atoms or dimers on H:Si, sharp on metals."""
    return (HSI_MODES["atoms"][0], HSI_MODES["dimers"][1]) if surface == "hsi100" else METAL_SHARP


def blunt_band(surface: str) -> tuple[float, float]:
    return HSI_MODES["rows"] if surface == "hsi100" else METAL_BLUNT


def make_tip(kind: str, surface: str, rng: np.random.Generator) -> HiddenTip:
    """A fresh tip of ``kind`` (one of :data:`TIP_KINDS`, or ``mixed`` for a random bad one)."""
    if kind == "mixed":
        kind = str(rng.choice(["blunt", "double", "multiple", "contaminated"]))
    sharp, blunt = sharp_band(surface), blunt_band(surface)
    if kind == "sharp":
        tip = Tip((Apex(radius_nm=float(rng.uniform(*sharp))),))
    elif kind == "blunt":
        tip = Tip((Apex(radius_nm=float(rng.uniform(*blunt))),))
    elif kind == "double":
        tip = multi_tip(rng, sharp, 2)
    elif kind == "multiple":
        tip = multi_tip(rng, sharp, int(rng.integers(3, 5)))
    elif kind == "contaminated":
        return HiddenTip(Tip((Apex(radius_nm=float(rng.uniform(*sharp))),)), surface, True)
    else:
        raise ValueError(f"unknown tip kind {kind!r}; known: {', '.join((*TIP_KINDS, 'mixed'))}")
    return HiddenTip(tip, surface)


def _reshape(hidden: HiddenTip, probs: dict[str, float], rng: np.random.Generator) -> HiddenTip:
    """A new apex drawn from ``probs`` over (sharp, blunt, double, multiple, same); shifted."""
    names = list(probs)
    p = np.array([probs[n] for n in names])
    pick = str(rng.choice(names, p=p / p.sum()))
    if pick == "same":
        return HiddenTip(changed_tip(rng, hidden.tip), hidden.surface, hidden.contaminated)
    fresh = make_tip(pick, hidden.surface, rng)
    return HiddenTip(changed_tip(rng, fresh.tip), hidden.surface, hidden.contaminated)


def spontaneous_change(hidden: HiddenTip, rates: TipRates, rng: np.random.Generator) -> HiddenTip:
    """A tip change during scanning **[guess]**: mostly for the worse, sometimes for the better
    (Gordon et al. note that tip changes can also improve a tip)."""
    s, b, d, m = rates.change_to
    new = _reshape(hidden, {"sharp": s, "blunt": b, "double": d, "multiple": m}, rng)
    if hidden.contaminated and rng.random() < 0.3:  # the adsorbate may drop off
        new.contaminated = False
    return new


def line_change_probability(hidden: HiddenTip, rates: TipRates) -> float:
    """Probability that the tip changes during one scan line."""
    return rates.change_per_line * (rates.contaminated_factor if hidden.contaminated else 1.0)


def wear(hidden: HiddenTip, rates: TipRates, rng: np.random.Generator) -> HiddenTip:
    """End-of-frame ageing: slow blunting and occasional pick-up of an adsorbate **[guess]**."""
    factor = 1 + rates.wear_per_frame
    tip = Tip(
        tuple(
            Apex(a.dx_nm, a.dy_nm, a.dz_nm, a.weight, a.radius_nm * factor)
            for a in hidden.tip.apexes
        )
    )
    contaminated = hidden.contaminated or rng.random() < rates.pickup_per_frame
    return HiddenTip(tip, hidden.surface, contaminated)


def pulse_outcome(
    hidden: HiddenTip, bias_V: float, width_s: float, rng: np.random.Generator
) -> HiddenTip:
    """The tip after a bias pulse.

    **[lit, qualitative]** DeepSPM and Rashidi & Wolkow: pulses of a few volts often repair a
    double tip and remove adsorbates, sometimes make the tip worse, and stronger or longer
    pulses change more. **[guess]** the numbers: strength ``s = min(1, |V|/8) · min(1,
    (width/0.2 s)^0.3)``; a double or multiple tip becomes sharp with probability
    ``0.15 + 0.45 s``, worse (multiple or blunt) with ``0.1 + 0.1 s``; a blunt tip sharpens
    with ``0.05 + 0.25 s``; a sharp tip stays sharp with ``0.9 - 0.3 s``; an adsorbate leaves
    with ``0.3 + 0.5 s``.
    """
    s = min(1.0, abs(bias_V) / 8.0) * min(1.0, (max(width_s, 1e-4) / 0.2) ** 0.3)
    contaminated = hidden.contaminated and rng.random() >= 0.3 + 0.5 * s
    kind = hidden.tip.kind(blunt_min=hidden.blunt_min)
    if kind in ("double", "multiple"):
        fix, worse = 0.15 + 0.45 * s, 0.1 + 0.1 * s
        new = _reshape(
            hidden,
            {"sharp": fix, "multiple": worse / 2, "blunt": worse / 2, "same": 1 - fix - worse},
            rng,
        )
    elif kind == "blunt":
        fix = 0.05 + 0.25 * s
        new = _reshape(hidden, {"sharp": fix, "double": 0.1 * s, "same": 1 - fix - 0.1 * s}, rng)
    else:
        keep = 0.9 - 0.3 * s
        new = _reshape(
            hidden, {"same": keep, "double": (1 - keep) / 2, "blunt": (1 - keep) / 2}, rng
        )
    new.contaminated = contaminated
    return new


def crash_outcome(hidden: HiddenTip, depth_nm: float, rng: np.random.Generator) -> HiddenTip:
    """The tip after a controlled crash (dip) of ``depth_nm`` into the sample.

    **[lit, qualitative]** DeepSPM dips of 0.8–5 nm reshape the apex completely; the result is
    random and deeper dips change more. **[guess]** the numbers: ``d = min(1, depth/3 nm)``;
    sharp with probability ``0.3 + 0.15 d``, blunt ``0.35``, double ``0.2``, multiple the rest;
    an adsorbate is left behind with ``0.7``, and one is picked up with ``0.1``.
    """
    d = min(1.0, depth_nm / 3.0)
    sharp = 0.3 + 0.15 * d
    new = _reshape(
        hidden,
        {"sharp": sharp, "blunt": 0.35, "double": 0.2, "multiple": max(0.0, 1 - sharp - 0.55)},
        rng,
    )
    new.contaminated = (hidden.contaminated and rng.random() < 0.3) or rng.random() < 0.1
    return new


def crater_size(depth_nm: float) -> tuple[float, float]:
    """``(depth, radius)`` in nm of the crater a crash of ``depth_nm`` leaves **[guess]**:
    a pit about a third as deep as the dip and as wide as the tip that made it."""
    return 0.3 * depth_nm + 0.1, 0.8 + 0.6 * math.sqrt(depth_nm)

"""Tip-state taxonomy per surface (Gordon et al. 2019; DESIGN.md).

Class names are snake_case identifiers used everywhere: labels, manifests, events, journals.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Taxonomy:
    """Classes of one surface.

    ``classes`` are the multiclass (primary) labels a frame can carry; ``extra`` are further
    multi-label flags trained by a separate binary net (the H:Si(100) tip-change net).
    ``desirable`` names the classes whose presence means a good tip.
    """

    surface: str
    classes: tuple[str, ...]
    desirable: tuple[str, ...]
    extra: tuple[str, ...] = ()

    @property
    def labels(self) -> tuple[str, ...]:
        """Every multi-label column, ``classes`` first, then ``extra``."""
        return self.classes + self.extra

    def index(self, name: str) -> int:
        return self.labels.index(name)


_METAL = ("individual_atoms", "double_tip", "tip_change", "step_edge", "impurity", "corruption")

TAXONOMIES: dict[str, Taxonomy] = {
    "hsi100": Taxonomy(
        surface="hsi100",
        classes=("atoms", "dimers", "rows", "generic_defect"),
        desirable=("atoms", "dimers"),
        extra=("tip_change",),
    ),
    "au111": Taxonomy(surface="au111", classes=_METAL, desirable=("individual_atoms",)),
    "cu111": Taxonomy(surface="cu111", classes=_METAL, desirable=("individual_atoms",)),
    # beyond the paper: the states that do not depend on the surface (models/generic)
    "generic": Taxonomy(
        surface="generic",
        classes=("good", "double_tip", "blunt", "tip_change", "corruption"),
        desirable=("good",),
    ),
}

#: the state of a frame unlike anything its model was trained on (:mod:`tipd.familiarity`): the
#: model's classes are not trusted, and it is never the ground for an action
UNFAMILIAR = "unfamiliar"

#: the surfaces of the paper; ``generic`` is any other
SURFACES: tuple[str, ...] = ("hsi100", "au111", "cu111")

#: Pretty names for reports and sheets.
SURFACE_TITLES = {
    "hsi100": "H:Si(100)-2x1",
    "au111": "Au(111)",
    "cu111": "Cu(111)",
    "generic": "any surface",
}


def taxonomy(surface: str) -> Taxonomy:
    """The taxonomy of ``surface``; :class:`KeyError` naming the known ones otherwise."""
    try:
        return TAXONOMIES[surface]
    except KeyError:
        raise KeyError(f"unknown surface {surface!r}; known: {', '.join(SURFACES)}") from None

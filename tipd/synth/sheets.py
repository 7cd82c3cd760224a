"""Contact sheets of synthetic frames: per class, and beside real scans."""

from __future__ import annotations

from pathlib import Path

from tipd.sheet import SheetRow, contact_sheet
from tipd.synth.generate import generate, generic_scale
from tipd.taxonomy import SURFACE_TITLES, taxonomy

#: what a class row shows where its name alone could mislead: on Au(111) and Cu(111) at the
#: paper's 30 nm and 150 px, "individual atoms" are single adatoms imaged sharp (a pixel is
#: 0.2 nm; the 0.29 nm lattice itself is not resolved), on the herringbone or standing waves
ROW_NOTES = {
    ("au111", "individual_atoms"): "sharp single adatoms,\n30 nm (lattice unresolved)",
    ("cu111", "individual_atoms"): "sharp single adatoms,\n30 nm (lattice unresolved)",
}


def _caption(names: list[str]) -> str:
    return "+".join(n.replace("individual_atoms", "atoms").replace("_", " ") for n in names)


def class_sheet(surfaces: list[str], path: Path, per_class: int = 8, seed: int = 0) -> Path:
    """One row per (surface, class): ``per_class`` frames whose primary label is that class,
    each captioned with its full multi-label truth. Frames are 128 px, flattened line by line
    as the models see them."""
    rows = []
    for surface in surfaces:
        tax = taxonomy(surface)
        n = len(tax.classes)
        for c, cls in enumerate(tax.classes):
            frames = [generate(surface, k * n + c, seed=seed, cls=cls) for k in range(per_class)]
            rows.append(
                SheetRow(
                    title=f"{SURFACE_TITLES[surface]}\n{cls.replace('_', ' ')}"
                    + (f"\n{ROW_NOTES[surface, cls]}" if (surface, cls) in ROW_NOTES else ""),
                    frames=[f.heights_m for f in frames],
                    captions=[_caption(f.label_names) for f in frames],
                    widths_nm=[f.scan_size_nm[0] for f in frames],
                )
            )
    title = "tipd synth: " + ", ".join(SURFACE_TITLES[s] for s in surfaces) + f" (seed {seed})"
    return contact_sheet(rows, path, tile=128, title=title)


def comparison_sheet(fixtures: Path, path: Path, seed: int = 0) -> Path:
    """Real scans from ``fixtures`` beside synthetic frames of similar size, all flattened the
    same way (line by line), so noise, streaks, steps and contrast can be compared by eye."""
    from tipd.readers import read_any

    real = []
    for p in sorted(fixtures.iterdir()):
        if p.suffix.lower() in (".sxm", ".gwy", ".sm4", ".z_mtrx", ".npy"):
            frame = read_any(p)
            real.append((p.name, frame))
    rows = [
        SheetRow(
            title="real scans\n(other labs)",
            frames=[f.data for _, f in real],
            captions=[name for name, _ in real],
            widths_nm=[f.scan_size_nm[0] for _, f in real],
        )
    ]
    for surface, classes in (
        ("au111", ("individual_atoms", "double_tip", "step_edge", "corruption", "tip_change")),
        ("cu111", ("individual_atoms", "impurity", "step_edge", "double_tip", "tip_change")),
        ("hsi100", ("atoms", "dimers", "rows", "generic_defect", "rows")),
    ):
        frames = [generate(surface, k, seed=seed, cls=c, pixels=256) for k, c in enumerate(classes)]
        rows.append(
            SheetRow(
                title=f"synthetic\n{SURFACE_TITLES[surface]}",
                frames=[f.heights_m for f in frames],
                captions=[_caption(f.label_names) for f in frames],
                widths_nm=[f.scan_size_nm[0] for f in frames],
            )
        )
    survey = [
        generate("generic", i, seed=seed, pixels=256)
        for i in [i for i in range(60) if generic_scale(seed, i) == "meso"][:5]
    ]
    rows.append(
        SheetRow(
            title="synthetic\ngeneric, 25 to 500 nm",
            frames=[f.heights_m for f in survey],
            captions=[f"{f.params['surface']}: {_caption(f.label_names)}" for f in survey],
            widths_nm=[f.scan_size_nm[0] for f in survey],
        )
    )
    return contact_sheet(
        rows, path, tile=180, title="real scans vs tipd synth, both flattened line by line"
    )

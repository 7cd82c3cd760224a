"""Where a model's training frames came from, read off its manifest: the synthetic sets and
seeds it was trained with, and the generator version it was last fitted on."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tipd.models import Manifest
from tipd.train.data import SEED_OFFSETS

_SYNTH = re.compile(r"^tipd synth (\w+) seed (\d+) frames 0\.\.(\d+)$")


def synth_source(text: str, surface: str) -> tuple[int, int]:
    """``(seed, frames)`` of a manifest's ``tipd synth SURFACE seed S frames 0..N-1``; a
    ``ValueError`` naming ``text`` for anything else."""
    match = _SYNTH.match(text)
    if match is None or match.group(1) != surface:
        raise ValueError(f"not synthetic {surface} frames: {text!r} (revote needs them)")
    return int(match.group(2)), int(match.group(3)) + 1


@dataclass(frozen=True)
class Seeds:
    """The synthetic sets a model was trained with (from its manifest), and the seed of the
    frames ``tipd train`` fits its stacked vote on."""

    train: int
    validation: int
    n_validation: int
    test: int
    n_test: int
    stack: int


def synth_seeds(manifest: Manifest) -> Seeds:
    """:class:`Seeds` of a model trained on synthetic frames; ``ValueError`` otherwise."""
    t, surface = manifest.training, manifest.surface
    train, _ = synth_source(str(t.get("data")), surface)
    val, n_val = synth_source(str(t.get("validation")), surface)
    test, n_test = synth_source(str(t.get("test")), surface)
    stack = val - SEED_OFFSETS["validation"] + SEED_OFFSETS["stack"]
    return Seeds(train, val, n_val, test, n_test, stack)


def frames_version(manifest: Manifest) -> int:
    """The generator version of the synthetic frames ``manifest``'s model was last fitted on:
    its rebuilt vote's, else its training's (1 where the manifest records none)."""
    t = manifest.training
    revoted = t.get("revote") or {}
    return int(revoted.get("generator") or t.get("generator") or 1)

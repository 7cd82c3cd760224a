"""``tipd familiarity``: fit a model's familiarity statistics (:mod:`tipd.familiarity`).

Renders frames of the model's own training seed and validation seed, as the generator version
the model was last fitted on drew them, reads the graph's ``features`` output on them (the
hidden features every net's last linear layer reads) and writes ``familiarity.npz`` with its
sha256 into the manifest; the graph is left as it is. Runs on the CPU in a minute or two.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tipd import familiarity
from tipd.ensemble import Ensemble
from tipd.models import MANIFEST, load_manifest, sha256_file
from tipd.train.data import synthetic
from tipd.train.provenance import frames_version, synth_seeds

FILE = "familiarity.npz"


def features(ens: Ensemble, x: np.ndarray) -> np.ndarray:
    """The ``features`` output of ``ens`` on model inputs ``x``, ``(N, H)``."""
    return np.concatenate([ens.run(x[a : a + 256]).features for a in range(0, len(x), 256)])


def fit_model(folder: Path, n_train: int = 3000, n_val: int = 1000, workers: int = 2) -> Path:
    """Fit and write ``folder``'s familiarity statistics (see the module's docstring)."""
    manifest = load_manifest(folder)
    seeds = synth_seeds(manifest)  # ValueError for a model not trained on synthetic frames
    raw = json.loads((folder / MANIFEST).read_text())
    raw.pop("familiarity", None)
    (folder / MANIFEST).write_text(json.dumps(raw, indent=2) + "\n")
    ens = Ensemble(folder, prefer_gpu=False)
    size, channels = manifest.preprocessing.size, tuple(manifest.preprocessing.channels)
    version = frames_version(manifest)
    train = synthetic(manifest.surface, n_train, seeds.train, size, workers, channels, version)
    val = synthetic(manifest.surface, n_val, seeds.validation, size, workers, channels, version)
    assert train.pixel_nm is not None
    stats = familiarity.fit(
        features(ens, train.x), train.primary, features(ens, val.x), train.pixel_nm
    )
    stats.save(folder / FILE)
    raw["familiarity"] = {"file": FILE, "sha256": sha256_file(folder / FILE)}
    raw["training"]["familiarity"] = {
        "train": train.source,
        "validation": val.source,
        "features": "the graph's features output: every member's, then every extra net's",
        "pixel_nm": [round(float(v), 5) for v in stats.pixel_nm],
        "threshold": stats.threshold,
    }
    (folder / MANIFEST).write_text(json.dumps(raw, indent=2) + "\n")
    load_manifest(folder)  # every sha256 checks out
    return folder / FILE

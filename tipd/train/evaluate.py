"""``tipd evaluate``: any shipped ensemble on any labelled source, as Table I with its figures.

The ensemble and each of its members run through ONNX Runtime, exactly as the daemon runs them
(no torch); the source is held-out synthetic frames (a seed never used in training) or a folder
of real labelled scans. Writes ``<reports>/<model>-<source>.md`` and its PNGs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tipd.ensemble import Ensemble
from tipd.models import find
from tipd.train.data import Dataset, from_folder, synthetic
from tipd.train.report import evaluate_all, write_report


def member_scores(ens: Ensemble, x: np.ndarray) -> dict[str, np.ndarray]:
    """Voted confidences of the ensemble and of each member on its classes, ``(N, K)``."""
    outs = [ens.run(x[a : a + 256]) for a in range(0, len(x), 256)]
    voted = np.concatenate([o.voted for o in outs])
    members = np.concatenate([o.members for o in outs])
    k = len(ens.manifest.classes)
    scores = {"Ensemble": voted[:, :k]}
    for i, m in enumerate(ens.manifest.members[: members.shape[1]]):
        scores[m.name] = members[:, i, :]
    return scores


def evaluate(
    model: str,
    out: Path,
    data: Path | None = None,
    n: int = 2000,
    seed: int = 99,
    workers: int = 2,
) -> Path:
    """Evaluate ``model`` on ``data`` (a labelled folder) or ``n`` synthetic frames of ``seed``."""
    ens = Ensemble(find(model))
    m = ens.manifest
    channels = tuple(m.preprocessing.channels)
    if data is not None:
        ds: Dataset = from_folder(data, tuple(m.classes), m.preprocessing.size, channels)
        tag = data.name
    else:
        ds = synthetic(m.surface, n, seed, m.preprocessing.size, workers, channels)
        ds = ds.columns(tuple(m.classes))
        tag = f"synth-seed{seed}"
    scores = member_scores(ens, ds.x.astype(np.float32))
    desirable = [m.classes.index(d) for d in m.desirable]
    metrics = evaluate_all(ds, scores, desirable)
    return write_report(out, f"{m.name}-{tag}", m, ds, scores, metrics)

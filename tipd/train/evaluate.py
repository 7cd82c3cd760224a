"""``tipd evaluate``: any shipped ensemble on any labelled source, as Table I with its figures.

The ensemble and each of its members run through ONNX Runtime, exactly as the daemon runs them
(no torch); the source is held-out synthetic frames (a seed never used in training) or a folder
of real labelled scans. Writes ``<reports>/<model>-<source>.md`` and its PNGs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tipd.ensemble import Ensemble
from tipd.models import Manifest, find
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


@dataclass
class Evaluation:
    """One ensemble scored on one labelled source: Table I's figures and what they came from."""

    manifest: Manifest
    data: Dataset  #: the labelled frames, on the model's classes
    tag: str  #: names the source: the folder, or ``synth-seed<seed>``
    scores: dict[str, np.ndarray]  #: :func:`member_scores`
    metrics: dict[str, Any]  #: :func:`tipd.train.report.evaluate_all`


def score(
    model: str,
    data: Path | None = None,
    n: int = 2000,
    seed: int = 99,
    workers: int = 2,
) -> Evaluation:
    """Score ``model`` on ``data`` (a labelled folder) or ``n`` synthetic frames of ``seed``."""
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
    return Evaluation(m, ds, tag, scores, evaluate_all(ds, scores, desirable))


def evaluate(
    model: str,
    out: Path,
    data: Path | None = None,
    n: int = 2000,
    seed: int = 99,
    workers: int = 2,
) -> Path:
    """Evaluate ``model`` on ``data`` (a labelled folder) or ``n`` synthetic frames of ``seed``;
    writes the report and returns its path."""
    e = score(model, data, n, seed, workers)
    return write_report(out, f"{e.manifest.name}-{e.tag}", e.manifest, e.data, e.scores, e.metrics)

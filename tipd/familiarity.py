"""How much a frame resembles what a model was trained on: its familiarity, 0–1.

Two measurements, both from the model's own training frames (``tipd familiarity`` fits them;
``bench/real.py`` reports how they separate real from synthetic frames):

* **scale**: the size of one model-input pixel (nm). A model has only seen frames between the
  smallest and largest pixel of its training frames (the smallest shrunk by the training
  crops' zoom, :data:`ZOOM_MIN`); outside that range it has never seen the surface at this
  scale (a 100 nm scan of terraces for a model trained on 3–80 nm lattices), and the frame's
  familiarity is 0.
* **features**: the hidden features the ensemble's members read their classes from (the
  graph's ``features`` output, ``(H,)`` per frame), as a Mahalanobis distance to the nearest
  class centre of the training frames (shared covariance, shrunk towards its mean variance by
  :data:`SHRINK`). The familiarity is the share of the model's own validation frames that lie
  at least as far: 0.2 means one validation frame in five is stranger.

A frame is familiar when its familiarity is at least the model's ``threshold`` (0.01 unless its
manifest says otherwise): then about 1 % of the synthetic frames the model was built for are
called unfamiliar. Pure numpy; no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: the training crops' smallest zoom (``tipd.train.data.augment``): a crop of 0.75 of a frame
#: shows its pixels 0.75 times as large
ZOOM_MIN = 0.75
#: covariance shrinkage towards ``mean variance × identity``
SHRINK = 0.05
#: the familiarity below which a frame is unfamiliar, unless the manifest sets another
THRESHOLD = 0.01


@dataclass(frozen=True)
class Familiarity:
    """A model's familiarity statistics (see the module's docstring).

    ``centres`` ``(C, H)``: class centres of the training frames' features; ``precision``
    ``(H, H)``: the inverse of their shrunk shared covariance; ``reference`` ``(R,)``: the
    validation frames' squared distances, sorted; ``pixel_nm`` ``(2,)``: the smallest and
    largest model-input pixel (nm) the model was trained on, crops included.
    """

    centres: np.ndarray
    precision: np.ndarray
    reference: np.ndarray
    pixel_nm: np.ndarray
    threshold: float = THRESHOLD

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each row of ``features`` ``(N, H)`` to its
        nearest class centre, ``(N,)``."""
        f = np.asarray(features, dtype=np.float64)
        d = f[:, None, :] - self.centres[None, :, :]  # (N, C, H)
        out: np.ndarray = np.einsum("nch,hk,nck->nc", d, self.precision, d).min(axis=1)
        return out

    def feature_familiarity(self, features: np.ndarray) -> np.ndarray:
        """Share of validation frames at least as far as each frame, ``(N,)`` in [0, 1]."""
        d = self.distances(features)
        n = len(self.reference)
        at_least = n - np.searchsorted(self.reference, d, side="left")
        out: np.ndarray = at_least / n
        return out

    def scale_familiar(self, pixel_nm: float | None) -> bool:
        """Whether a model-input pixel of ``pixel_nm`` nm is within the training range
        (True when the scale is not known)."""
        if pixel_nm is None or not np.isfinite(pixel_nm) or pixel_nm <= 0:
            return True
        lo, hi = self.pixel_nm
        return bool(lo <= pixel_nm <= hi)

    def score(self, features: np.ndarray, pixel_nm: list[float | None]) -> np.ndarray:
        """Familiarity 0–1 of N frames from their ``features`` ``(N, H)`` and model-input
        pixel sizes (nm, None if unknown): 0 outside the trained scales, else the feature
        familiarity."""
        f = self.feature_familiarity(features)
        scale = np.array([self.scale_familiar(p) for p in pixel_nm], dtype=bool)
        out: np.ndarray = np.where(scale, f, 0.0)
        return out

    def save(self, path: Path) -> None:
        """Write the statistics to ``path`` (``.npz``, no pickle)."""
        np.savez(
            path,
            centres=self.centres.astype(np.float64),
            precision=self.precision.astype(np.float64),
            reference=self.reference.astype(np.float64),
            pixel_nm=self.pixel_nm.astype(np.float64),
            threshold=np.float64(self.threshold),
        )

    @classmethod
    def load(cls, path: Path) -> Familiarity:
        """Read statistics written by :meth:`save` (never unpickles)."""
        with np.load(path, allow_pickle=False) as z:
            return cls(
                centres=z["centres"],
                precision=z["precision"],
                reference=np.sort(z["reference"]),
                pixel_nm=z["pixel_nm"],
                threshold=float(z["threshold"]),
            )


def fit(
    train: np.ndarray,
    classes: np.ndarray,
    validation: np.ndarray,
    train_pixel_nm: np.ndarray,
    threshold: float = THRESHOLD,
) -> Familiarity:
    """Familiarity statistics from training features ``(N, H)`` with their class index
    ``(N,)``, validation features ``(V, H)`` (the reference distances; frames not used for
    the centres) and the training frames' model-input pixel sizes ``(N,)`` (nm)."""
    train = np.asarray(train, dtype=np.float64)
    labels = np.unique(classes)
    centres = np.stack([train[classes == c].mean(axis=0) for c in labels])
    resid = train - centres[np.searchsorted(labels, classes)]
    cov = resid.T @ resid / max(len(train) - len(labels), 1)
    h = cov.shape[0]
    shrunk = (1 - SHRINK) * cov + SHRINK * np.trace(cov) / h * np.eye(h)
    precision = np.linalg.inv(shrunk)
    px = np.asarray(train_pixel_nm, dtype=np.float64)
    partial = Familiarity(centres, precision, np.zeros(1), np.zeros(2), threshold)
    reference = np.sort(partial.distances(validation))
    pixel_nm = np.array([px.min() * ZOOM_MIN, px.max()])
    return Familiarity(centres, precision, reference, pixel_nm, threshold)

"""Table I's non-CNN baselines: a random forest (5,000 trees, as in the paper) and weighted
random guessing.

Random-forest features (256 + 24 + 12 + 8 = 300 per frame), chosen for what tells tip states
apart without learning filters:

* the frame averaged down to 16 × 16 (layout: steps, impurities, corrupted blocks);
* the radially averaged log power spectrum in 24 bins (sharpness: atoms and lattices put power
  at high frequency, a blunt tip does not; a double tip modulates the spectrum);
* statistics of the difference between successive lines (12: mean, max, percentiles and the
  argmax row position, since a tip change or corruption is a jump between lines);
* the value histogram's percentiles (8: saturation, spikes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def features(x: np.ndarray) -> np.ndarray:
    """Feature matrix ``(N, 300)`` from model inputs ``(N, 1, S, S)``."""
    x = np.asarray(x, dtype=np.float32)[:, 0]
    n, s, _ = x.shape
    f = s // 16
    small = x[:, : f * 16, : f * 16].reshape(n, 16, f, 16, f).mean(axis=(2, 4)).reshape(n, -1)
    power = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(x), axes=(1, 2))) ** 2)
    yy, xx = np.indices((s, s)) - s // 2
    radius = np.hypot(yy, xx)
    edges = np.linspace(0, s // 2, 25)
    bins = np.digitize(radius, edges) - 1
    radial = np.stack([power[:, (bins == b)].mean(axis=1) for b in range(24)], axis=1)
    d = np.abs(np.diff(x, axis=1)).mean(axis=2)  # (n, s-1): mean jump between lines
    line = np.concatenate(
        [
            d.mean(axis=1, keepdims=True),
            d.max(axis=1, keepdims=True),
            d.std(axis=1, keepdims=True),
            np.percentile(d, [50, 90, 99], axis=1).T,
            (d.argmax(axis=1) / s)[:, None],
            (d.max(axis=1) / (np.median(d, axis=1) + 1e-6))[:, None],
            np.abs(np.diff(x, axis=2)).mean(axis=(1, 2))[:, None],
            x.std(axis=(1, 2))[:, None],
            (np.abs(x) > 0.99).mean(axis=(1, 2))[:, None],
            (d > 4 * np.median(d, axis=1, keepdims=True)).mean(axis=1)[:, None],
        ],
        axis=1,
    )
    hist = np.percentile(x.reshape(n, -1), [1, 5, 25, 50, 75, 95, 99, 99.9], axis=1).T
    out: np.ndarray = np.concatenate([small, radial, line, hist], axis=1).astype(np.float32)
    return out


@dataclass
class Forest:
    """A fitted random forest over :func:`features`; ``predict`` gives ``(N, L)`` confidences."""

    model: Any
    n_labels: int

    def predict(self, x: np.ndarray) -> np.ndarray:
        probs = self.model.predict_proba(features(x))
        # multi-output: one (N, 2) array per label; column 1 is P(label)
        cols = [p[:, 1] if p.shape[1] == 2 else np.zeros(len(p)) for p in probs]
        return np.stack(cols, axis=1)


def fit_forest(
    x: np.ndarray, y: np.ndarray, trees: int = 5000, seed: int = 0, jobs: int = 2
) -> Forest:
    """A random forest of ``trees`` trees on multi-label targets ``y`` ``(N, L)``.

    Each tree sees a bootstrap of 30 % of the frames (as many trees as the paper, but
    affordable on a laptop), class weights balanced per label as in the paper.
    """
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(
        n_estimators=trees,
        max_features="sqrt",
        min_samples_leaf=2,
        max_samples=0.3,
        class_weight="balanced_subsample",
        n_jobs=jobs,
        random_state=seed,
    )
    model.fit(features(x), y.astype(np.int64))
    return Forest(model, y.shape[1])


def weighted_random(y_train: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Weighted random guessing: confidences drawn so that each label is 'predicted' with its
    training frequency, independent of the frame. Shape ``(n, L)``."""
    rng = np.random.default_rng(seed)
    freq = y_train.mean(axis=0)
    out: np.ndarray = (rng.random((n, y_train.shape[1])) < freq) * 0.5 + rng.random(
        (n, y_train.shape[1])
    ) * 0.5
    return out

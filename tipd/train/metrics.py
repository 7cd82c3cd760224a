"""Metrics of Table I (Gordon et al. 2019): AUROC, balanced accuracy, precision, plus the
good/bad collapse. Pure numpy; arrays are ``(N, C)`` confidences and ``(N, C)`` 0/1 truth."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tipd.train.data import Dataset


def auroc(truth: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of one binary column (ties get half credit); NaN when the
    column has only one class."""
    truth = truth.astype(bool)
    pos, neg = truth.sum(), (~truth).sum()
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    s = score[order]
    # average ranks for ties
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[truth].sum() - pos * (pos + 1) / 2) / (pos * neg))


def per_class_auroc(truth: np.ndarray, probs: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.array([auroc(truth[:, c], probs[:, c]) for c in range(truth.shape[1])])
    return out


def mean_auroc(truth: np.ndarray, probs: np.ndarray) -> float:
    """Mean AUROC over the columns that have both classes."""
    values = per_class_auroc(truth, probs)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def single_label(ds: Dataset) -> np.ndarray:
    """Frames with exactly one of the multiclass columns true (the paper's multiclass set)."""
    k = ds.y.shape[1]
    out: np.ndarray = (ds.primary >= 0) & (ds.primary < k) & (ds.y.sum(axis=1) == 1)
    return out


def balanced_accuracy(ds: Dataset, probs: np.ndarray) -> float:
    """Mean recall per class of the arg-max prediction, on single-label frames (weighted
    accuracy: 1/C is guessing). A one-column (binary) net: mean recall of positives and
    negatives at 0.5."""
    if probs.shape[1] == 1:
        truth, pred = ds.y[:, 0] > 0.5, probs[:, 0] >= 0.5
        if truth.all() or not truth.any():
            return float("nan")
        return float(((pred[truth]).mean() + (~pred[~truth]).mean()) / 2)
    sel = single_label(ds)
    if not sel.any():
        return float("nan")
    truth, pred = ds.primary[sel], probs[sel].argmax(axis=1)
    recalls = [float((pred[truth == c] == c).mean()) for c in np.unique(truth)]
    return float(np.mean(recalls))


def macro_precision(ds: Dataset, probs: np.ndarray) -> float:
    """Mean over classes of the precision of the arg-max prediction, on single-label frames."""
    sel = single_label(ds)
    truth, pred = ds.primary[sel], probs[sel].argmax(axis=1)
    values = [
        float((truth[pred == c] == c).mean()) for c in range(probs.shape[1]) if (pred == c).any()
    ]
    return float(np.mean(values)) if values else float("nan")


def threshold_precision(truth: np.ndarray, probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Precision per column when positive means ``probs ≥ threshold`` (NaN: no positives)."""
    out = []
    for c in range(truth.shape[1]):
        pos = probs[:, c] >= thresholds[c]
        out.append(float(truth[pos, c].mean()) if pos.any() else float("nan"))
    return np.array(out)


def choose_thresholds(
    truth: np.ndarray, probs: np.ndarray, target: float = 0.95, lo: float = 0.5, hi: float = 0.99
) -> np.ndarray:
    """Per column, the lowest threshold in [lo, hi] whose precision on these frames reaches
    ``target`` (the paper acts only on confident positives); ``hi`` if none does."""
    grid = np.linspace(lo, hi, 50)
    out = []
    for c in range(truth.shape[1]):
        chosen = hi
        for t in grid:
            pos = probs[:, c] >= t
            if pos.sum() >= 5 and truth[pos, c].mean() >= target:
                chosen = float(t)
                break
        out.append(chosen)
    return np.array(out)


def confusion(ds: Dataset, probs: np.ndarray) -> np.ndarray:
    """Counts ``[true class, predicted class]`` of the arg-max on single-label frames."""
    k = probs.shape[1]
    sel = single_label(ds)
    m = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(ds.primary[sel], probs[sel].argmax(axis=1), strict=True):
        m[t, p] += 1
    return m


def good_bad(
    truth: np.ndarray, probs: np.ndarray, desirable: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """The good/bad collapse: ``(is_good truth, good score)``; a frame is good when any
    desirable column is true, scored by the highest desirable confidence."""
    return truth[:, desirable].max(axis=1) > 0.5, probs[:, desirable].max(axis=1)


def roc_curve(truth: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(false positive rate, true positive rate)`` over all thresholds."""
    order = np.argsort(-score, kind="mergesort")
    t = truth[order].astype(bool)
    tp = np.concatenate([[0], np.cumsum(t)])
    fp = np.concatenate([[0], np.cumsum(~t)])
    return fp / max(fp[-1], 1), tp / max(tp[-1], 1)


def pr_curve(truth: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(recall, precision)`` over all thresholds."""
    order = np.argsort(-score, kind="mergesort")
    t = truth[order].astype(bool)
    tp = np.cumsum(t)
    k = np.arange(1, len(t) + 1)
    return tp / max(tp[-1], 1), tp / k

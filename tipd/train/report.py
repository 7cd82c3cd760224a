"""Table I and its figures: metrics of every method on held-out frames, written as
``reports/<surface>.md`` with ROC, PR and confusion-matrix PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tipd.models import Manifest
from tipd.synth.generate import GENERATOR
from tipd.train.data import Dataset
from tipd.train.metrics import (
    auroc,
    balanced_accuracy,
    confusion,
    good_bad,
    macro_precision,
    per_class_auroc,
    pr_curve,
    roc_curve,
)


def _r(v: float) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), 4)


def evaluate_all(
    test: Dataset, scores: dict[str, np.ndarray], desirable: list[int]
) -> dict[str, Any]:
    """Per method: mean AUROC (multi-label truth), balanced accuracy and macro precision of the
    arg-max (single-label frames, as the paper's multiclass data), AUROC per class, and the
    good/bad collapse AUROC."""
    table: dict[str, Any] = {}
    for name, probs in scores.items():
        per = per_class_auroc(test.y, probs)
        truth, score = good_bad(test.y, probs, desirable)
        table[name] = {
            "auroc": _r(float(np.nanmean(per))),
            "balanced_accuracy": _r(balanced_accuracy(test, probs)),
            "precision": _r(macro_precision(test, probs)),
            "auroc_per_class": {n: _r(v) for n, v in zip(test.labels, per, strict=True)},
            "good_bad_auroc": _r(auroc(truth, score)),
        }
    ens = scores.get("Ensemble")
    out: dict[str, Any] = {"table": table, "labels": list(test.labels)}
    if ens is not None:
        out["good_bad_auroc"] = table["Ensemble"]["good_bad_auroc"]
        out["confusion"] = confusion(test, ens).tolist()
    return out


def table_markdown(table: dict[str, Any]) -> str:
    """Table I's layout: methods as columns, AUROC / balanced accuracy / precision as rows."""
    names = list(table)
    lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for key, title in (
        ("auroc", "AUROC"),
        ("balanced_accuracy", "Bal. Acc."),
        ("precision", "Precision"),
        ("good_bad_auroc", "Good/bad AUROC"),
    ):
        cells = [("—" if table[n][key] is None else f"{table[n][key]:.3f}") for n in names]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plots(
    out: Path, surface: str, test: Dataset, probs: np.ndarray, desirable: list[int]
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for c, name in enumerate(test.labels):
        if test.y[:, c].min() == test.y[:, c].max():
            continue
        fpr, tpr = roc_curve(test.y[:, c], probs[:, c])
        axes[0].plot(fpr, tpr, label=f"{name} ({auroc(test.y[:, c], probs[:, c]):.3f})")
        rec, prec = pr_curve(test.y[:, c], probs[:, c])
        axes[1].plot(rec, prec, label=name)
    axes[0].plot([0, 1], [0, 1], "k--", lw=0.8)
    axes[0].set(
        xlabel="false positive rate", ylabel="true positive rate", title=f"ROC, {surface} ensemble"
    )
    axes[1].set(
        xlabel="recall",
        ylabel="precision",
        title=f"precision–recall, {surface} ensemble",
        ylim=(0, 1.02),
    )
    axes[0].legend(fontsize=7, loc="lower right")
    axes[1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    name = f"{surface}-roc-pr.png"
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    files.append(name)

    m = confusion(test, probs)
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    ax.imshow(m, cmap="Blues")
    k = len(m)
    ax.set_xticks(range(k), test.labels[:k], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), test.labels[:k], fontsize=8)
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(m[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if m[i, j] > m.max() / 2 else "black",
            )
    ax.set(
        xlabel="predicted (arg-max)",
        ylabel="true (single-label frames)",
        title=f"confusion, {surface}",
    )
    fig.tight_layout()
    name = f"{surface}-confusion.png"
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    files.append(name)

    truth, score = good_bad(test.y, probs, desirable)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    fpr, tpr = roc_curve(truth, score)
    ax.plot(fpr, tpr, label=f"good/bad ({auroc(truth, score):.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(
        xlabel="false positive rate",
        ylabel="true positive rate",
        title=f"good/bad collapse, {surface}",
    )
    ax.legend(loc="lower right")
    fig.tight_layout()
    name = f"{surface}-good-bad.png"
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    files.append(name)
    return files


def write_report(
    out: Path,
    surface: str,
    manifest: Manifest,
    test: Dataset,
    scores: dict[str, np.ndarray],
    metrics: dict[str, Any],
) -> Path:
    """``out/<surface>.md`` with Table I, per-class AUROC, thresholds and the plots."""
    out.mkdir(parents=True, exist_ok=True)
    desirable = [list(test.labels).index(d) for d in manifest.desirable]
    files = _plots(out, surface, test, scores["Ensemble"], desirable)
    table = metrics["table"]
    per = "\n".join(
        f"| {n} | "
        + " | ".join(
            "—"
            if table[m]["auroc_per_class"][n] is None
            else f"{table[m]['auroc_per_class'][n]:.3f}"
            for m in table
        )
        + " |"
        for n in test.labels
    )
    thr = manifest.metrics.get(
        "ensemble_thresholded_precision", metrics.get("ensemble_thresholded_precision", {})
    )
    t = manifest.training
    members = ", ".join(
        f"{m.name} ({m.family}, width {m.width}, {m.macs / 1e6:.1f} MMAC"
        + (f", from {m.recipe['start_from']}" if m.recipe.get("start_from") else "")
        + (f", vote weight {m.vote_weight:.2f}" if m.vote_weight is not None else "")
        + ")"
        for m in manifest.members
    )
    diff = t.get("onnx_vs_torch_max_abs_diff", float("nan"))
    vote = t.get("vote") or {"method": "weighted_mean", "mirror": False}
    reads = (
        "every member's logits and hidden features"
        if vote.get("features") == "logits+hidden"
        else "every member's logits"
    )
    how = (
        f"stacked (a logistic regression per label over {reads}, fitted on {vote['frames']})"
        if vote["method"] == "stacked"
        else "the weighted mean of the members' confidences"
    )
    how += ", each net seeing the frame as scanned and mirrored" if vote.get("mirror") else ""
    if "revote" in t:
        how += f"; built again by `tipd revote` ({t['revote']['seconds']:.0f} s)"
    trained = f"{t.get('seconds', 0):.0f} s on {t.get('device', '?')} ({t.get('machine', '?')})"
    init = t.get("init_from") or {}
    if init:
        parent = init.get("training") or {}
        trained += (
            f", going on from `{init['model']}`'s {init['member']}"
            + (f" and {init['extra']['member']}" if init.get("extra") else "")
            + (
                f" (themselves trained in {parent['seconds']:.0f} s on {parent.get('device', '?')})"
                if "seconds" in parent
                else ""
            )
        )
    trained_synthetic = str(t.get("data", "")).startswith("tipd synth")
    test_synthetic = test.source.startswith("tipd synth")
    then = t.get("generator", 1)  # models from before the version was recorded: 1
    now = GENERATOR.get(manifest.surface, 1)
    if trained_synthetic:
        trained += f", on frames of synthetic-frame generator {then}"
    held_out = test.source + (
        f" of generator {now}, {len(test)} frames of seeds never used in training"
        if test_synthetic
        else f", {len(test)} labelled real scans"
    )
    earlier = [n for n in table if n not in scores]  # columns this report did not measure
    stale = (
        f"\n\n{', '.join(earlier)}: measured when the model was trained, on the frames of "
        f"generator {then}; this report's {', '.join(scores)} on those of generator {now}."
        if trained_synthetic and test_synthetic and earlier and then != now
        else ""
    )
    rows = "\n".join(
        f"| {n} | {manifest.thresholds[n]:.2f} | {'—' if thr.get(n) is None else f'{thr[n]:.3f}'} |"
        for n in manifest.labels
    )
    text = (
        f"""# {surface}: ensemble `{manifest.name}`

Test frames: {held_out}.
Members: {members}.
Vote: {how}.
Trained in {trained};
ONNX Runtime vs torch max |Δ| = {diff:.1e}.

## Table I (this data)

AUROC: mean over labels, multi-label truth. Balanced accuracy and precision: arg-max over the
classes on single-label frames, as the paper's multiclass data. Good/bad: the desirable classes
against the rest.

{table_markdown(table)}{stale}

## AUROC per class

| class | {" | ".join(table)} |
|---{"|---" * len(table)}|
{per}

## Thresholds (chosen for precision ≥ 0.95 on validation frames) and precision at them on test

| label | threshold | precision |
|---|---|---|
"""
        + rows
        + "\n\n## Figures\n\n"
        + "\n".join(f"![{f}]({f})" for f in files)
        + "\n"
    )
    if "tip_change_net_auroc" in metrics:
        text += f"\nSeparate binary tip-change net: AUROC {metrics['tip_change_net_auroc']:.3f}.\n"
    path = out / f"{surface}.md"
    path.write_text(text)
    return path

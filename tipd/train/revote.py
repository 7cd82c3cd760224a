"""``tipd revote``: build a trained model's vote again, without training its nets again.

The vote (:mod:`tipd.train.fuse`: stacked or weighted, mirrored or not, thresholds) is the
cheap end of training. When it improves, the nets a model already ships need not be trained
again to have it: their ONNX files are read back into torch (:mod:`tipd.train.onnx_weights`,
exact in eval mode), the vote is fitted on the frames ``tipd train`` would fit it on now
(the model's own validation seed, and a fourth seed for the stacker), the fused graph is
exported again, and the ensemble's column of Table I is measured again on the model's own
held-out test frames. The members' files, and the other columns (RW, RFC, the Table I
comparisons, which the model does not hold), stay as they are.

Models trained on synthetic frames only: a folder-trained model's frames are the lab's.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tipd.models import MANIFEST, Manifest, load_manifest, sha256_file
from tipd.synth.generate import GENERATOR
from tipd.train.data import Dataset, synthetic
from tipd.train.export import export_graph
from tipd.train.fuse import (
    DEFAULT_VOTE,
    VoteSettings,
    confidences,
    fuse,
    vote_metrics,
    vote_record,
)
from tipd.train.onnx_weights import load_member
from tipd.train.provenance import synth_seeds
from tipd.train.report import evaluate_all, write_report


def revote(
    folder: Path,
    out: Path | None = None,
    reports: Path | None = None,
    settings: VoteSettings = DEFAULT_VOTE,
    n_stack: int = 6000,
    workers: int = 2,
    log: Callable[[str], None] = print,
) -> Manifest:
    """Build the vote of the model in ``folder`` again with ``settings`` and write the model
    to ``out`` (default: in place) and its report to ``reports`` (default: none).

    Raises :class:`tipd.models.ModelError` for a folder that is not a sound model and
    ``ValueError`` for one not trained on synthetic frames.
    """
    started = time.monotonic()
    manifest = load_manifest(folder, verify=True)
    folder, target = folder.resolve(), (out or folder).resolve()
    if target != folder:  # checked before any work: ``target`` is replaced at the end
        if folder.is_relative_to(target):
            raise ValueError(f"--out {out} holds the model itself; give it a folder of its own")
        if target.exists() and not (target / MANIFEST).is_file() and any(target.iterdir()):
            raise ValueError(f"--out {out} exists and holds no model: not replacing it")
    t = manifest.training
    surface = manifest.surface
    seeds = synth_seeds(manifest)
    size, channels = manifest.preprocessing.size, tuple(manifest.preprocessing.channels)
    classes, extra = list(manifest.classes), list(manifest.extra)

    def frames(seed: int, n: int) -> Dataset:
        return synthetic(surface, n, seed, size, workers, channels)

    calibration = frames(seeds.train, 256).x.astype(np.float32)
    val_all = frames(seeds.validation, seeds.n_validation)
    test_all = frames(seeds.test, seeds.n_test)
    stack_all = frames(seeds.stack, n_stack) if settings.stacked else val_all
    log(f"{manifest.name}: frames rendered ({time.monotonic() - started:.0f} s)")

    voting = [m for m in manifest.members if m.vote_weight is not None]
    nets = [
        load_member(folder / m.file, m.family, len(classes), m.width, calibration) for m in voting
    ]
    extras = [
        load_member(folder / m.file, m.family, len(m.labels), m.width, calibration)
        for m in manifest.members
        if m.vote_weight is None
    ]
    weights = np.array([m.vote_weight or 0.0 for m in voting])
    weights = weights / weights.sum()  # the manifest rounds them to 4 decimals

    def truth(ds: Dataset) -> np.ndarray:
        return ds.columns(tuple(classes + extra)).y

    fused = fuse(
        nets,
        extras,
        weights,
        stack_all.x,
        stack_all.columns(tuple(classes)).y,
        val_all.x,
        truth(val_all),
        settings,
    )
    thresholds = fused.get_buffer("thresholds").numpy()

    if target != folder:
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(folder, target)
    graph = target / manifest.graph.file
    diff = export_graph(fused, graph, size, test_all.x[:16].astype(np.float32))

    test_voted, _ = confidences(fused, test_all.x)
    test = test_all.columns(tuple(classes))
    k = len(classes)
    desirable = [classes.index(d) for d in manifest.desirable]
    ensemble = evaluate_all(test, {"Ensemble": test_voted[:, :k]}, desirable)
    metrics: dict[str, Any] = {**manifest.metrics, **ensemble}
    metrics["table"] = {**manifest.metrics.get("table", {}), **ensemble["table"]}
    metrics.update(
        vote_metrics(classes + extra, truth(test_all), test_voted, thresholds, bool(extra))
    )
    seconds = time.monotonic() - started
    training = {
        **t,
        "vote": vote_record(fused, settings.c, stack_all.source, len(stack_all)),
        "revote": {
            "by": "tipd revote",
            "generator": GENERATOR[surface],
            "seconds": round(seconds, 1),
            "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
        },
        "onnx_vs_torch_max_abs_diff": diff,
    }
    labels = classes + extra
    updated = manifest.model_copy(
        update={
            "thresholds": {n: round(float(v), 4) for n, v in zip(labels, thresholds, strict=True)},
            "graph": manifest.graph.model_copy(update={"sha256": sha256_file(graph)}),
            "training": training,
            "metrics": metrics,
            "familiarity": None,  # fitted again below, on the graph as exported again
        }
    )
    (target / MANIFEST).write_text(json.dumps(updated.model_dump(), indent=2) + "\n")
    load_manifest(target, verify=True)
    if manifest.familiarity is not None:
        from tipd.train.familiar import fit_model

        fit_model(target, workers=workers)
        updated = load_manifest(target)
    if reports is not None:
        write_report(reports, surface, updated, test, {"Ensemble": test_voted[:, :k]}, metrics)
    e = metrics["table"]["Ensemble"]
    log(
        f"{manifest.name}: {training['vote']['method']} vote"
        + (", mirrored" if settings.mirror else "")
        + f": AUROC {e['auroc']:.3f}, bal. acc. {e['balanced_accuracy']:.3f}, "
        f"precision {e['precision']:.3f}, good/bad {e['good_bad_auroc']:.3f} ({seconds:.0f} s)"
    )
    return updated

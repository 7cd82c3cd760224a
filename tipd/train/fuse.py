"""The fused graph's vote: member weights, the stacked vote, the mirrored view, thresholds.

``tipd train`` builds it after choosing its members, and ``tipd revote`` builds it again for a
trained model, so that a better vote reaches shipped nets without training them again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from tipd.train.export import Fused
from tipd.train.metrics import auroc, choose_thresholds, threshold_precision
from tipd.train.stack import STACK_C, Stack, fit_stack


@dataclass(frozen=True)
class VoteSettings:
    """How the members' confidences become the voted one."""

    stacked: bool = True  #: the stacked vote (:mod:`tipd.train.stack`); else the weighted mean
    mirror: bool = True  #: every net also sees the frame mirrored left to right
    hidden: bool = True  #: the stacked vote reads the members' hidden features, not just logits
    c: float = STACK_C  #: the stacker's inverse L2 penalty


#: what ``tipd train`` and ``tipd revote`` do unless told otherwise
DEFAULT_VOTE = VoteSettings()


def _batched(
    run: Callable[[torch.Tensor], list[torch.Tensor]],
    fused: Fused,
    x: np.ndarray,
    device: torch.device | None,
    batch: int = 256,
) -> list[np.ndarray]:
    """``run``'s outputs on inputs ``x`` ``(N, C, S, S)`` in batches on ``device`` (default:
    the CPU), concatenated; ``fused`` is left on the CPU in eval mode."""
    dev = device or torch.device("cpu")
    fused.eval().to(dev)
    parts: list[list[np.ndarray]] = []
    with torch.no_grad():
        for a in range(0, len(x), batch):
            xb = torch.from_numpy(np.asarray(x[a : a + batch], dtype=np.float32)).to(dev)
            outs = run(xb.contiguous(memory_format=torch.channels_last))
            parts.append([o.cpu().numpy() for o in outs])
    fused.cpu()
    return [np.concatenate(p) for p in zip(*parts, strict=True)]


def confidences(
    fused: Fused, x: np.ndarray, device: torch.device | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``fused``'s voted ``(N, L)`` and member ``(N, M, K)`` confidences on inputs ``x``."""

    def run(xb: torch.Tensor) -> list[torch.Tensor]:
        members, voted, *_ = fused(xb)
        return [voted, members]

    voted, members = _batched(run, fused, x, device)
    return voted, members


def member_views(
    fused: Fused, x: np.ndarray, device: torch.device | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``fused``'s member logits ``(M, N, K)`` and hidden features ``(N, H)`` on inputs ``x``
    (the stacked vote's input)."""
    logits, hidden = _batched(lambda xb: list(fused.member_views(xb)), fused, x, device)
    return logits.transpose(1, 0, 2), hidden


def fuse(
    members: list[nn.Module],
    extras: list[nn.Module],
    weights: np.ndarray,
    stack_x: np.ndarray,
    stack_truth: np.ndarray,
    val_x: np.ndarray,
    val_truth: np.ndarray,
    settings: VoteSettings = DEFAULT_VOTE,
    device: torch.device | None = None,
) -> Fused:
    """The fused graph of ``members`` (``weights``: see :class:`Fused`) and ``extras``: the
    stacked vote, when ``settings`` ask for it, fitted to ``stack_truth`` ``(N, K)`` on frames
    ``stack_x``; then per-label thresholds chosen for precision on ``val_x`` against
    ``val_truth`` ``(N, L)``. The stacking frames should be frames the members were neither
    trained nor chosen on. ``device``: where the confidences are computed; the graph comes
    back on the CPU."""
    nets = [m.eval() for m in members]
    extra_nets = [e.eval() for e in extras]

    def graph(stack: Stack | None) -> Fused:
        thresholds = np.full(val_truth.shape[1], 0.5)  # chosen below
        return Fused(nets, extra_nets, thresholds, weights, stack, mirror=settings.mirror)

    fused = graph(None)
    if settings.stacked:
        logits, hidden = member_views(fused, stack_x, device)
        stack = fit_stack(stack_truth, logits, settings.c, hidden if settings.hidden else None)
        fused = graph(stack)
    val_voted, _ = confidences(fused, val_x, device)
    fused.set_thresholds(choose_thresholds(val_truth, val_voted))
    return fused.eval()


def vote_record(fused: Fused, c: float, frames: str, n_frames: int) -> dict[str, Any]:
    """What the manifest says about ``fused``'s vote (``training.vote``): the method, whether
    nets see the mirrored frame, and for the stacked vote the frames it was fitted on, what it
    reads (``features``: ``logits`` or ``logits+hidden``, ``n_hidden`` of the latter) and its
    regression (inverse penalty ``c``, ``coef`` ``(M·K + H, K)`` as nested lists,
    ``intercept`` ``(K,)``)."""
    stacked = fused.stacked
    return {
        "method": "stacked" if stacked else "weighted_mean",
        "mirror": fused.mirror,
        "features": ("logits+hidden" if fused.n_hidden else "logits") if stacked else None,
        "n_hidden": fused.n_hidden if stacked else None,
        "c": c if stacked else None,
        "frames": frames if stacked else None,
        "n_frames": n_frames if stacked else None,
        "coef": fused.get_buffer("coef").tolist() if stacked else None,
        "intercept": fused.get_buffer("intercept").tolist() if stacked else None,
    }


def vote_metrics(
    labels: list[str], truth: np.ndarray, voted: np.ndarray, thresholds: np.ndarray, extra: bool
) -> dict[str, Any]:
    """The manifest's figures of the voted confidences ``(N, L)`` against ``truth`` on test
    frames: precision per label at its threshold and, where the last label comes from an
    ``extra`` net (the H:Si tip-change net), that net's AUROC."""
    precision = threshold_precision(truth, voted, thresholds)
    out: dict[str, Any] = {
        "ensemble_thresholded_precision": {
            n: (None if np.isnan(v) else round(float(v), 4))
            for n, v in zip(labels, precision, strict=True)
        }
    }
    if extra:
        out["tip_change_net_auroc"] = round(auroc(truth[:, -1], voted[:, -1]), 4)
    return out

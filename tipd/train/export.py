"""Fusing members and vote into one graph, and exporting it with a manifest.

The fused graph runs every member on the same input and votes inside the graph, so the daemon
needs one ONNX Runtime call per frame (or batch). Outputs are described in :mod:`tipd.models`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tipd.models import FORMAT, MANIFEST, OUTPUTS, Manifest, sha256_file
from tipd.train.fit import Fitted
from tipd.train.nets import split_head
from tipd.train.stack import CAP, Stack


class Fused(nn.Module):
    """Members (each ``(N, K)`` logits over the ensemble classes) plus optional extra nets
    (each ``(N, 1)``, e.g. the H:Si tip-change net), voting with per-label thresholds.

    ``weights`` ``(M,)``, summing to 1, weigh the members in the share of votes and, without a
    ``stack``, in the voted confidence (default: equal; see :func:`tipd.train.vote.vote_weights`).
    ``stack``: the voted confidence is the stacked vote instead (:mod:`tipd.train.stack`), on
    the members' logits and, when its ``n_hidden`` > 0, their hidden features too.
    ``mirror``: every net sees the frame as scanned and mirrored left to right (the scan lines
    stay lines, as in training's flips) and its logits are the mean of the two."""

    def __init__(
        self,
        members: list[nn.Module],
        extras: list[nn.Module],
        thresholds: np.ndarray,
        weights: np.ndarray | None = None,
        stack: Stack | None = None,
        mirror: bool = False,
    ) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.extras = nn.ModuleList(extras)
        self.mirror = mirror
        self.register_buffer("thresholds", torch.tensor(thresholds, dtype=torch.float32))
        w = np.full(len(members), 1.0 / len(members)) if weights is None else np.asarray(weights)
        if w.shape != (len(members),) or (w < 0).any() or not np.isclose(w.sum(), 1.0):
            raise ValueError(
                f"member weights must be {len(members)} non-negative numbers summing to 1, got {w}"
            )
        self.register_buffer("weights", torch.tensor(w, dtype=torch.float32).view(1, -1, 1))
        self.stacked = stack is not None
        self.n_hidden = 0 if stack is None else stack.n_hidden
        if stack is not None:
            want = len(members) * (len(thresholds) - len(extras)) + stack.n_hidden
            if stack.coef.shape[0] != want:
                raise ValueError(
                    f"the stack has {stack.coef.shape[0]} weights a label; these members and "
                    f"{stack.n_hidden} hidden features need {want}"
                )
            self.register_buffer("coef", torch.tensor(stack.coef, dtype=torch.float32))
            self.register_buffer("intercept", torch.tensor(stack.intercept, dtype=torch.float32))

    def set_thresholds(self, thresholds: np.ndarray) -> None:
        """Per-label thresholds ``(L,)`` of the votes and the manifest."""
        t = self.get_buffer("thresholds")
        t.copy_(torch.tensor(thresholds, dtype=torch.float32).view_as(t))

    def _views(self, net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``net``'s hidden features ``(N, H)`` (what its last layer reads) and logits
        ``(N, L)``, the features averaged over the frame and its mirror. The last layer is
        linear, so the logits are the mean of the two views' logits too."""
        body, last = split_head(net)
        if not self.mirror:
            h: torch.Tensor = body(x)
        else:
            both: torch.Tensor = body(torch.cat([x, torch.flip(x, dims=[3])]))
            h = both.reshape(2, -1, both.shape[-1]).mean(dim=0)
        z: torch.Tensor = last(h)
        return h, z

    def member_views(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The members' logits ``(N, M, K)`` and hidden features ``(N, H)``, member after
        member (the stacked vote's input)."""
        views = [self._views(m, x) for m in self.members]
        return torch.stack([z for _, z in views], dim=1), torch.cat([h for h, _ in views], dim=1)

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``members`` (N, M, K), ``voted`` (N, L), ``votes`` (N, L) and ``features``
        (N, H): what the last layer of every member, then of every extra net, reads
        (:mod:`tipd.familiarity` measures frames by them)."""
        logits, hidden = self.member_views(x)
        member = torch.sigmoid(logits)  # (N, M, K)
        k = member.shape[2]
        thresholds: torch.Tensor = self.get_buffer("thresholds")
        weights: torch.Tensor = self.get_buffer("weights")  # (1, M, 1)
        if self.stacked:
            z = logits.clamp(-CAP, CAP).reshape(logits.shape[0], -1)  # (N, M·K), member-major
            if self.n_hidden:
                z = torch.cat([z, hidden], dim=1)
            voted = torch.sigmoid(z @ self.get_buffer("coef") + self.get_buffer("intercept"))
        else:
            voted = (member * weights).sum(dim=1)
        votes = ((member >= thresholds[:k]).float() * weights).sum(dim=1)
        features = hidden
        if len(self.extras):
            views = [self._views(e, x) for e in self.extras]
            extra = torch.cat([torch.sigmoid(z) for _, z in views], dim=1)
            voted = torch.cat([voted, extra], dim=1)
            votes = torch.cat([votes, (extra >= thresholds[k:]).float()], dim=1)
            features = torch.cat([hidden, *(h for h, _ in views)], dim=1)
        return member, voted, votes, features


def export_onnx(model: nn.Module, path: Path, size: int, outputs: list[str], channels: int) -> None:
    """Export ``model`` with input ``x`` ``(N, channels, size, size)``, dynamic batch axis."""
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    dummy = torch.zeros(2, channels, size, size)
    torch.onnx.export(
        model,
        (dummy,),
        str(path),
        input_names=["x"],
        output_names=outputs,
        dynamic_axes={"x": {0: "batch"}, **{o: {0: "batch"} for o in outputs}},
        opset_version=17,
        dynamo=False,
    )


def onnx_matches_torch(model: nn.Module, path: Path, x: np.ndarray) -> float:
    """Largest absolute difference between ONNX Runtime (CPU) and torch outputs on ``x``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x.astype(np.float32)})
    with torch.no_grad():
        want = model(torch.from_numpy(x.astype(np.float32)))
    want = want if isinstance(want, tuple) else (want,)
    return max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want, strict=True))


def export_graph(fused: Fused, path: Path, size: int, check_x: np.ndarray) -> float:
    """Export ``fused`` (in eval mode) to ``path`` and return the largest difference between
    ONNX Runtime and torch on ``check_x`` ``(N, C, S, S)``; ``RuntimeError`` above 1e-4."""
    fused = fused.eval()
    export_onnx(fused, path, size, list(OUTPUTS), check_x.shape[1])
    diff = onnx_matches_torch(fused, path, check_x)
    if diff > 1e-4:
        raise RuntimeError(f"ONNX Runtime differs from torch by {diff:.2e} (> 1e-4)")
    return diff


def write_model(
    out: Path,
    name: str,
    surface: str,
    classes: list[str],
    extra: list[str],
    desirable: list[str],
    members: list[Fitted],
    extras: list[Fitted],
    fused: Fused,
    size: int,
    training: dict[str, Any],
    metrics: dict[str, Any],
    check_x: np.ndarray,
    channels: tuple[str, ...] = ("height",),
) -> Manifest:
    """Export ``fused`` (the nets of ``members`` and ``extras``, its vote and thresholds) and
    every member into ``out`` with a verified manifest.

    Raises ``RuntimeError`` when ONNX Runtime and torch disagree by more than 1e-4.
    """
    if out.exists():
        shutil.rmtree(out)
    (out / "members").mkdir(parents=True)
    vote = fused.get_buffer("weights").flatten().tolist()
    thresholds = fused.get_buffer("thresholds").numpy()
    graph = out / "ensemble.onnx"
    n_channels = check_x.shape[1]
    diff = export_graph(fused, graph, size, check_x)
    entries = []
    for k, fitted in enumerate((*members, *extras)):
        path = out / "members" / f"{fitted.name}.onnx"
        export_onnx(fitted.model, path, size, ["logits"], n_channels)
        entries.append(
            {
                "file": f"members/{fitted.name}.onnx",
                "sha256": sha256_file(path),
                "name": fitted.name,
                "family": fitted.recipe.family,
                "width": fitted.recipe.width,
                "labels": list(fitted.labels),
                "macs": fitted.macs,
                "recipe": fitted.recipe.to_dict(),
                "val_balanced_accuracy": round(fitted.val_balanced_accuracy, 4),
                "val_mean_auroc": round(fitted.val_mean_auroc, 4),
                "vote_weight": round(vote[k], 4) if k < len(members) else None,
            }
        )
    labels = classes + extra
    manifest = Manifest(
        format=FORMAT,
        name=name,
        surface=surface,
        classes=classes,
        extra=extra,
        desirable=desirable,
        thresholds={n: round(float(t), 4) for n, t in zip(labels, thresholds, strict=True)},
        preprocessing={
            "flatten": "lines",
            "clip_percentile": 0.5,
            "size": size,
            "channels": list(channels),
        },
        graph={"file": "ensemble.onnx", "sha256": sha256_file(graph)},
        members=entries,
        training={**training, "onnx_vs_torch_max_abs_diff": diff},
        metrics=metrics,
    )
    (out / MANIFEST).write_text(json.dumps(manifest.model_dump(), indent=2) + "\n")
    return manifest

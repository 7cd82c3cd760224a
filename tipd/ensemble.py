"""Running a shipped ensemble with ONNX Runtime (never torch), and reading its outputs.

The CUDA provider is used only when it really works: onnxruntime-gpu lists it even on machines
without a GPU and then prints a wall of loader errors. We look for the NVIDIA driver first,
try CUDA with ORT's own logging silenced, and keep whichever provider the session really got.

On the card, convolutions run in full float32 (:data:`CUDA_OPTIONS`): ONNX Runtime lets cuDNN
use TF32 by default on Ampere and later cards (A100, H100), which keeps 10 bits of mantissa,
and the stacked vote weighs the nets' hidden features with weights up to a few hundred, so the
vote on a GPU would drift from the CPU's that every shipped figure was measured on. These nets
are small; full precision costs them little.
"""

from __future__ import annotations

import ctypes.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tipd.frames import Frame
from tipd.models import Manifest, load_manifest
from tipd.preprocess import model_input

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
#: the CUDA provider's options: no TF32 (see the module's docstring)
CUDA_OPTIONS = {"use_tf32": "0"}


def _cuda_driver_present() -> bool:
    return ctypes.util.find_library("cuda") is not None or Path("/dev/nvidiactl").exists()


@dataclass
class Output:
    """One run: ``members`` (N, M, K), ``voted`` (N, L), ``votes`` (N, L), all in [0, 1]."""

    members: np.ndarray
    voted: np.ndarray
    votes: np.ndarray


@dataclass
class Decision:
    """What an ensemble says about one frame.

    ``classes`` maps every label to its voted confidence; ``state`` is the most confident class
    at or above its threshold, else ``unknown``; ``bad`` is 1 minus the best desirable
    confidence; ``tip_change`` the tip-change confidence (0 if the model has no such label).
    """

    classes: dict[str, float]
    members: dict[str, dict[str, float]]
    state: str
    desirable: bool
    bad: float
    tip_change: float


class Ensemble:
    """An ONNX Runtime session of ``folder/ensemble.onnx``, checked against its manifest."""

    def __init__(self, folder: Path, prefer_gpu: bool = True, threads: int = 0) -> None:
        import onnxruntime as ort

        self.folder = folder
        self.manifest: Manifest = load_manifest(folder, verify=True)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        path = str(folder / self.manifest.graph.file)
        session = None
        if prefer_gpu and CUDA in ort.get_available_providers() and _cuda_driver_present():
            ort.set_default_logger_severity(4)
            try:
                session = ort.InferenceSession(path, opts, providers=[(CUDA, CUDA_OPTIONS), CPU])
            except Exception:  # a broken CUDA install: fall back quietly
                session = None
            finally:
                ort.set_default_logger_severity(2)
            if session is not None and session.get_providers()[0] != CUDA:
                session = None
        if session is None:
            session = ort.InferenceSession(path, opts, providers=[CPU])
        self.session = session
        self.provider: str = session.get_providers()[0]
        self.size = self.manifest.preprocessing.size
        self.channels = tuple(self.manifest.preprocessing.channels)

    def run(self, x: np.ndarray) -> Output:
        """Run on model inputs ``x`` of shape ``(N, C, S, S)`` (float32 in [-1, 1])."""
        members, voted, votes = self.session.run(
            ["members", "voted", "votes"], {"x": np.ascontiguousarray(x, dtype=np.float32)}
        )
        return Output(members, voted, votes)

    def warm_up(self) -> None:
        """One run on zeros so the first real frame does not pay for initialisation."""
        self.run(np.zeros((1, len(self.channels), self.size, self.size), dtype=np.float32))

    def prepare(self, z: np.ndarray) -> np.ndarray:
        """A frame's heights ``(rows, cols)`` → model input ``(1, C, S, S)``."""
        return model_input(z, self.size, self.channels)[None]

    def classify(self, frames: list[Frame]) -> list[Decision]:
        """Decisions for whole frames, in one batch."""
        if not frames:
            return []
        x = np.concatenate([self.prepare(f.data) for f in frames])
        out = self.run(x)
        return [decide(self.manifest, out.voted[i], out.members[i]) for i in range(len(frames))]


def decide(manifest: Manifest, voted: np.ndarray, members: np.ndarray) -> Decision:
    """One frame's voted ``(L,)`` and member ``(M, K)`` confidences as a :class:`Decision`."""
    labels = manifest.labels
    classes = {n: float(v) for n, v in zip(labels, voted, strict=True)}
    member_conf = {
        m.name: {n: float(v) for n, v in zip(manifest.classes, row, strict=True)}
        for m, row in zip(manifest.members, members, strict=False)
    }
    over = [(classes[c], c) for c in manifest.classes if classes[c] >= manifest.thresholds[c]]
    state = max(over)[1] if over else "unknown"
    good = max((classes[c] for c in manifest.desirable), default=0.0)
    return Decision(
        classes=classes,
        members=member_conf,
        state=state,
        desirable=state in manifest.desirable,
        bad=1.0 - good,
        tip_change=classes.get("tip_change", 0.0),
    )

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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tipd.familiarity import Familiarity
from tipd.frames import Frame
from tipd.models import OUTPUTS, Manifest, ModelError, load_manifest
from tipd.preprocess import model_input
from tipd.scanlines import NONE, TipChangeEvidence, tip_change_evidence
from tipd.taxonomy import UNFAMILIAR

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
#: the CUDA provider's options: no TF32 (see the module's docstring)
CUDA_OPTIONS = {"use_tf32": "0"}


def _cuda_driver_present() -> bool:
    return ctypes.util.find_library("cuda") is not None or Path("/dev/nvidiactl").exists()


#: a frame's ``bad`` when the model does not know it and its lines show nothing: no evidence
#: either way
UNSURE = 0.5


@dataclass
class Output:
    """One run: ``members`` (N, M, K), ``voted`` (N, L), ``votes`` (N, L), all in [0, 1], and
    the nets' hidden ``features`` (N, H)."""

    members: np.ndarray
    voted: np.ndarray
    votes: np.ndarray
    features: np.ndarray


@dataclass
class Decision:
    """What an ensemble says about one frame.

    ``classes`` maps every label to its voted confidence and ``members`` each member's;
    ``familiarity`` (0–1, None where the model has no statistics) says how much the frame
    resembles the model's training frames, and ``lines`` what its scan lines say of a tip
    change (:mod:`tipd.scanlines`). From these, see :func:`decide`: ``state`` and its
    ``confidence``; ``bad``, the confidence 0–1 that the frame is not good; ``tip_change``,
    the confidence that the tip changed during the frame.
    """

    classes: dict[str, float]
    members: dict[str, dict[str, float]]
    state: str
    desirable: bool
    bad: float
    tip_change: float
    confidence: float = 0.0
    familiarity: float | None = None
    familiar: bool = True
    lines: TipChangeEvidence = NONE
    #: every source's say (:class:`tipd.evidence.Evidence`), once the decision step weighed
    #: them (:func:`tipd.evidence.combine`); empty for the nets' own decision
    evidence: tuple[Any, ...] = ()
    #: the not-good confidence the policy may act on: ``bad``, less what only the frame's own
    #: physics says (None: ``bad`` itself)
    policy_bad: float | None = None

    @property
    def acting_bad(self) -> float:
        """What the policy hears of ``bad``."""
        return self.bad if self.policy_bad is None else self.policy_bad


class Ensemble:
    """An ONNX Runtime session of ``folder/ensemble.onnx``, checked against its manifest:
    on a GPU where ``prefer_gpu`` and one is present, ``threads`` ONNX Runtime threads (0: its
    default), and a thread ``beside`` the nets for the caller's other work (:meth:`classify`)."""

    def __init__(
        self, folder: Path, prefer_gpu: bool = True, threads: int = 0, beside: bool = True
    ) -> None:
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
        absent = set(OUTPUTS) - {o.name for o in session.get_outputs()}
        if absent:
            raise ModelError(
                f"{path}: no output named {', '.join(sorted(absent))}; a model graph has the "
                f"outputs {', '.join(OUTPUTS)} (`tipd train` writes such graphs)"
            )
        self.familiarity: Familiarity | None = None
        if self.manifest.familiarity is not None:
            self.familiarity = Familiarity.load(folder / self.manifest.familiarity.file)
        #: does the caller's other work while the nets run (:meth:`classify`'s ``meanwhile``);
        #: None: that work runs first, on the caller's thread
        self._worker = (
            ThreadPoolExecutor(1, thread_name_prefix=f"beside-{self.manifest.name}")
            if beside
            else None
        )

    def run(self, x: np.ndarray) -> Output:
        """Run on model inputs ``x`` of shape ``(N, C, S, S)`` (float32 in [-1, 1])."""
        out = self.session.run(list(OUTPUTS), {"x": np.ascontiguousarray(x, dtype=np.float32)})
        return Output(*out)

    def warm_up(self) -> None:
        """One run on zeros so the first real frame does not pay for initialisation."""
        self.run(np.zeros((1, len(self.channels), self.size, self.size), dtype=np.float32))

    def prepare(self, z: np.ndarray) -> np.ndarray:
        """A frame's heights ``(rows, cols)`` → model input ``(1, C, S, S)``."""
        return model_input(z, self.size, self.channels)[None]

    def classify(
        self, frames: list[Frame], meanwhile: Callable[[], object] | None = None
    ) -> list[Decision]:
        """Decisions for whole frames, in one batch. ``meanwhile``, if given, runs in a thread of
        the ensemble's own while the nets read the frames: other work on them (numpy, SciPy and
        ONNX Runtime let go of the interpreter in their loops), on the other core. An ensemble
        made with ``beside=False`` runs it first, on the caller's thread: for one of several
        processes that share a machine's cores, where a second thread only contends."""
        if not frames:
            return []
        other = None
        if meanwhile is not None:
            if self._worker is None:
                meanwhile()
            else:
                other = self._worker.submit(meanwhile)
        x = np.concatenate([self.prepare(f.data) for f in frames])
        out = self.run(x)
        lines = [tip_change_evidence(f.data) for f in frames]
        if other is not None:
            other.result()  # its exceptions are the caller's
        known: list[float | None] = [None] * len(frames)
        threshold = 0.0
        if self.familiarity is not None:
            pixel_nm: list[float | None] = [f.scan_size_nm[0] / self.size for f in frames]
            known = [float(v) for v in self.familiarity.score(out.features, pixel_nm)]
            threshold = self.familiarity.threshold
        return [
            decide(
                self.manifest,
                out.voted[i],
                out.members[i],
                known[i],
                lines[i],
                threshold,
            )
            for i in range(len(frames))
        ]


def decide(
    manifest: Manifest,
    voted: np.ndarray,
    members: np.ndarray,
    familiarity: float | None = None,
    lines: TipChangeEvidence = NONE,
    threshold: float = 0.0,
) -> Decision:
    """One frame's voted ``(L,)`` and member ``(M, K)`` confidences, its ``familiarity`` (None:
    not measured) and scan-line evidence ``lines`` as a :class:`Decision`.

    A familiar frame (``familiarity`` ≥ ``threshold``): the model decides. The state is the most
    confident class at or above its threshold, else ``unknown``; ``bad`` is 1 minus the best
    desirable confidence, ``tip_change`` the model's. (Letting the lines speak where the model
    names nothing cost 0.014 good/bad AUROC on held-out H:Si frames.)

    An unfamiliar frame: the model's classes are not trusted. The lines need no knowledge of
    the surface, so a frame whose lines show a tip change (more likely than not) is
    ``tip_change``; any other is ``unfamiliar``. ``bad`` is :data:`UNSURE` (or the lines'
    confidence, if larger), ``tip_change`` the lines' confidence.
    """
    labels = manifest.labels
    classes = {n: float(v) for n, v in zip(labels, voted, strict=True)}
    member_conf = {
        m.name: {n: float(v) for n, v in zip(manifest.classes, row, strict=True)}
        for m, row in zip(manifest.members, members, strict=False)
    }
    line_p = lines.probability
    familiar = familiarity is None or familiarity >= threshold
    if familiar:
        over = [(classes[c], c) for c in manifest.classes if classes[c] >= manifest.thresholds[c]]
        confidence, state = max(over) if over else (0.0, "unknown")
        good = max((classes[c] for c in manifest.desirable), default=0.0)
        bad, tip_change = 1.0 - good, classes.get("tip_change", 0.0)
    else:
        state, confidence = UNFAMILIAR, 1.0 - float(familiarity or 0.0)
        bad, tip_change = max(UNSURE, line_p), line_p
        if line_p >= 0.5:
            state, confidence = "tip_change", line_p
    return Decision(
        classes=classes,
        members=member_conf,
        state=state,
        desirable=state in manifest.desirable,
        bad=bad,
        tip_change=tip_change,
        confidence=confidence,
        familiarity=familiarity,
        familiar=familiar,
        lines=lines,
    )

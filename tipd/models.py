"""Shipped models: the manifest of an ensemble folder, and finding and checking one.

A model folder (``models/<name>/``) holds::

    manifest.json     this module's :class:`Manifest`
    ensemble.onnx     the fused graph: input ``x`` (N, 1, S, S) float32 in [-1, 1];
                      outputs ``members`` (N, M, K), ``voted`` (N, L), ``votes`` (N, L)
                      and ``features`` (N, H): the hidden features of every member,
                      then every extra net, as its last linear layer reads them
    members/*.onnx    each member alone (for inspection and re-use)
    familiarity.npz   where fitted: the statistics of :mod:`tipd.familiarity`

``voted`` is the stacked vote (a logistic regression per label over every member's logits
and, where ``training.vote.features`` is ``logits+hidden``, the hidden features its last linear
layer reads; ``training.vote`` in the manifest) or, in models without one, the weighted mean
of the members' sigmoid confidences per label (each member's ``vote_weight``); ``votes`` the
weighted share of members at or above the label's threshold (majority vote when ≥ 0.5). Where
``training.vote.mirror`` is true every net also sees the frame mirrored left to right and its
logits are the mean of the two. Labels are the K ensemble classes followed by any extra labels
(the H:Si tip-change net).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tipd.errors import UserError

MANIFEST = "manifest.json"
#: the fused graph's outputs, in order
OUTPUTS = ("members", "voted", "votes", "features")
FORMAT = "tipd-model/1"


class ModelError(UserError, ValueError):
    """A model folder that is missing, malformed or whose files do not match their sha256."""


class Preprocessing(BaseModel):
    """How frames become model inputs (see :mod:`tipd.preprocess`)."""

    model_config = ConfigDict(extra="forbid")
    flatten: str = "lines"
    clip_percentile: float = 0.5
    size: int = 128
    channels: list[str] = ["height"]  #: see tipd.preprocess.model_input


class ModelFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Member(ModelFile):
    """One member network of the ensemble."""

    name: str
    family: str
    width: float
    labels: list[str]
    macs: int
    recipe: dict[str, Any]
    val_balanced_accuracy: float
    val_mean_auroc: float
    #: share of the ensemble's vote (None: an extra net, or a model from before weighted votes,
    #: whose members count equally)
    vote_weight: float | None = None


class Manifest(BaseModel):
    """Everything needed to run and to trust one shipped ensemble."""

    model_config = ConfigDict(extra="forbid")
    format: str = FORMAT
    name: str
    surface: str  #: hsi100, au111, cu111 or generic
    classes: list[str]  #: the ensemble's multiclass columns (K)
    extra: list[str] = []  #: further labels from separate nets (H:Si tip change)
    desirable: list[str]
    thresholds: dict[str, float]  #: per label, chosen for precision on validation frames
    preprocessing: Preprocessing
    graph: ModelFile
    members: list[Member]
    training: dict[str, Any]
    metrics: dict[str, Any] = {}
    #: the statistics of :mod:`tipd.familiarity` (``tipd familiarity``); None: not measured,
    #: every frame counts as familiar
    familiarity: ModelFile | None = None

    @property
    def labels(self) -> list[str]:
        return self.classes + self.extra

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        missing = set(self.labels) - set(self.thresholds)
        if missing:
            raise ValueError(f"thresholds missing for {sorted(missing)}")
        if not set(self.desirable) <= set(self.classes):
            raise ValueError(f"desirable {self.desirable} not among classes {self.classes}")
        return self


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def models_root() -> Path:
    """Where shipped models live: ``$TIPD_MODELS_DIR`` if set; else the ``models/`` folder of
    the checkout tipd runs from (``make``, ``pip install -e``); else the one ``pip install``
    put beside the environment (``<prefix>/share/tipd/models``, from the wheel)."""
    env = os.environ.get("TIPD_MODELS_DIR")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parent.parent / "models"
    if checkout.is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "tipd" / "models"


def find(name: str, root: Path | None = None) -> Path:
    """The folder of model ``name`` (a name under the models root, or a path)."""
    direct = Path(name)
    if (direct / MANIFEST).is_file():
        return direct
    folder = (root or models_root()) / name
    if not (folder / MANIFEST).is_file():
        available = sorted(
            p.name for p in (root or models_root()).glob("*") if (p / MANIFEST).is_file()
        )
        raise ModelError(f"no model {name!r} in {root or models_root()}; available: {available}")
    return folder


def load_manifest(folder: Path, verify: bool = True) -> Manifest:
    """Read and validate ``folder/manifest.json``; with ``verify``, check the sha256 of the
    fused graph (and members) before anything loads them."""
    path = folder / MANIFEST
    try:
        manifest = Manifest.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise ModelError(f"{path}: no manifest") from None
    except ValueError as exc:
        raise ModelError(f"{path}: invalid manifest ({exc})") from None
    if verify:
        extra = [manifest.familiarity] if manifest.familiarity is not None else []
        for entry in (manifest.graph, *manifest.members, *extra):
            target = folder / entry.file
            if not target.is_file():
                raise ModelError(f"{target}: listed in the manifest but missing")
            actual = sha256_file(target)
            if actual != entry.sha256:
                raise ModelError(
                    f"{target}: sha256 {actual[:12]}… does not match the manifest's "
                    f"{entry.sha256[:12]}… (file changed or corrupt)"
                )
    return manifest

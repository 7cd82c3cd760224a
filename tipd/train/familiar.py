"""``tipd familiarity``: fit a model's familiarity statistics (:mod:`tipd.familiarity`).

Adds the ``features`` output to the fused graph (the hidden features every net's last linear
layer reads, concatenated; the graph's other outputs are unchanged), renders frames of the
model's own training seed and validation seed, and writes ``familiarity.npz`` with its sha256
into the manifest. Runs on the CPU in a minute or two; needs the ``[train]`` extra (onnx).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx

from tipd import familiarity
from tipd.ensemble import Ensemble
from tipd.models import MANIFEST, load_manifest, sha256_file
from tipd.train.data import synthetic
from tipd.train.revote import synth_seeds

FEATURES = "features"
FILE = "familiarity.npz"
_LINEAR = re.compile(r"(members|extras)\.(\d+)\.head\.(\d+)\.weight")


def add_features_output(graph: Path) -> list[str]:
    """Give the ONNX graph at ``graph`` an output ``features`` ``(N, H)``: the inputs of the
    last linear layer of every member and extra net, concatenated (members first). Rewrites
    the file; a graph that has the output already is left alone. Returns the tensors used."""
    model = onnx.load(str(graph))
    g = model.graph
    last: dict[tuple[str, int], tuple[int, str]] = {}
    for node in g.node:
        m = _LINEAR.fullmatch(node.input[1]) if node.op_type == "Gemm" else None
        if m:
            key, layer = (m.group(1), int(m.group(2))), int(m.group(3))
            if key not in last or layer > last[key][0]:
                last[key] = (layer, node.input[0])
    order = sorted(last, key=lambda k: (k[0] != "members", k[1]))
    names = [last[k][1] for k in order]
    if FEATURES in {o.name for o in g.output}:
        return names
    if not names:
        raise ValueError(f"{graph}: no member's last linear layer found")
    g.node.append(onnx.helper.make_node("Concat", names, [FEATURES], axis=1))
    g.output.append(
        onnx.helper.make_tensor_value_info(FEATURES, onnx.TensorProto.FLOAT, ["batch", "H"])
    )
    onnx.checker.check_model(model)
    onnx.save(model, str(graph))
    return names


def features(ens: Ensemble, x: np.ndarray) -> np.ndarray:
    """The ``features`` output of ``ens`` on model inputs ``x``, ``(N, H)``."""
    parts = [ens.run(x[a : a + 256]).features for a in range(0, len(x), 256)]
    return np.concatenate([p for p in parts if p is not None])


def fit_model(folder: Path, n_train: int = 3000, n_val: int = 1000, workers: int = 2) -> Path:
    """Fit and write ``folder``'s familiarity statistics (see the module's docstring)."""
    manifest = load_manifest(folder)
    seeds = synth_seeds(manifest)  # ValueError for a model not trained on synthetic frames
    graph = folder / manifest.graph.file
    used = add_features_output(graph)
    raw = json.loads((folder / MANIFEST).read_text())
    raw["graph"]["sha256"] = sha256_file(graph)
    raw.pop("familiarity", None)
    (folder / MANIFEST).write_text(json.dumps(raw, indent=2) + "\n")
    ens = Ensemble(folder, prefer_gpu=False)
    size, channels = manifest.preprocessing.size, tuple(manifest.preprocessing.channels)
    train = synthetic(manifest.surface, n_train, seeds.train, size, workers, channels)
    val = synthetic(manifest.surface, n_val, seeds.validation, size, workers, channels)
    assert train.pixel_nm is not None
    stats = familiarity.fit(
        features(ens, train.x), train.primary, features(ens, val.x), train.pixel_nm
    )
    stats.save(folder / FILE)
    raw["familiarity"] = {"file": FILE, "sha256": sha256_file(folder / FILE)}
    raw["training"]["familiarity"] = {
        "train": f"tipd synth {manifest.surface} seed {seeds.train} frames 0..{n_train - 1}",
        "validation": (
            f"tipd synth {manifest.surface} seed {seeds.validation} frames 0..{n_val - 1}"
        ),
        "features": used,
        "pixel_nm": [round(float(v), 5) for v in stats.pixel_nm],
        "threshold": stats.threshold,
    }
    (folder / MANIFEST).write_text(json.dumps(raw, indent=2) + "\n")
    load_manifest(folder)  # every sha256 checks out
    return folder / FILE

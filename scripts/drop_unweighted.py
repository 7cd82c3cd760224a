"""Re-fuse a shipped ensemble without the members whose vote weight is 0.

    .venv/bin/python scripts/drop_unweighted.py models/au111 [models/cu111 ...]

A member with vote weight 0 changes no output but ``members`` and costs inference time on every
frame. ``tipd train`` leaves such members out when it exports; this does the same for a model
trained before it did, from the member ONNX files alone (no torch): it builds a new fused
graph of the weighted members and the extra nets, checks on random inputs that the new
``voted`` and ``votes`` equal the old graph's (and ``members`` its kept columns), then rewrites
``ensemble.onnx`` and the manifest and removes the unused member files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, compose, helper, numpy_helper

from tipd.models import MANIFEST, load_manifest, sha256_file


def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def fuse(
    members: list[Path], extras: list[Path], weights: np.ndarray, thresholds: np.ndarray
) -> onnx.ModelProto:
    """A graph with input ``x`` and outputs ``members`` (N, M, K), ``voted`` and ``votes`` (N, L)
    as :class:`tipd.train.export.Fused` computes them."""
    nodes: list[onnx.NodeProto] = []
    inits = [numpy_helper.from_array(np.array([1], dtype=np.int64), "one_axis")]
    sig: list[str] = []
    for i, path in enumerate([*members, *extras]):
        net = compose.add_prefix(onnx.load(str(path)), f"n{i}/")
        nodes.append(helper.make_node("Identity", ["x"], [f"n{i}/x"]))
        nodes.extend(net.graph.node)
        inits.extend(net.graph.initializer)
        nodes.append(helper.make_node("Sigmoid", [f"n{i}/logits"], [f"s{i}"]))
        sig.append(f"s{i}")
    k_members = len(members)
    n_classes = len(thresholds) - len(extras)
    inits.append(_const("thr_k", thresholds[: len(thresholds) - len(extras)]))
    voted_terms, vote_terms = [], []
    for i in range(k_members):
        inits.append(_const(f"w{i}", np.array(weights[i])))
        nodes += [
            helper.make_node("Unsqueeze", [sig[i], "one_axis"], [f"u{i}"]),
            helper.make_node("Mul", [sig[i], f"w{i}"], [f"ws{i}"]),
            helper.make_node("GreaterOrEqual", [sig[i], "thr_k"], [f"ge{i}"]),
            helper.make_node("Cast", [f"ge{i}"], [f"gef{i}"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [f"gef{i}", f"w{i}"], [f"wv{i}"]),
        ]
        voted_terms.append(f"ws{i}")
        vote_terms.append(f"wv{i}")
    nodes.append(
        helper.make_node("Concat", [f"u{i}" for i in range(k_members)], ["members"], axis=1)
    )
    nodes.append(helper.make_node("Sum", voted_terms, ["voted_k"]))
    nodes.append(helper.make_node("Sum", vote_terms, ["votes_k"]))
    voted, votes = ["voted_k"], ["votes_k"]
    for j in range(len(extras)):
        s = sig[k_members + j]
        inits.append(_const(f"thr_e{j}", np.array([thresholds[len(thresholds) - len(extras) + j]])))
        nodes += [
            helper.make_node("GreaterOrEqual", [s, f"thr_e{j}"], [f"ege{j}"]),
            helper.make_node("Cast", [f"ege{j}"], [f"egef{j}"], to=TensorProto.FLOAT),
        ]
        voted.append(s)
        votes.append(f"egef{j}")
    nodes.append(helper.make_node("Concat", voted, ["voted"], axis=1))
    nodes.append(helper.make_node("Concat", votes, ["votes"], axis=1))
    first = onnx.load(str(members[0]))
    x = first.graph.input[0]
    outs = [
        helper.make_tensor_value_info(
            "members", TensorProto.FLOAT, ["batch", k_members, n_classes]
        ),
        helper.make_tensor_value_info("voted", TensorProto.FLOAT, ["batch", len(thresholds)]),
        helper.make_tensor_value_info("votes", TensorProto.FLOAT, ["batch", len(thresholds)]),
    ]
    graph = helper.make_graph(nodes, "ensemble", [x], outs, inits)
    model = helper.make_model(graph, opset_imports=list(first.opset_import))
    model.ir_version = first.ir_version  # what the installed ONNX Runtime reads
    onnx.checker.check_model(model)
    return model


def _run(path: Path | bytes, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    out: list[np.ndarray] = session.run(["members", "voted", "votes"], {"x": x})
    return out


def main() -> None:
    for folder in map(Path, sys.argv[1:]):
        m = load_manifest(folder, verify=True)
        raw = json.loads((folder / MANIFEST).read_text())
        n_ens = len(m.members) - len(m.extra)
        entries = raw["members"]
        # a model from before weighted votes has no vote_weight: every member votes
        votes = [e.vote_weight for e in m.members[:n_ens]]
        keep = [i for i, w in enumerate(votes) if w is None or w > 0]
        if len(keep) == n_ens:
            print(f"{folder}: every member has a vote; nothing to do")
            continue
        weights = np.array([votes[i] for i in keep])
        weights = weights / weights.sum()
        thresholds = np.array([m.thresholds[label] for label in m.labels])
        model = fuse(
            [folder / entries[i]["file"] for i in keep],
            [folder / e["file"] for e in entries[n_ens:]],
            weights,
            thresholds,
        )
        x = (
            np.random.default_rng(0)
            .uniform(
                -1,
                1,
                (64, len(m.preprocessing.channels), m.preprocessing.size, m.preprocessing.size),
            )
            .astype(np.float32)
        )
        old = _run(folder / m.graph.file, x)
        new = _run(model.SerializeToString(), x)
        d_voted = float(np.abs(old[1] - new[1]).max())
        d_members = float(np.abs(old[0][:, keep] - new[0]).max())
        if d_voted > 1e-5 or d_members > 1e-5 or not np.array_equal(old[2] > 0.5, new[2] > 0.5):
            raise SystemExit(
                f"{folder}: re-fused graph differs (voted {d_voted:.1e}, members {d_members:.1e})"
            )
        onnx.save(model, str(folder / m.graph.file))
        dropped = [entries[i] for i in range(n_ens) if i not in keep]
        for e in dropped:
            (folder / e["file"]).unlink()
        raw["members"] = [entries[i] for i in keep] + entries[n_ens:]
        raw["graph"]["sha256"] = sha256_file(folder / m.graph.file)
        raw["training"]["left_out_with_vote_weight_0"] = [e["name"] for e in dropped]
        (folder / MANIFEST).write_text(json.dumps(raw, indent=2) + "\n")
        load_manifest(folder, verify=True)
        print(
            f"{folder}: left out {', '.join(e['name'] for e in dropped)}; "
            f"voted max |Δ| {d_voted:.1e}, members {d_members:.1e}, majority votes equal"
        )


if __name__ == "__main__":
    main()

"""The stacked vote (tipd.train.stack) and the fused graph that computes it, mirrored or not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tipd.train.metrics import auroc, mean_auroc
from tipd.train.stack import CAP, Stack, features, fit_stack, stacked


def test_the_stacked_vote_hears_what_another_label_says() -> None:
    """Label 0 shows only in member 1's confidence in label 1 (a confident double tip says the
    tip is not sharp): a vote per label cannot use that, the stacked vote does."""
    rng = np.random.default_rng(0)
    n = 1200
    truth = (rng.random((n, 2)) < 0.4).astype(float)
    logits = rng.normal(0, 1, (2, n, 2))  # (M, N, K): noise, except...
    logits[1, :, 1] += 3 * truth[:, 0] + 3 * truth[:, 1]
    stack = fit_stack(truth[:800], logits[:, :800])
    assert stack.coef.shape == (4, 2) and stack.intercept.shape == (2,)
    vote = stacked(stack, logits[:, 800:])
    assert ((vote >= 0) & (vote <= 1)).all()
    mean_vote = 1 / (1 + np.exp(-logits[:, 800:].mean(axis=0)))
    assert auroc(truth[800:, 0], mean_vote[:, 0]) < 0.6  # the label's own column is noise
    assert auroc(truth[800:, 0], vote[:, 0]) > 0.75
    assert mean_auroc(truth[800:], vote) > mean_auroc(truth[800:], mean_vote)


def test_a_label_never_on_gets_no_weights_and_saturated_logits_are_capped() -> None:
    rng = np.random.default_rng(1)
    truth = np.zeros((200, 2))
    truth[:, 0] = rng.random(200) < 0.5
    stack = fit_stack(truth, rng.normal(0, 1, (3, 200, 2)))
    assert (stack.coef[:, 1] == 0).all()
    assert np.isclose(1 / (1 + np.exp(-stack.intercept[1])), 1e-3)
    big = np.full((1, 1, 2), 1e4)
    assert (features(big) == CAP).all() and (features(-big) == -CAP).all()


@pytest.fixture
def nets() -> list[Any]:
    """Two small nets that see where things are in the frame (so a mirror changes them)."""
    torch = pytest.importorskip("torch")
    from torch import nn

    torch.manual_seed(0)
    return [
        nn.Sequential(nn.Conv2d(1, 2, 3, stride=8), nn.Flatten(), nn.Linear(2 * 16 * 16, 3))
        for _ in range(2)
    ]


def _run(path: Path, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out: list[np.ndarray] = session.run(["members", "voted", "votes"], {"x": x})
    return out


@pytest.mark.parametrize("mirror", [False, True])
def test_the_fused_graph_computes_the_stacked_vote(
    nets: list[Any], tmp_path: Path, mirror: bool
) -> None:
    """ONNX Runtime runs what the numpy stacker says, on the members' logits; with ``mirror``
    a frame and its left-right mirror get the same answer, without it they do not."""
    import torch

    from tipd.train.export import Fused, export_graph

    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (6, 1, 128, 128)).astype(np.float32)
    stack = Stack(rng.normal(0, 0.5, (6, 3)), rng.normal(0, 0.5, 3))
    fused = Fused(nets, [], np.full(3, 0.5), np.array([0.5, 0.5]), stack, mirror=mirror).eval()
    diff = export_graph(fused, tmp_path / "g.onnx", 128, x)
    assert diff < 1e-4
    members, voted, votes = _run(tmp_path / "g.onnx", x)
    with torch.no_grad():
        logits = fused.member_logits(torch.from_numpy(x)).numpy()  # (N, M, K)
    np.testing.assert_allclose(voted, stacked(stack, logits.transpose(1, 0, 2)), atol=1e-5)
    np.testing.assert_allclose(members, 1 / (1 + np.exp(-logits)), atol=1e-5)
    assert set(np.unique(votes)) <= {0.0, 0.5, 1.0}
    _, voted_mirrored, _ = _run(tmp_path / "g.onnx", np.ascontiguousarray(x[..., ::-1]))
    if mirror:
        np.testing.assert_allclose(voted_mirrored, voted, atol=1e-5)
    else:
        assert np.abs(voted_mirrored - voted).max() > 1e-3

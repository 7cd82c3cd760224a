"""The stacked vote (tipd.train.stack) and the fused graph that computes it, mirrored or not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tipd.train.metrics import auroc, mean_auroc
from tipd.train.stack import CAP, Stack, feature_scale, features, fit_stack, stacked


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


def test_the_stacked_vote_weighs_hidden_features_on_any_scale() -> None:
    """A label that shows only in a hidden feature (of a scale far from 1): the stack that
    reads the hidden features finds it, takes them as they come (the standardisation is
    folded into its weights), and refuses hidden features of the wrong width."""
    rng = np.random.default_rng(3)
    n = 1600
    truth = (rng.random((n, 2)) < 0.5).astype(float)
    logits = rng.normal(0, 1, (2, n, 2))
    hidden = rng.normal(0, 1, (n, 5)) * 1e3 + 5e3
    hidden[:, 2] += 2e3 * truth[:, 0]
    plain = fit_stack(truth[:1000], logits[:, :1000])
    deep = fit_stack(truth[:1000], logits[:, :1000], hidden=hidden[:1000])
    assert plain.n_hidden == 0 and deep.n_hidden == 5 and deep.coef.shape == (4 + 5, 2)
    with_hidden = stacked(deep, logits[:, 1000:], hidden[1000:])
    assert auroc(truth[1000:, 0], stacked(plain, logits[:, 1000:])[:, 0]) < 0.6
    assert auroc(truth[1000:, 0], with_hidden[:, 0]) > 0.9
    for wrong in (None, hidden[1000:, :4]):
        with pytest.raises(ValueError, match="reads 5 hidden features"):
            stacked(deep, logits[:, 1000:], wrong)


def test_a_hidden_feature_that_barely_moves_gets_no_weight_that_amplifies_rounding() -> None:
    """A unit that barely fires (spread 1e-5 around 5, with a trace of the label in it) next
    to ordinary ones: divided by its own spread its weight would be ~1e5, and float32 rounding
    of it (ONNX Runtime against torch) would move the vote by ~0.01. It is standardised by at
    least a hundredth of its size, so rounding moves the vote by less than 1e-5."""
    rng = np.random.default_rng(5)
    n = 2000
    truth = (rng.random((n, 1)) < 0.5).astype(float)
    logits = rng.normal(0, 1, (1, n, 1)) + 1.5 * truth[None]
    hidden = rng.normal(0, 1, (n, 4))
    hidden[:, 0] += truth[:, 0]
    hidden[:, 3] = 5 + 1e-5 * (rng.normal(0, 1, n) + 2 * truth[:, 0])
    stack = fit_stack(truth, logits, hidden=hidden)
    assert np.abs(stack.coef).max() < 1e3
    rounded = hidden.astype(np.float32).astype(np.float64)
    assert np.abs(stacked(stack, logits, rounded) - stacked(stack, logits, hidden)).max() < 1e-5
    # features that move on the scale of their size keep their own spread, whatever it is;
    # a feature that is always 0 is taken as it is
    h = np.array([[0.0, 3e3, 5.0, 0.0], [0.0, -3e3, 5.0, 0.0], [1e-4, 3e3, 5.0, 0.0]])
    sd = h.std(axis=0)
    np.testing.assert_allclose(feature_scale(h), [sd[0], sd[1], 0.05, 1.0])


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
    out: list[np.ndarray] = session.run(["members", "voted", "votes", "features"], {"x": x})
    return out


@pytest.mark.parametrize(("mirror", "hidden"), [(False, False), (True, False), (True, True)])
def test_the_fused_graph_computes_the_stacked_vote(
    nets: list[Any], tmp_path: Path, mirror: bool, hidden: bool
) -> None:
    """ONNX Runtime runs what the numpy stacker says, on the members' logits (and, with
    ``hidden``, the features their last layers read); with ``mirror`` a frame and its
    left-right mirror get the same answer, without it they do not."""
    import torch

    from tipd.train.export import Fused, export_graph

    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (6, 1, 128, 128)).astype(np.float32)
    n_hidden = 2 * 2 * 16 * 16 if hidden else 0  # two nets, 2 × 16 × 16 features each
    coef = rng.normal(0, 0.5, (6 + n_hidden, 3))
    coef[6:] *= 0.05  # many small weights: the vote stays away from 0 and 1
    stack = Stack(coef, rng.normal(0, 0.5, 3), n_hidden)
    fused = Fused(nets, [], np.full(3, 0.5), np.array([0.5, 0.5]), stack, mirror=mirror).eval()
    diff = export_graph(fused, tmp_path / "g.onnx", 128, x)
    assert diff < 1e-4
    members, voted, votes, features = _run(tmp_path / "g.onnx", x)
    with torch.no_grad():
        logits, h = (v.numpy() for v in fused.member_views(torch.from_numpy(x)))  # (N, M, K)
        if not mirror:  # one view: the logits are the nets' own
            own = np.stack([net(torch.from_numpy(x)).numpy() for net in nets], axis=1)
            np.testing.assert_allclose(logits, own, atol=1e-6)
    # the graph's features: what the members' last layers read (both views' mean, mirrored)
    np.testing.assert_allclose(features, h, atol=1e-4)
    want = stacked(stack, logits.transpose(1, 0, 2), h if hidden else None)
    np.testing.assert_allclose(voted, want, atol=1e-5)
    np.testing.assert_allclose(members, 1 / (1 + np.exp(-logits)), atol=1e-5)
    assert set(np.unique(votes)) <= {0.0, 0.5, 1.0}
    _, voted_mirrored, *_ = _run(tmp_path / "g.onnx", np.ascontiguousarray(x[..., ::-1]))
    if mirror:
        np.testing.assert_allclose(voted_mirrored, voted, atol=1e-5)
    else:
        assert np.abs(voted_mirrored - voted).max() > 1e-3


@pytest.mark.parametrize("family", ["squeeze", "vgg_bn", "vgg", "rw"])
def test_every_family_is_its_last_layer_reading_its_hidden_features(family: str) -> None:
    torch = pytest.importorskip("torch")
    from tipd.train.nets import build, split_head

    torch.manual_seed(0)
    net = build(family, 5, 0.0625).eval()
    body, last = split_head(net)
    x = torch.randn(3, 1, 128, 128)
    with torch.no_grad():
        hidden = body(x)
        assert hidden.shape == (3, last.in_features)
        assert torch.equal(last(hidden), net(x))
    with pytest.raises(TypeError, match="no hidden features known for Conv2d"):
        split_head(torch.nn.Conv2d(1, 1, 3))

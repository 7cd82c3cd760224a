"""Vote weights chosen on validation frames (tipd.train.vote) and the fused graph that uses them."""

from __future__ import annotations

import numpy as np
import pytest

from tipd.train.metrics import mean_auroc
from tipd.train.vote import vote_weights


def _noisy(truth: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Confidences that rank the truth with Gaussian noise of ``noise`` (0 is perfect)."""
    return 1 / (1 + np.exp(-(4 * (truth - 0.5) + noise * rng.standard_normal(truth.shape))))


def test_a_much_better_member_outweighs_the_others() -> None:
    rng = np.random.default_rng(0)
    truth = (rng.random((600, 3)) < 0.3).astype(float)
    members = np.stack([_noisy(truth, 1.0, rng), _noisy(truth, 6.0, rng), _noisy(truth, 6.0, rng)])
    w = vote_weights(truth, members)
    assert w.shape == (3,) and np.isclose(w.sum(), 1) and (w >= 0).all()
    assert w[0] > 0.5
    assert mean_auroc(truth, np.tensordot(w, members, axes=1)) >= mean_auroc(truth, members[0])
    equal = mean_auroc(truth, members.mean(axis=0))
    assert equal < mean_auroc(truth, members[0])  # the case weights are for


def test_equally_good_independent_members_share_the_vote() -> None:
    rng = np.random.default_rng(1)
    truth = (rng.random((800, 4)) < 0.4).astype(float)
    members = np.stack([_noisy(truth, 3.0, rng) for _ in range(3)])
    w = vote_weights(truth, members)
    assert (w > 0.15).all()  # averaging independent errors helps: all three are picked
    best = max(mean_auroc(truth, p) for p in members)
    assert mean_auroc(truth, np.tensordot(w, members, axes=1)) > best


def test_nothing_to_choose_by_gives_equal_weights() -> None:
    truth = np.zeros((50, 2))  # no positives: AUROC undefined everywhere
    members = np.random.default_rng(2).random((3, 50, 2))
    np.testing.assert_allclose(vote_weights(truth, members), [1 / 3] * 3)


def test_the_fused_graph_refuses_weights_that_are_not_a_share() -> None:
    torch = pytest.importorskip("torch")
    from tipd.train.export import Fused

    nets = [torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)]
    with pytest.raises(ValueError, match="summing to 1"):
        Fused(nets, [], np.full(2, 0.5), np.array([0.7, 0.7]))
    with pytest.raises(ValueError, match="summing to 1"):
        Fused(nets, [], np.full(2, 0.5), np.array([1.0]))
    fused = Fused(nets, [], np.full(2, 0.5), np.array([0.25, 0.75])).eval()
    x = torch.randn(5, 2)
    member, voted, votes, _ = fused(x)
    want = 0.25 * member[:, 0] + 0.75 * member[:, 1]
    assert torch.allclose(voted, want) and set(votes.unique().tolist()) <= {0.0, 0.25, 0.75, 1.0}

"""How much each ensemble member's confidence counts in the soft vote.

The paper's ensembles vote with equal weight. When one member is clearly better than the
others, an equal vote can fall below that member alone (it did on Cu(111) and H:Si(100): 0.006
and 0.011 mean AUROC below the best single net). Weights are chosen here on the validation
frames by ensemble selection with replacement (Caruana et al., ICML 2004): start from the best
member, add again and again whichever member raises the validation mean AUROC the most, and stop
when none does. The weights are the pick counts, so by construction the weighted vote is at least
as good as the best member on the validation frames. Pure numpy.

Where the voted confidence is the stacked vote (:mod:`tipd.train.stack`, ``tipd train``'s
default), the weights still choose the members (one with weight 0 is left out) and weigh them
in the share of votes at the thresholds.
"""

from __future__ import annotations

import numpy as np

from tipd.train.metrics import mean_auroc


def vote_weights(truth: np.ndarray, member_probs: np.ndarray, rounds: int = 12) -> np.ndarray:
    """Weights ``(M,)`` (non-negative, summing to 1) of the members' confidences.

    ``truth``: ``(N, K)`` 0/1 labels of the validation frames; ``member_probs``: ``(M, N, K)``
    each member's sigmoid confidences on them. At most ``rounds`` picks. Equal weights when no
    column of ``truth`` has both classes (nothing to choose by).
    """
    m = member_probs.shape[0]
    scores = [mean_auroc(truth, p) for p in member_probs]
    if not np.isfinite(scores).any():
        return np.full(m, 1.0 / m)
    counts = np.zeros(m)
    counts[int(np.nanargmax(scores))] = 1
    best = float(np.nanmax(scores))
    for _ in range(rounds - 1):
        trials = [
            mean_auroc(truth, np.tensordot(counts + np.eye(m)[j], member_probs, axes=1))
            for j in range(m)
        ]
        j = int(np.nanargmax(trials))
        if not trials[j] > best:
            break
        counts[j] += 1
        best = float(trials[j])
    out: np.ndarray = counts / counts.sum()
    return out

"""The stacked vote: one logistic regression per label over every member's confidence in every
label (stacked generalisation, Wolpert 1992).

The paper's ensembles vote with equal weight, and :mod:`tipd.train.vote` weighs the members;
either way a label's vote hears only the members' confidences in that label. Each member is a
multi-label net trained with class weights, so its confidences in different labels are on
different scales, and the arg-max over labels (Table I's balanced accuracy and precision) picks
whichever label's scale runs high. The stacker learns, on frames the members were not chosen
on, how much each member's confidence in each label says about each label: confidences
become comparable, and one label can speak for another (a confident double tip lowers the
sharp-tip label). On the shipped Cu(111) members, held-out frames (seed 3): balanced accuracy
0.881 → 0.910, macro precision 0.891 → 0.911, mean AUROC 0.966 → 0.970.

The features are the members' logits (the nets' outputs before the sigmoid), clipped to
±:data:`CAP`, and (the default) the hidden features each member's last layer
reads (:func:`tipd.train.nets.split_head`: 64 a net at width 0.25). A net's logits are one
linear read-out of those features, trained with the net; the stacker fits another on frames
the nets never saw, over all three nets' features at once. On the shipped Cu(111) nets
(held-out seed 3): mean AUROC 0.971 → 0.975, good/bad 0.979 → 0.981. The
regression is L2-penalised (``C``) and fitted with scikit-learn. The fused
graph computes ``sigmoid(features @ coef + intercept)`` (:class:`tipd.train.export.Fused`);
:func:`stacked` is the same in numpy. Logits, not ``logit(sigmoid(·))``: near 0 and 1 a
confidence has lost the digits its logit needs (ONNX Runtime and torch, 1e-6 apart in
confidence, were 3e-4 apart in the stacked vote).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: inverse L2 penalty of the regressions: 0.03, 0.1 and 0.3 scored alike on Cu, H:Si, Au and
#: generic (held-out mean AUROC within 0.0003)
STACK_C = 0.1
#: logits are clipped to ±CAP (confidences 1e-6 and 1 − 1e-6), here and in the graph
CAP = 13.8
#: fewest labelled frames of a lab's own (``tipd train --data``: its validation split) that the
#: stacked vote is fitted on; with fewer, the weighted mean votes. 6 labels × 3 members is 18
#: weights a label, and a folder of a few hundred scans leaves a few dozen of each class there.
MIN_FOLDER_FRAMES = 500
#: fewest such frames for the stack to read the members' hidden features as well as their
#: logits: three width-0.25 nets give 192 of them, some 200 weights a label; with fewer frames
#: it reads the logits only
MIN_HIDDEN_FRAMES = 3000


@dataclass(frozen=True)
class Stack:
    """``coef`` ``(M·K + H, K)`` and ``intercept`` ``(K,)`` of the stacked vote over ``M``
    members' logits in ``K`` labels (feature ``m·K + k``: member ``m``, label ``k``) and, when
    ``n_hidden`` ``H`` > 0, the members' ``H`` hidden features after them (see
    :func:`features`)."""

    coef: np.ndarray
    intercept: np.ndarray
    n_hidden: int = 0


def features(member_logits: np.ndarray, hidden: np.ndarray | None = None) -> np.ndarray:
    """The stacker's input ``(N, M·K [+ H])`` from member logits ``(M, N, K)``, clipped to
    ±:data:`CAP`, and optionally the members' hidden features ``(N, H)`` (member after
    member: what each net's last layer reads; see :func:`tipd.train.nets.split_head`)."""
    m, n, k = member_logits.shape
    z = np.clip(np.asarray(member_logits, dtype=np.float64), -CAP, CAP)
    out: np.ndarray = z.transpose(1, 0, 2).reshape(n, m * k)
    if hidden is not None:
        out = np.concatenate([out, np.asarray(hidden, dtype=np.float64)], axis=1)
    return out


#: a hidden feature is standardised by its spread, but by no less than this fraction of its
#: root mean square (see :func:`feature_scale`)
SPREAD_FLOOR = 0.01


def feature_scale(hidden: np.ndarray) -> np.ndarray:
    """What each hidden feature is divided by for the fit, from the features ``(N, H)``: its
    spread (standard deviation over the frames), but at least :data:`SPREAD_FLOOR` × its root
    mean square (1 for a feature that is always 0).

    The scaling is folded into the weights, so a feature divided by its own spread gets a
    weight of about 1/spread, and the rounding of the feature (float32 in ONNX Runtime and
    torch, less on a GPU in TF32) is proportional to its size. A feature that sits at an
    offset and barely moves (spread ≪ size) would turn that rounding into visible changes
    of the vote: a barely trained net's gave weights of 7,000 and moved the vote by 1e-4
    between ONNX Runtime and torch. The floor treats its movement as the small thing it is,
    and the penalty keeps its weight in proportion. For a feature that moves on the scale
    of its size (most units, and ones that are 0 on most frames) it changes nothing."""
    h = np.asarray(hidden, dtype=np.float64)
    sd = h.std(axis=0)
    rms = np.sqrt((h**2).mean(axis=0))
    out: np.ndarray = np.where(rms > 0, np.maximum(sd, SPREAD_FLOOR * rms), 1.0)
    return out


def fit_stack(
    truth: np.ndarray,
    member_logits: np.ndarray,
    c: float = STACK_C,
    hidden: np.ndarray | None = None,
) -> Stack:
    """The stacked vote fitted to ``truth`` ``(N, K)`` (0/1) from ``member_logits``
    ``(M, N, K)`` and, if given, the members' ``hidden`` features ``(N, H)``. The hidden
    features are standardised for the fit (so that one penalty suits features of any scale)
    and the scaling is folded into ``coef`` and ``intercept``: the stack takes them as they
    come. A label that is always or never on gets no weights and the intercept of its
    frequency (clipped to [0.001, 0.999]): there is nothing to learn from."""
    from sklearn.linear_model import LogisticRegression

    x = features(member_logits, hidden)
    n_logits = x.shape[1] - (0 if hidden is None else hidden.shape[1])
    centre, scale = np.zeros(x.shape[1]), np.ones(x.shape[1])
    if hidden is not None:
        h = x[:, n_logits:]
        centre[n_logits:] = h.mean(axis=0)
        scale[n_logits:] = feature_scale(h)
    x = (x - centre) / scale
    k = truth.shape[1]
    coef = np.zeros((x.shape[1], k))
    intercept = np.zeros(k)
    for j in range(k):
        y = truth[:, j].astype(int)
        if y.min() == y.max():
            f = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
            intercept[j] = np.log(f / (1 - f))
            continue
        # Newton steps on a few hundred features: the exact optimum in ~10 iterations, where
        # L-BFGS took 30 s for six labels and stopped short of it
        reg = LogisticRegression(C=c, solver="newton-cholesky", max_iter=100).fit(x, y)
        coef[:, j] = reg.coef_[0] / scale
        intercept[j] = reg.intercept_[0] - float((coef[:, j] * centre).sum())
    return Stack(coef, intercept, x.shape[1] - n_logits)


def stacked(
    stack: Stack, member_logits: np.ndarray, hidden: np.ndarray | None = None
) -> np.ndarray:
    """The stacked vote ``(N, K)`` in [0, 1] of member logits ``(M, N, K)`` and, for a stack
    with ``n_hidden`` > 0, the members' ``hidden`` features ``(N, H)``."""
    if (hidden is None) != (stack.n_hidden == 0) or (
        hidden is not None and hidden.shape[1] != stack.n_hidden
    ):
        got = 0 if hidden is None else hidden.shape[1]
        raise ValueError(f"the stack reads {stack.n_hidden} hidden features, got {got}")
    z = features(member_logits, hidden) @ stack.coef + stack.intercept
    out: np.ndarray = 1 / (1 + np.exp(-z))
    return out

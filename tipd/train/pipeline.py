"""``tipd train``: one surface from data to a shipped, evaluated ensemble.

1. Data: synthetic frames (train, validation and held-out test drawn with three different
   seeds, so no test frame was ever seen) or a folder of real labelled scans (80:20 train/test
   plus a held-out tenth, all seeded).
2. Candidates of the paper's families (SqueezeNet-like, VGG-like with and without batch norm)
   with the paper's optimisers; the best three by validation weighted accuracy form the
   ensemble. H:Si(100) also gets the separate binary tip-change net.
3. Baselines for Table I: Rashidi–Wolkow CNN, random forest, weighted random guessing.
4. The vote: member weights chosen on the validation frames (:mod:`tipd.train.vote`), the
   stacked vote fitted on a fourth set of frames (:mod:`tipd.train.stack`), every net also
   seeing the frame mirrored, and per-label thresholds chosen for precision on the validation
   frames (:mod:`tipd.train.fuse`).
5. Export (fused graph + members + manifest, ONNX checked against torch) and the report.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tipd.errors import UserError
from tipd.models import Manifest, Member, ModelError, load_manifest
from tipd.synth.generate import GENERATOR
from tipd.taxonomy import taxonomy
from tipd.train import baselines
from tipd.train.data import DEFAULT_CHANNELS, SEED_OFFSETS, Dataset, from_folder, synthetic
from tipd.train.export import write_model
from tipd.train.fit import Fitted, Recipe, device_name, fit, predict, resolve_device
from tipd.train.fuse import (
    DEFAULT_VOTE,
    VoteSettings,
    confidences,
    fuse,
    vote_metrics,
    vote_record,
)
from tipd.train.onnx_weights import load_member
from tipd.train.report import evaluate_all, write_report
from tipd.train.stack import MIN_FOLDER_FRAMES, MIN_HIDDEN_FRAMES
from tipd.train.vote import vote_weights

#: Width multiplier of the CNNs (all but RW). On 2 CPU cores width 0.125 trains at 739 frames/s
#: and 0.25 at 409 (batch 32); in ~250 s the two make equally good nets (Au VGG-BN, validation
#: AUROC 0.948/0.926/0.932 at 0.125, 0.944/0.920/0.943 at 0.25), but the wider net keeps
#: learning where the narrow one has stopped: on a GPU, 55 s each on 36,000 Au frames gave
#: held-out AUROC 0.959 at 0.125, 0.980 at 0.25, 0.978 at 0.5 (NVIDIA H200).
#: Forked members (below) give each CPU net the training time that width needs.
WIDTH = 0.25


def default_batch(device: torch.device, width: float) -> int:
    """Frames per training step: 32 for width 0.25 and up on the CPU (409 frames/s there, 360
    at batch 64; 2 cores), else 64 (width 0.125 on the CPU: 732 at 64, 685 at 32)."""
    return 32 if device.type == "cpu" and width >= 0.25 else 64


#: Candidate members: (name, recipe). As in the paper, Au(111) and Cu(111) ensembles are
#: repeats of the batch-normed VGG, while H:Si(100) also draws on SqueezeNets; SqueezeNet and
#: plain VGG are trained on the metals (and plain VGG on H:Si) for Table I only.
#:
#: Beyond the paper, the three VGG-BN candidates form a chain of *forks*: ``vgg_bn_rmsprop``
#: starts from the trained ``vgg_bn_adam`` and ``vgg_bn_sgd`` from the trained
#: ``vgg_bn_rmsprop``, each going on with its own optimiser (at 0.3 of its usual rate), seed,
#: data order and augmentation. A fork thus gets the training time of the nets before it on top
#: of its own, which a width-0.25 net needs and 2 CPU cores cannot give three nets from scratch.
#: On Au (24,000 frames, held-out AUROC / macro precision): 300 s from scratch 0.959 / 0.882,
#: its 227 s fork 0.963 / 0.896, the fork of that 0.967 / 0.901; two forks of the first net
#: instead of a chain, on 16,000 frames: 0.962 and 0.959.
_VGG_BN = Recipe(family="vgg_bn", width=WIDTH, optimizer="adam", lr=2e-3, seed=2, time_share=1.2)
_FORKS = [
    (
        "vgg_bn_rmsprop",
        replace(
            _VGG_BN, optimizer="rmsprop", lr=3e-4, seed=6, start_from="vgg_bn_adam", time_share=0.9
        ),
    ),
    (
        "vgg_bn_sgd",
        replace(
            _VGG_BN, optimizer="sgd", lr=6e-3, seed=7, start_from="vgg_bn_rmsprop", time_share=0.9
        ),
    ),
]
_SQUEEZE = ("squeeze_adam", Recipe(family="squeeze", width=WIDTH, optimizer="adam", lr=2e-3))
_VGG = ("vgg_adam", Recipe(family="vgg", width=WIDTH, optimizer="adam", lr=1e-3, seed=3))
#: the candidates of Au, Cu and H:Si (which of them join the ensemble: :func:`comparison_only`)
CANDIDATES: list[tuple[str, Recipe]] = [("vgg_bn_adam", _VGG_BN), *_FORKS, _SQUEEZE, _VGG]

#: The surface-agnostic model keeps the recipe it ships with: three VGG-BN nets from scratch at
#: width 0.125 on 12,000 frames. Its randomised surfaces want more passes more than width: the
#: forked width-0.25 recipe on 24,000 frames scored held-out AUROC 0.932, bal. acc. 0.765,
#: good/bad 0.869 against this recipe's 0.947 / 0.807 / 0.908 (members' best validation AUROC
#: 0.929 after 4–5 epochs against 0.941 after 14).
GENERIC_WIDTH = 0.125
GENERIC_N_TRAIN = 12000
_SCRATCH = replace(_VGG_BN, width=GENERIC_WIDTH, time_share=1.0)
GENERIC_CANDIDATES: list[tuple[str, Recipe]] = [
    ("vgg_bn_adam", _SCRATCH),
    ("vgg_bn_rmsprop", replace(_SCRATCH, optimizer="rmsprop", lr=1e-3, seed=6)),
    ("vgg_bn_sgd", replace(_SCRATCH, optimizer="sgd", lr=2e-2, seed=7)),
    _SQUEEZE,
    _VGG,
]


def candidates_for(surface: str) -> list[tuple[str, Recipe]]:
    """The candidate members ``tipd train`` fits for ``surface``."""
    return list(GENERIC_CANDIDATES if surface == "generic" else CANDIDATES)


@dataclass(frozen=True)
class Budget:
    """What ``tipd train`` spends on one surface unless told otherwise."""

    width: float  #: width multiplier of every CNN but RW
    n_train: int  #: synthetic training frames
    member_seconds: float  #: wall-clock cap (s) per candidate, times its ``time_share``
    epochs: int  #: most passes over the training frames per candidate
    patience: int  #: epochs without a better validation score before a candidate stops


def default_budget(surface: str, device: torch.device) -> Budget:
    """The budget ``tipd train`` uses on ``device`` for ``surface``.

    On the CPU it keeps a surface within 20 minutes on 2 cores: H:Si trains four full
    candidates plus the tip-change net, the others three and two short Table I comparisons;
    generic keeps width 0.125 on 12,000 frames (see :data:`GENERIC_CANDIDATES`). On a GPU it is
    the budget the shipped models were trained with: all four surfaces at once, one process
    each, in 7 minutes on an NVIDIA H200 (``scripts/train_all.sh --workers 4``), width 0.25
    everywhere, since there the nets get the passes that width needs.
    """
    hsi = surface == "hsi100"
    if device.type == "cuda":
        return Budget(WIDTH, 36000, 48.0 if hsi else 60.0, epochs=40, patience=6)
    generic = surface == "generic"
    return Budget(
        GENERIC_WIDTH if generic else WIDTH,
        GENERIC_N_TRAIN if generic else 24000,
        160.0 if hsi else 250.0,
        epochs=30,
        patience=5,
    )


#: wall-clock cap (s) of a candidate trained for Table I only (see :func:`comparison_only`)
COMPARISON_SECONDS = 60.0


def short_seconds(cap: float, member_seconds: float) -> float:
    """The wall-clock cap (s) of a Table I comparison or the RW baseline: ``cap``, but never
    more than half an ensemble member's (a GPU run with short members stays short)."""
    return min(cap, member_seconds / 2)


def comparison_only(surface: str, recipe: Recipe) -> bool:
    """True when a candidate is trained for Table I but never joins the ensemble, so gets a
    short budget: plain VGG everywhere (it never came near the others), SqueezeNet on Au and
    Cu, whose paper ensembles are repeats of the batch-normed VGG."""
    return recipe.family == "vgg" or (surface != "hsi100" and recipe.family != "vgg_bn")


RW = ("rw", Recipe(family="rw", width=1.0, optimizer="adam", lr=1e-3, seed=4))
RW_SECONDS = 60.0  #: the Rashidi–Wolkow baseline plateaus within a minute
TIP_CHANGE_NET = (
    "tip_change_net",
    Recipe(family="vgg_bn", width=WIDTH, optimizer="adam", lr=2e-3, seed=5),
)


@dataclass
class TrainConfig:
    """Everything ``tipd train`` needs; times in seconds."""

    surface: str
    out: Path
    reports: Path = Path("reports")
    n_train: int | None = None  #: None: :func:`default_budget`'s, as the four below
    n_val: int = 1500
    n_test: int = 2000
    seed: int = 0
    size: int = 128
    member_seconds: float | None = None
    epochs: int | None = None
    trees: int = 5000
    data: Path | None = None
    workers: int = 2
    candidates: list[tuple[str, Recipe]] | None = None  #: default: candidates_for(surface)
    channels: tuple[str, ...] = DEFAULT_CHANNELS  #: model input channels
    device: str = "auto"  #: torch device: auto (GPU when present), cpu, cuda, cuda:N
    patience: int | None = None  #: epochs without a better validation score before a net stops
    width: float | None = None  #: width of every CNN but RW
    #: a trained model folder whose best-weighted member the chain roots start from
    init_from: Path | None = None
    #: synthetic frames (a fourth seed) the stacked vote is fitted on; a folder's validation
    #: frames serve instead
    n_stack: int = 6000
    vote: VoteSettings = DEFAULT_VOTE
    #: training-seed frames the familiarity statistics are fitted on (``tipd familiarity``;
    #: synthetic data only; 0: none, every frame counts as familiar)
    n_familiarity: int = 3000


def _split_folder(ds: Dataset, seed: int) -> tuple[Dataset, Dataset, Dataset]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ds))
    n_hold = max(1, len(ds) // 10)
    hold, rest = order[:n_hold], order[n_hold:]
    n_val = max(1, len(rest) // 5)
    return ds.subset(rest[n_val:]), ds.subset(rest[:n_val]), ds.subset(hold)


#: learning rate of a net that goes on from trained weights, as a fraction of its recipe's
#: (the forks' rates above are 0.3 of their optimisers' usual ones)
GO_ON_RATE = 0.3


class InitFromError(UserError, ValueError):
    """``--init-from`` names a model that training cannot go on from."""


@dataclass(frozen=True)
class InitPlan:
    """What ``--init-from`` does: which member of which model the ``roots`` go on from."""

    folder: Path
    model: str
    member: Member
    roots: list[str]  #: candidates that start from ``member`` instead of from scratch
    #: the model's net for the extra labels (the H:Si tip-change net), which the new one goes
    #: on from; None when it has none of the recipe's family and width
    extra: Member | None = None
    #: what made the model gone on from (its manifest's ``training``, less the vote's weights)
    parent: dict[str, Any] = field(default_factory=dict)


def plan_init(
    folder: Path,
    surface: str,
    candidates: list[tuple[str, Recipe]],
    labels: list[str],
    extra: tuple[list[str], Recipe] | None = None,
) -> InitPlan:
    """The member of the trained model in ``folder`` with the largest vote weight among those
    with ``labels``, and the candidates of ``surface`` that go on from it: those of its family
    and width that are not forks of another candidate nor Table I comparisons. ``extra``: the
    extra labels and the recipe of their net; the model's net for those labels, when of the
    recipe's family and width, is gone on from too. Raises :class:`InitFromError` when there
    are no roots or the folder holds no sound model."""
    try:
        manifest = load_manifest(folder, verify=True)
    except ModelError as exc:
        raise InitFromError(f"--init-from {folder}: {exc}") from exc
    fits = [m for m in manifest.members if m.labels == labels and m.vote_weight is not None]
    if not fits:
        raise InitFromError(f"--init-from {folder}: no voting member with labels {labels}")
    best = max(fits, key=lambda m: m.vote_weight or 0.0)
    roots = [
        n
        for n, r in candidates
        if r.start_from is None
        and (r.family, r.width) == (best.family, best.width)
        and not comparison_only(surface, r)
    ]
    if not roots:
        raise InitFromError(
            f"--init-from {folder}: its member {best.name} is {best.family} at width "
            f"{best.width}, and no candidate trained from scratch is (--width sets the width)"
        )
    extra_member = None
    if extra is not None:
        extra_labels, recipe = extra
        extra_member = next(
            (
                m
                for m in manifest.members
                if m.labels == extra_labels and (m.family, m.width) == (recipe.family, recipe.width)
            ),
            None,
        )
    parent = dict(manifest.training)
    if isinstance(parent.get("vote"), dict):
        parent["vote"] = {k: v for k, v in parent["vote"].items() if k not in ("coef", "intercept")}
    return InitPlan(folder, manifest.name, best, roots, extra_member, parent)


def candidate_recipes(
    cfg: TrainConfig, device: torch.device, budget: Budget
) -> tuple[list[tuple[str, Recipe]], Recipe]:
    """The candidates ``tipd train`` fits and the recipe of the H:Si tip-change net, with
    widths and batches set (explicit ``cfg.candidates`` keep theirs unless ``cfg.width``)."""
    candidate_list = cfg.candidates if cfg.candidates is not None else candidates_for(cfg.surface)
    tip_change_recipe = TIP_CHANGE_NET[1]
    if cfg.candidates is None:
        batch = default_batch(device, budget.width)
        candidate_list = [
            (n, replace(r, width=budget.width, batch=batch)) for n, r in candidate_list
        ]
        tip_change_recipe = replace(tip_change_recipe, width=budget.width, batch=batch)
    elif cfg.width is not None:
        candidate_list = [(n, replace(r, width=cfg.width)) for n, r in candidate_list]
        tip_change_recipe = replace(tip_change_recipe, width=cfg.width)
    return candidate_list, tip_change_recipe


#: the :class:`TrainConfig` fields that set the budget (``tipd train``'s budget flags)
BUDGET_FLAGS = ("width", "n_train", "member_seconds", "epochs", "patience")


def flags_of(cfg: TrainConfig) -> dict[str, float]:
    """The budget flags ``cfg`` sets itself (``training.flags`` in the manifest)."""
    return {k: getattr(cfg, k) for k in BUDGET_FLAGS if getattr(cfg, k) is not None}


def init_width(folder: Path) -> float | None:
    """The width of the voting member ``--init-from`` goes on from (the largest vote weight),
    or None where the folder holds no readable model (:func:`plan_init` then says why)."""
    try:
        manifest = load_manifest(folder, verify=False)
    except ModelError:
        return None
    voting = [m for m in manifest.members if m.vote_weight is not None]
    return max(voting, key=lambda m: m.vote_weight or 0.0).width if voting else None


def budget_for(cfg: TrainConfig, device: torch.device) -> Budget:
    """:func:`default_budget` with whatever ``cfg`` sets itself. With ``--init-from`` and no
    ``--width``, the nets take the width of the member they go on from (the shipped generic
    model's nets are 0.25 wide, where generic trained from scratch on the CPU is 0.125)."""
    b = default_budget(cfg.surface, device)
    inherited = init_width(cfg.init_from) if cfg.init_from is not None else None
    return Budget(
        cfg.width or inherited or b.width,
        cfg.n_train or b.n_train,
        cfg.member_seconds or b.member_seconds,
        cfg.epochs or b.epochs,
        cfg.patience or b.patience,
    )


def load_data(
    cfg: TrainConfig, n_train: int, log: Callable[[str], None]
) -> tuple[Dataset, Dataset, Dataset, Dataset]:
    """``(train, validation, test, stacking)``; ``n_train``: synthetic training frames. A
    folder's validation frames are its stacking frames too."""
    t0 = time.monotonic()
    if cfg.data is not None:
        tax = taxonomy(cfg.surface)
        folder = from_folder(cfg.data, tax.labels, cfg.size, cfg.channels)
        train, val, test = _split_folder(folder, cfg.seed)
        stack = val
    else:
        base = 1000 * cfg.seed
        sizes = [(n_train, "train"), (cfg.n_val, "validation"), (cfg.n_test, "test")]
        if cfg.vote.stacked:
            sizes.append((cfg.n_stack, "stack"))
        sets = [
            synthetic(cfg.surface, n, base + SEED_OFFSETS[s], cfg.size, cfg.workers, cfg.channels)
            for n, s in sizes
        ]
        train, val, test = sets[:3]
        stack = sets[3] if cfg.vote.stacked else val
    log(
        f"data: {len(train)} train, {len(val)} validation, {len(test)} test, "
        f"{len(stack)} stacking frames ({time.monotonic() - t0:.0f} s)"
    )
    return train, val, test, stack


def kept_members(weights: np.ndarray, stacked: bool) -> np.ndarray:
    """Which of the chosen members go into the model, as a mask of ``weights`` ``(M,)``.

    Under the weighted mean a member of weight 0 changes no vote and would only cost time on
    every frame, so it is left out. The stacked vote weighs every member's features itself (a
    third net adds ~0.001 AUROC to the best two on the shipped Cu(111) and generic nets), so it
    keeps them all."""
    out: np.ndarray = np.ones(len(weights), dtype=bool) if stacked else weights > 0
    return out


def same_net(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """True when two nets hold the same weights and statistics, tensor for tensor."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]) for k in sa
    )


def distinct_nets(ranked: list[Fitted]) -> tuple[list[Fitted], list[str]]:
    """``ranked`` less each candidate whose net is the same as one ranked above it, and the
    names of those left out. With ``--init-from``, candidates that go on from the same net and
    keep it (no epoch beat their start) are that net: three of them would be three copies of
    one net voting, at three times the cost."""
    kept: list[Fitted] = []
    same: list[str] = []
    for f in ranked:
        if any(same_net(f.model, k.model) for k in kept):
            same.append(f.name)
        else:
            kept.append(f)
    return kept, same


def init_nets(
    plan: InitPlan | None,
    x: np.ndarray,
    n_classes: int,
    n_extra: int,
    log: Callable[[str], None],
) -> tuple[torch.nn.Module | None, torch.nn.Module | None]:
    """The nets ``--init-from`` goes on from (the chain's first, and the tip-change net where
    the plan has one), their batch-norm statistics recalibrated on ``x[:256]``; (None, None)
    without a plan."""
    if plan is None:
        return None, None
    m = plan.member
    calibration = x[:256].astype(np.float32)
    net = load_member(plan.folder / m.file, m.family, n_classes, m.width, calibration)
    log(f"going on from {plan.model}/{m.name}: {', '.join(plan.roots)}")
    extra_net = None
    if plan.extra is not None:
        e = plan.extra
        extra_net = load_member(plan.folder / e.file, e.family, n_extra, e.width, calibration)
        log(f"going on from {plan.model}/{e.name}: {TIP_CHANGE_NET[0]}")
    return net, extra_net


def vote_for_data(
    vote: VoteSettings, real: bool, n_stack: int, log: Callable[[str], None]
) -> VoteSettings:
    """The vote asked for, or a simpler one where a lab's folder (``real``) has too few
    validation scans (``n_stack``) to fit it: the weighted mean below
    :data:`MIN_FOLDER_FRAMES`, a stack on logits only below :data:`MIN_HIDDEN_FRAMES`."""
    if vote.stacked and real and n_stack < MIN_FOLDER_FRAMES:
        log(
            f"vote: the weighted mean, not stacked: {n_stack} validation scans, "
            f"fewer than {MIN_FOLDER_FRAMES} to fit it on"
        )
        return replace(vote, stacked=False)
    if vote.stacked and vote.hidden and real and n_stack < MIN_HIDDEN_FRAMES:
        log(
            f"vote: stacked on the members' logits only: {n_stack} validation scans, "
            f"fewer than {MIN_HIDDEN_FRAMES} to weigh their hidden features on"
        )
        return replace(vote, hidden=False)
    return vote


def table_one_scores(
    candidates: list[Fitted],
    rw: Fitted,
    forest: Any,
    train_y: np.ndarray,
    test_x: np.ndarray,
    seed: int,
) -> dict[str, np.ndarray]:
    """Table I's comparison columns on ``test_x``: the best candidate of each CNN family, RW,
    the random forest and the weighted random guess; each (N, K) confidences."""
    scores: dict[str, np.ndarray] = {}
    for label, family in (
        ("SqueezeNet", "squeeze"),
        ("VGG (batch norm)", "vgg_bn"),
        ("VGG", "vgg"),
    ):
        best = max(
            (c for c in candidates if c.recipe.family == family),
            key=lambda f: (f.val_balanced_accuracy, f.val_mean_auroc),
            default=None,
        )
        if best is not None:
            scores[label] = predict(best.model, test_x)
    scores["RW"] = predict(rw.model, test_x)
    scores["RFC"] = forest.predict(test_x)
    scores["Random"] = baselines.weighted_random(train_y, len(test_x), seed)
    return scores


def train_surface(cfg: TrainConfig, log: Callable[[str], None] = print) -> Manifest:
    """Train, select, export and report one surface's ensemble; returns its manifest."""
    torch.set_num_threads(max(1, cfg.workers))
    device = resolve_device(cfg.device)
    budget = budget_for(cfg, device)
    tax = taxonomy(cfg.surface)
    classes, extra = list(tax.classes), list(tax.extra)
    candidate_list, tip_change_recipe = candidate_recipes(cfg, device, budget)
    plan = None  # checked before the data is made, not after
    if cfg.init_from is not None:
        plan = plan_init(
            cfg.init_from,
            cfg.surface,
            candidate_list,
            classes,
            (extra, tip_change_recipe) if extra else None,
        )
    started = time.monotonic()
    # renders in forked processes: before any CUDA work
    train_all, val_all, test_all, stack_all = load_data(cfg, budget.n_train, log)
    card = device_name(device)
    log(f"training on {card}")
    train, val, test = (d.columns(tuple(classes)) for d in (train_all, val_all, test_all))
    rotate = cfg.data is not None
    timings: dict[str, float] = {}

    def member(
        name: str,
        recipe: Recipe,
        tr: Dataset,
        va: Dataset,
        seconds: float = 0,
        init: torch.nn.Module | None = None,
        init_counts: bool = False,
    ) -> Fitted:
        recipe = replace(
            recipe,
            max_seconds=seconds or budget.member_seconds * recipe.time_share,
            epochs=budget.epochs,
            rotate=rotate,
            patience=budget.patience,
        )
        fitted = fit(name, recipe, tr, va, log, device, init, init_counts)
        timings[name] = round(fitted.seconds, 1)
        log(
            f"{name}: val weighted accuracy {fitted.val_balanced_accuracy:.3f}, "
            f"AUROC {fitted.val_mean_auroc:.3f}, {fitted.macs / 1e6:.1f} MMAC, "
            f"{fitted.seconds:.0f} s"
            + (f" (forked from {recipe.start_from})" if recipe.start_from else "")
        )
        return fitted

    init_net, init_extra = init_nets(plan, train.x, len(classes), len(extra), log)
    fitted_by_name: dict[str, Fitted] = {}
    for n, r in candidate_list:
        if r.start_from is not None and r.start_from not in fitted_by_name:
            raise ValueError(
                f"candidate {n!r} forks {r.start_from!r}, which is not trained before it"
            )
        short = comparison_only(cfg.surface, r)
        start: torch.nn.Module | None = None
        if r.start_from is not None:
            start = fitted_by_name[r.start_from].model
        elif plan is not None and n in plan.roots:
            start = init_net
            r = replace(r, lr=r.lr * GO_ON_RATE)
        fitted_by_name[n] = member(
            n,
            r,
            train,
            val,
            short_seconds(COMPARISON_SECONDS, budget.member_seconds) if short else 0,
            start,
            init_counts=plan is not None and n in plan.roots,
        )
    candidates = list(fitted_by_name.values())
    pool = [c for c in candidates if not comparison_only(cfg.surface, c.recipe)] or candidates
    ranked = sorted(pool, key=lambda f: (f.val_balanced_accuracy, f.val_mean_auroc), reverse=True)
    ranked, same = distinct_nets(ranked)
    if same:
        log(f"left out, the same net as one ranked above: {', '.join(same)}")
    members = ranked[:3]
    log(f"ensemble: {', '.join(m.name for m in members)}")
    extras: list[Fitted] = []
    if extra:
        tc = (train_all.columns(tuple(extra)), val_all.columns(tuple(extra)))
        r = tip_change_recipe
        if init_extra is not None:
            r = replace(r, lr=r.lr * GO_ON_RATE)
        extras = [
            member(TIP_CHANGE_NET[0], r, *tc, init=init_extra, init_counts=init_extra is not None)
        ]
    rw = member(RW[0], RW[1], train, val, short_seconds(RW_SECONDS, budget.member_seconds))
    t0 = time.monotonic()
    n_forest = min(len(train), 4000)
    forest = baselines.fit_forest(
        train.x[:n_forest], train.y[:n_forest], trees=cfg.trees, seed=cfg.seed, jobs=cfg.workers
    )
    timings["rfc"] = round(time.monotonic() - t0, 1)
    log(f"random forest: {cfg.trees} trees on {n_forest} frames ({timings['rfc']:.0f} s)")

    weights = vote_weights(val.y, np.stack([predict(m.model, val.x) for m in members]))
    log(
        "vote weights: "
        + ", ".join(f"{m.name} {w:.2f}" for m, w in zip(members, weights, strict=True))
    )
    labels = tuple(classes + extra)
    val_truth = val_all.columns(labels).y
    vote = vote_for_data(cfg.vote, cfg.data is not None, len(stack_all), log)
    keep = kept_members(weights, vote.stacked)
    unweighted = [m.name for m, k in zip(members, keep, strict=True) if not k]
    members = [m for m, k in zip(members, keep, strict=True) if k]
    weights = weights[keep]
    t0 = time.monotonic()
    fused = fuse(
        [m.model for m in members],
        [e.model for e in extras],
        weights,
        stack_all.x,
        stack_all.columns(tuple(classes)).y,
        val_all.x,
        val_truth,
        vote,
        device,
    )
    thresholds = fused.get_buffer("thresholds").numpy()
    timings["vote"] = round(time.monotonic() - t0, 1)
    log(f"vote: {'stacked' if fused.stacked else 'weighted mean'} ({timings['vote']:.0f} s)")

    test_voted, _ = confidences(fused, test_all.x, device)
    scores = {
        "Ensemble": test_voted[:, : len(classes)],
        **table_one_scores(candidates, rw, forest, train.y, test.x, cfg.seed),
    }
    desirable = list(tax.desirable)
    metrics = evaluate_all(test, scores, [classes.index(d) for d in desirable])
    test_truth = test_all.columns(labels).y
    metrics.update(vote_metrics(list(labels), test_truth, test_voted, thresholds, bool(extra)))
    seconds = time.monotonic() - started
    training = {
        "data": train.source if cfg.data is None else str(cfg.data),
        "generator": GENERATOR[cfg.surface] if cfg.data is None else None,
        "validation": val.source,
        "test": test.source,
        "n_train": len(train),
        "n_val": len(val),
        "n_test": len(test),
        "recipe": {c.name: c.recipe.to_dict() for c in candidates},  # as run
        "candidates": {
            c.name: {
                "val_balanced_accuracy": round(c.val_balanced_accuracy, 4),
                "val_mean_auroc": round(c.val_mean_auroc, 4),
                "epochs": c.epochs_run,
                "seconds": round(c.seconds, 1),
            }
            for c in candidates
        },
        "member_seconds_cap": budget.member_seconds,
        "epochs_cap": budget.epochs,
        "left_out_with_vote_weight_0": unweighted,
        "left_out_same_net": same,
        "vote": vote_record(fused, vote.c, stack_all.source, len(stack_all)),
        "init_from": None
        if plan is None
        else {
            "model": plan.model,
            "member": plan.member.name,
            "sha256": plan.member.sha256,
            "candidates": plan.roots,
            "lr_fraction": GO_ON_RATE,
            "extra": None
            if plan.extra is None
            else {"member": plan.extra.name, "sha256": plan.extra.sha256},
            "training": plan.parent,
        },
        # the budget flags given to tipd train; the rest is default_budget's for the device
        "flags": flags_of(cfg),
        "augmentation_rotate": rotate,
        "seconds": round(seconds, 1),
        "timings": timings,
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
        "device": card,
        "patience": budget.patience,
        "torch": torch.__version__,
    }
    manifest = write_model(
        cfg.out,
        cfg.out.name,
        cfg.surface,
        classes,
        extra,
        desirable,
        members,
        extras,
        fused,
        cfg.size,
        training,
        metrics,
        test_all.x[:16].astype(np.float32),
        cfg.channels,
    )
    write_report(cfg.reports, cfg.surface, manifest, test, scores, metrics)
    if cfg.data is None and cfg.n_familiarity > 0:
        from tipd.train.familiar import fit_model

        fit_model(cfg.out, cfg.n_familiarity, max(cfg.n_familiarity // 3, 100), cfg.workers)
        manifest = load_manifest(cfg.out)
    log(f"wrote {cfg.out} and {cfg.reports / (cfg.surface + '.md')} in {seconds:.0f} s")
    return manifest

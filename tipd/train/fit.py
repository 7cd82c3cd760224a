"""Fitting one network: the paper's recipe (sigmoid outputs, binary cross-entropy with class
weights ∝ 1/frequency, decaying learning rate, early stopping on weighted accuracy)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from tipd.train.data import Dataset, augment, class_weights
from tipd.train.metrics import balanced_accuracy, mean_auroc
from tipd.train.nets import build, macs


@dataclass(frozen=True)
class Recipe:
    """How one member is trained."""

    family: str = "squeeze"
    width: float = 0.125
    optimizer: str = "adam"  #: adam, sgd or rmsprop (the paper's three)
    lr: float = 1e-3
    lr_decay: float = 0.05  #: the learning rate falls to this fraction by the end (see fit)
    epochs: int = 8
    batch: int = 64
    patience: int = 3  #: epochs without a better weighted accuracy before stopping
    max_seconds: float = 300.0  #: wall-clock cap for this member
    rotate: bool = False  #: 0–360° rotations (see :func:`tipd.train.data.augment`)
    seed: int = 0
    #: name of the candidate whose trained net this one starts from (a *fork*: same family and
    #: width, its own optimiser, seed, data order and augmentation); None: from scratch
    start_from: str | None = None
    #: this candidate's share of the per-member time, as a multiple of ``--member-seconds``
    time_share: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Fitted:
    """A trained member: the net (eval mode, best epoch), its recipe and validation figures."""

    name: str
    recipe: Recipe
    model: nn.Module
    labels: tuple[str, ...]
    val_balanced_accuracy: float
    val_mean_auroc: float
    epochs_run: int
    seconds: float
    macs: int
    history: list[dict[str, float]] = field(default_factory=list)


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device training runs on: ``auto`` takes the GPU when torch sees one, else the
    CPU; ``cpu``, ``cuda`` or ``cuda:N`` name one (a missing GPU raises :class:`ValueError`)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"training device {name!r}: torch sees no GPU (torch {torch.__version__})")
    return device


def device_name(device: torch.device) -> str:
    """What ran the training, for the manifest: the card's name or ``cpu``."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def predict(model: nn.Module, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Sigmoid confidences ``(N, C)`` of ``model`` on inputs ``x`` ``(N, 1, S, S)``, computed on
    the device the model's parameters are on."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for a in range(0, len(x), batch):
            xb = torch.from_numpy(np.asarray(x[a : a + batch], dtype=np.float32)).to(device)
            xb = xb.contiguous(memory_format=torch.channels_last)
            out.append(torch.sigmoid(model(xb)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def decayed_lr(recipe: Recipe, step_fraction: float, time_fraction: float) -> float:
    """The learning rate at a point of a fit: ``lr · lr_decay^p`` with ``p`` the larger of the
    fraction of steps done (of ``epochs``) and the fraction of ``max_seconds`` spent, so the
    decay ends on time whichever limit comes first, however uneven the epochs (a GPU's first
    epoch, with its kernel search, can take several times the others)."""
    progress = min(1.0, max(step_fraction, time_fraction))
    return float(recipe.lr * recipe.lr_decay**progress)


def _optimizer(recipe: Recipe, params: Any) -> torch.optim.Optimizer:
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=0.9, nesterov=True)
    if recipe.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=recipe.lr)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}; known: adam, sgd, rmsprop")


def fit(
    name: str,
    recipe: Recipe,
    train: Dataset,
    val: Dataset,
    log: Callable[[str], None] = print,
    device: torch.device | None = None,
    init: nn.Module | None = None,
    init_counts: bool = False,
) -> Fitted:
    """Train one member on ``train`` and keep its best epoch by weighted accuracy on ``val``.

    Frames with a ``tip_change`` label get flips and noise only, as in the paper. On a GPU
    (``device``) the frames, labels and augmentation live on the card for the whole fit; the
    returned model is always on the CPU, ready for export. ``init``: a trained net of the
    recipe's family and width to start from (a copy is trained; ``init`` is left as it was).
    ``init_counts``: ``init`` itself is scored on ``val`` as epoch 0 and kept unless an epoch
    beats it, so that going on from a finished model never keeps a worse one.
    """
    device = device or torch.device("cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: pick kernels once
    torch.manual_seed(recipe.seed)
    gen = torch.Generator(device=device).manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    in_channels = train.x.shape[1]
    # channels-last runs these small convolutions ~1.6× faster on CPU (measured, 2 cores)
    model = build(recipe.family, len(train.labels), recipe.width, in_channels)
    if init is not None:
        model.load_state_dict(init.state_dict())  # raises if family, width or classes differ
    model = model.to(device)
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = _optimizer(recipe, model.parameters())
    pos_weight = torch.from_numpy(class_weights(train.y)).to(device)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    tc = train.labels.index("tip_change") if "tip_change" in train.labels else None
    flips_only = train.y[:, tc] > 0.5 if tc is not None else np.zeros(len(train), dtype=bool)
    # on the CPU these are views of the arrays (no copy); on a GPU one upload per fit
    xs = torch.from_numpy(train.x).to(device)
    ys = torch.from_numpy(train.y).to(device)
    keep = torch.from_numpy(flips_only).to(device)
    best: tuple[float, float] = (-1.0, 0.0)
    best_state = copy.deepcopy(model.state_dict())
    if init is not None and init_counts:
        probs = predict(model, val.x)
        best = (balanced_accuracy(val, probs), mean_auroc(val.y, probs))
        log(f"  {name} epoch 0 (its start): val bal.acc {best[0]:.3f}  AUROC {best[1]:.3f}")
    history: list[dict[str, float]] = []
    start = time.monotonic()
    stale = 0
    epoch = 0
    # a set smaller than one batch is one batch (else no step is taken: the net stays as built)
    batch = min(recipe.batch, len(train))
    steps_per_epoch = max(1, len(train) // batch)
    total_steps = recipe.epochs * steps_per_epoch
    step = 0
    for epoch in range(1, recipe.epochs + 1):
        model.train()
        order = rng.permutation(len(train))
        total, seen = torch.zeros((), device=device), 0
        for a in range(0, len(order) - batch + 1, batch):
            lr = decayed_lr(
                recipe, step / total_steps, (time.monotonic() - start) / recipe.max_seconds
            )
            for group in opt.param_groups:
                group["lr"] = lr
            step += 1
            idx = torch.from_numpy(np.sort(order[a : a + batch])).to(device)
            xb = augment(xs[idx].float(), keep[idx], gen, recipe.rotate, channels=train.channels)
            xb = xb.contiguous(memory_format=torch.channels_last)
            opt.zero_grad()
            loss = loss_fn(model(xb), ys[idx])
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)  # summed on the device: no sync per step
            seen += len(idx)
            if time.monotonic() - start > recipe.max_seconds:
                break
        mean_loss = float(total) / max(seen, 1)
        probs = predict(model, val.x)
        bal = balanced_accuracy(val, probs)
        auc = mean_auroc(val.y, probs)
        history.append(
            {
                "epoch": epoch,
                "loss": mean_loss,
                "val_bal_acc": bal,
                "val_auroc": auc,
                "seconds": time.monotonic() - start,
            }
        )
        log(
            f"  {name} epoch {epoch}: loss {mean_loss:.4f}  val bal.acc {bal:.3f}  "
            f"AUROC {auc:.3f}  ({time.monotonic() - start:.0f} s)"
        )
        if (bal, auc) > best:
            best, best_state, stale = (bal, auc), copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
        if stale >= recipe.patience or time.monotonic() - start > recipe.max_seconds:
            break
    model.load_state_dict(best_state)
    model = model.cpu().eval()
    return Fitted(
        name,
        recipe,
        model,
        train.labels,
        best[0],
        best[1],
        epoch,
        time.monotonic() - start,
        macs(model, in_channels=in_channels),
        history,
    )

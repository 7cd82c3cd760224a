"""The paper's network families (Gordon et al. 2019, section II), with width multipliers.

Every net maps a batch ``(N, 1, S, S)`` of preprocessed frames (values in [-1, 1]) to logits
``(N, C)``; sigmoid outputs, no softmax, as in the paper. ``width = 1`` is the paper's width
(SqueezeNet-like: ten 3×3 convolutions, 32 → 1024 filters, strides alternating 1 and 2);
smaller widths divide every layer's channels so that a CPU can train them.
"""

from __future__ import annotations

import torch
from torch import nn

#: SqueezeNet-like filter counts at width 1 (ten 3×3 convolutions, 32 → 1024)
SQUEEZE_FILTERS = (32, 64, 64, 128, 128, 256, 256, 512, 512, 1024)
#: VGG-like blocks at width 1: two 3×3 convolutions each, then 2×2 max-pooling
VGG_FILTERS = (64, 128, 256, 512)


def _ch(n: int, width: float) -> int:
    return max(4, round(n * width))


class SqueezeLike(nn.Module):
    """Ten back-to-back 3×3 convolutions, strides alternating 1 and 2, batch norm and ELU,
    then global average pooling and a linear layer."""

    def __init__(self, n_classes: int, width: float = 1.0, in_channels: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, f in enumerate(SQUEEZE_FILTERS):
            c = _ch(f, width)
            layers += [
                nn.Conv2d(c_in, c, 3, stride=1 + i % 2, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ELU(),
            ]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(c_in, n_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x))
        return out


class VGGLike(nn.Module):
    """VGG-style blocks (two 3×3 convolutions and a 2×2 max-pool each), with or without batch
    norm, after a strided 3×3 stem that halves the input; ReLU; a small dense head."""

    def __init__(
        self, n_classes: int, width: float = 1.0, batch_norm: bool = True, in_channels: int = 1
    ) -> None:
        super().__init__()
        stem = _ch(VGG_FILTERS[0] // 2, width)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, stem, 3, stride=2, padding=1), nn.ReLU()]
        c_in = stem
        for f in VGG_FILTERS:
            c = _ch(f, width)
            for _ in range(2):
                layers.append(nn.Conv2d(c_in, c, 3, padding=1, bias=not batch_norm))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(c))
                layers.append(nn.ReLU())
                c_in = c
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        hidden = _ch(256, width)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(c_in, hidden),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x))
        return out


class RashidiWolkow(nn.Module):
    """The baseline of Rashidi & Wolkow (ACS Nano 12, 5185, 2018) as Gordon et al. ran it: a
    shallow CNN (two 5×5 convolutions with max-pooling, one dense layer, dropout), here on the
    same 128 × 128 input as the others."""

    def __init__(self, n_classes: int, width: float = 1.0, in_channels: int = 1) -> None:
        super().__init__()
        a, b = _ch(32, width), _ch(64, width)
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, a, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(a, b, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(4),
            nn.Flatten(),
            nn.Linear(b * 8 * 8, _ch(128, width)),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(_ch(128, width), n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


FAMILIES = {
    "squeeze": lambda c, w, i: SqueezeLike(c, w, in_channels=i),
    "vgg_bn": lambda c, w, i: VGGLike(c, w, batch_norm=True, in_channels=i),
    "vgg": lambda c, w, i: VGGLike(c, w, batch_norm=False, in_channels=i),
    "rw": lambda c, w, i: RashidiWolkow(c, w, in_channels=i),
}


def build(family: str, n_classes: int, width: float, in_channels: int = 1) -> nn.Module:
    """A fresh net of ``family`` (``squeeze``, ``vgg_bn``, ``vgg``, ``rw``)."""
    try:
        factory = FAMILIES[family]
    except KeyError:
        raise KeyError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}") from None
    net: nn.Module = factory(n_classes, width, in_channels)  # type: ignore[no-untyped-call]
    return net


def macs(model: nn.Module, size: int = 128, in_channels: int = 1) -> int:
    """Multiply-accumulates of one forward pass on a ``size``² frame (convolutions and linear
    layers), counted with forward hooks."""
    total = 0

    def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
            total += int(out.numel() * k)
        elif isinstance(mod, nn.Linear):
            total += int(mod.in_features * mod.out_features)

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    was = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, in_channels, size, size))
    model.train(was)
    for h in handles:
        h.remove()
    return total


def split_head(net: nn.Module) -> tuple[nn.Module, nn.Linear]:
    """``(body, last)`` with ``net(x) == last(body(x))``: ``body`` gives the hidden features
    ``(N, H)`` that the net's last (linear) layer reads, ``last`` is that layer. Works for
    every family here, for any ``nn.Sequential`` ending in ``nn.Linear`` and for a bare
    ``nn.Linear``; ``TypeError`` otherwise. The modules are shared with ``net``, not copied."""
    if isinstance(net, SqueezeLike | VGGLike):
        head = list(net.head)
        body: nn.Module = nn.Sequential(net.features, *head[:-1])
        last = head[-1]
    elif isinstance(net, RashidiWolkow):
        body, last = net.net[:-1], net.net[-1]
    elif isinstance(net, nn.Sequential):
        body, last = net[:-1], net[-1]
    elif isinstance(net, nn.Linear):  # a linear read-out alone: its input is its feature
        body, last = nn.Identity(), net
    else:
        raise TypeError(f"no hidden features known for {type(net).__name__}")
    if not isinstance(last, nn.Linear):
        raise TypeError(f"{type(net).__name__} does not end in a linear layer")
    return body, last

"""A trained member back from its ONNX file into torch, to train on from (``--init-from``).

The ONNX export folds each batch norm into the convolution before it, so its statistics and
scale are gone from the file. :func:`load_member` copies every convolution and dense layer and
rebuilds each batch norm from data: it runs ``calibration`` frames through the net and sets
the norm's running mean and variance to the statistics of what reaches it, its scale to the
matching standard deviation and its shift to that mean plus the folded bias. In eval mode the
net then computes exactly what the ONNX file does; in train mode, on batches like the
calibration frames, nearly so, so that training goes on from where the file left off.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from tipd.train.nets import build


def _layers(path: Path) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[np.ndarray]]:
    """``(convolutions, dense)`` of an ONNX graph in node order: (weight, bias) per Conv,
    and (weight, bias) per Gemm flattened into one list of arrays."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    convs: list[tuple[np.ndarray, np.ndarray]] = []
    dense: list[np.ndarray] = []
    for node in graph.node:
        if node.op_type == "Conv":
            w = init[node.input[1]]
            b = init[node.input[2]] if len(node.input) > 2 else np.zeros(w.shape[0], np.float32)
            convs.append((w, b))
        elif node.op_type == "Gemm":
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            w = init[node.input[1]]
            dense += [w if trans_b else w.T, init[node.input[2]]]
    return convs, dense


def load_member(
    path: Path,
    family: str,
    n_classes: int,
    width: float,
    calibration: np.ndarray,
) -> nn.Module:
    """The ``family`` net (:func:`tipd.train.nets.build`) of ONNX member ``path``, in eval
    mode on the CPU. ``calibration``: frames ``(N, C, S, S)`` like those it will train on
    (a few hundred), from which the batch norms are rebuilt. Raises ``ValueError`` when the
    file's layers do not fit the family and width."""
    net = build(family, n_classes, width, calibration.shape[1])
    convs, dense = _layers(path)
    conv_mods = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    dense_mods = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if len(convs) != len(conv_mods) or len(dense) != 2 * len(dense_mods):
        raise ValueError(
            f"{path}: {len(convs)} convolutions and {len(dense) // 2} dense layers, but a "
            f"{family} net has {len(conv_mods)} and {len(dense_mods)}"
        )
    # each batch norm follows the convolution before it in module order
    norm_after: dict[int, nn.BatchNorm2d] = {}
    last_conv: nn.Conv2d | None = None
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            last_conv = m
        elif isinstance(m, nn.BatchNorm2d) and last_conv is not None:
            norm_after[id(last_conv)] = m
    folded_bias: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        for mod, (w, b) in zip(conv_mods, convs, strict=True):
            if tuple(mod.weight.shape) != w.shape:
                raise ValueError(
                    f"{path}: a convolution of shape {w.shape}, expected {tuple(mod.weight.shape)}"
                )
            mod.weight.copy_(torch.tensor(w))
            norm = norm_after.get(id(mod))
            if norm is not None:  # the file's bias is the folded norm's shift
                shift = folded_bias[id(norm)] = torch.tensor(b)
                ones = torch.ones_like(shift)
                _set_norm(norm, torch.zeros_like(shift), ones - norm.eps, ones, shift)
            elif mod.bias is not None:
                mod.bias.copy_(torch.tensor(b))
        for lin, w, b in zip(dense_mods, dense[::2], dense[1::2], strict=True):
            if tuple(lin.weight.shape) != w.shape:
                raise ValueError(
                    f"{path}: a dense layer of shape {w.shape}, expected {tuple(lin.weight.shape)}"
                )
            lin.weight.copy_(torch.tensor(w))
            lin.bias.copy_(torch.tensor(b))
    _calibrate(net, calibration, folded_bias)
    return net.eval()


def _set_norm(
    norm: nn.BatchNorm2d,
    mean: torch.Tensor,
    var: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
) -> None:
    """In eval mode ``norm`` then maps ``z`` to ``(z - mean) / sqrt(var + eps) * scale + shift``."""
    state = {"running_mean": mean, "running_var": var, "weight": scale, "bias": shift}
    norm.load_state_dict(state, strict=False)


def _calibrate(net: nn.Module, x: np.ndarray, folded_bias: dict[int, torch.Tensor]) -> None:
    """Set each batch norm's statistics from what reaches it on frames ``x`` (the norms are
    exact shifts at this point, so one pass gives every norm its true input)."""
    stats: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(mod: nn.Module, inputs: tuple[torch.Tensor, ...], _: torch.Tensor) -> None:
        z = inputs[0]
        stats[id(mod)] = (z.mean(dim=(0, 2, 3)), z.var(dim=(0, 2, 3), unbiased=False))

    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    hooks = [m.register_forward_hook(record) for m in norms]
    net.eval()
    with torch.no_grad():
        net(torch.from_numpy(np.asarray(x, dtype=np.float32)))
        for m in norms:
            mean, var = stats[id(m)]
            _set_norm(m, mean, var, torch.sqrt(var + m.eps), mean + folded_bias[id(m)])
    for h in hooks:
        h.remove()

"""A member back from its ONNX file into torch (``tipd train --init-from``)."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.conftest import tiny_config  # noqa: E402
from tipd.models import load_manifest  # noqa: E402
from tipd.train.export import export_onnx  # noqa: E402
from tipd.train.nets import build  # noqa: E402
from tipd.train.onnx_weights import load_member  # noqa: E402


def _trained_looking(family: str, seed: int) -> torch.nn.Module:
    """A net whose batch norms hold statistics and scales far from their defaults."""
    torch.manual_seed(seed)
    net = build(family, 4, 0.0625, 1)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(32, 1, 128, 128) * 2 + 0.5)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.5, 0.5)
    return net.eval()


@pytest.mark.parametrize("family", ["vgg_bn", "squeeze", "vgg", "rw"])
def test_a_member_comes_back_from_onnx_computing_the_same(tmp_path: Path, family: str) -> None:
    import onnxruntime as ort

    net = _trained_looking(family, 1)
    path = tmp_path / "m.onnx"
    export_onnx(net, path, 128, ["logits"], 1)
    rng = np.random.default_rng(2)
    calibration = rng.uniform(-1, 1, size=(64, 1, 128, 128)).astype(np.float32)
    back = load_member(path, family, 4, 0.0625, calibration)
    x = rng.uniform(-1, 1, size=(8, 1, 128, 128)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
        got = back(torch.from_numpy(x)).numpy()
    onnx_out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": x}
    )[0]
    assert np.abs(got - want).max() < 1e-4
    assert np.abs(got - onnx_out).max() < 1e-4
    if family in ("vgg_bn", "squeeze"):  # rebuilt norms: train mode keeps the function too
        back.train()
        for m in back.modules():
            if isinstance(m, torch.nn.Dropout):
                m.eval()
        with torch.no_grad():
            on_batch = back(torch.from_numpy(calibration)).numpy()
            back.eval()
            want_batch = back(torch.from_numpy(calibration)).numpy()
        assert np.abs(on_batch - want_batch).max() < 1e-3


def test_a_member_of_another_family_or_width_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    export_onnx(_trained_looking("vgg_bn", 3), path, 128, ["logits"], 1)
    x = np.zeros((4, 1, 128, 128), dtype=np.float32)
    with pytest.raises(ValueError, match="convolutions"):
        load_member(path, "squeeze", 4, 0.0625, x)
    with pytest.raises(ValueError, match="shape"):
        load_member(path, "vgg_bn", 4, 0.125, x)


def test_tipd_train_goes_on_from_a_trained_model(tmp_path: Path, tiny_model: Path) -> None:
    from tipd.train.pipeline import CANDIDATES, TIP_CHANGE_NET, train_surface

    shipped = load_manifest(tiny_model)
    best = max(
        (m for m in shipped.members if m.vote_weight is not None),
        key=lambda m: m.vote_weight or 0.0,
    )
    cfg = tiny_config(tmp_path, "goes-on", member_seconds=2, trees=10, init_from=tiny_model)
    manifest = train_surface(cfg, log=lambda _: None)
    init = manifest.training["init_from"]
    assert init["member"] == best.name and init["sha256"] == best.sha256
    assert init["candidates"] == ["vgg_bn_adam"]  # the chain's root; its forks follow it
    assert manifest.training["left_out_same_net"] == []  # forks train on: other nets
    root = manifest.training["recipe"]["vgg_bn_adam"]
    assert root["lr"] == pytest.approx(CANDIDATES[0][1].lr * init["lr_fraction"])
    # the H:Si tip-change net goes on from the model's own, at the same fraction of its rate
    old_tc, new_tc = (
        next(m for m in man.members if m.name == TIP_CHANGE_NET[0]) for man in (shipped, manifest)
    )
    assert init["extra"] == {"member": old_tc.name, "sha256": old_tc.sha256}
    assert new_tc.recipe["lr"] == pytest.approx(TIP_CHANGE_NET[1].lr * init["lr_fraction"])
    # what made the model gone on from stays in the lineage, without the vote's weights
    assert init["training"]["test"] == shipped.training["test"]
    assert init["training"]["seconds"] == shipped.training["seconds"]
    assert "coef" in shipped.training["vote"] and "coef" not in init["training"]["vote"]
    assert manifest.training["flags"] == {"n_train": 128, "member_seconds": 2, "epochs": 1}
    # a width no member has: refused before any data is made
    with pytest.raises(ValueError, match="width"):
        train_surface(replace(cfg, width=0.125, out=tmp_path / "never"), log=lambda _: None)
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize(
    ("model", "says"),
    [("hsi100", "no voting member with labels"), ("no-such-model", "no model 'no-such-model'")],
)
def test_tipd_train_refuses_a_model_it_cannot_go_on_from(
    tmp_path: Path, tipd_exe: list[str], model: str, says: str
) -> None:
    out = tmp_path / "au111"
    run = subprocess.run(
        [*tipd_exe, "train", "--surface", "au111", "--init-from", model, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and says in run.stderr, run.stderr[-2000:]
    assert not out.exists()  # refused before any data was made

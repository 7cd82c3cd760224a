"""Shared fixtures: where the real scans live, free TCP ports, the tipd executable."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

# tipd's state folder (its default journal) for every test and every tipd they start: a
# folder of the test run's own, never the user's ~/.local/state/tipd
os.environ.pop("STATE_DIRECTORY", None)
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="tipd-tests-state-")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"real scans not found at {FIXTURES}")
    return FIXTURES


@pytest.fixture
def tipd_exe() -> list[str]:
    """The installed console script (falls back to ``python -m tipd.cli``)."""
    exe = Path(sys.executable).parent / "tipd"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("tipd")
    return [found] if found else [sys.executable, "-m", "tipd.cli"]


def tiny_config(root: Path, name: str, **overrides: Any) -> Any:
    """The ``TrainConfig`` of a tiny H:Si ensemble in ``root/name``: the first three
    candidates at width 0.0625, a few frames and seconds each."""
    from dataclasses import replace

    from tipd.train.pipeline import CANDIDATES, TrainConfig

    settings: dict[str, Any] = {
        "surface": "hsi100",
        "out": root / name,
        "reports": root / "reports",
        "n_train": 128,
        "n_val": 64,
        "n_test": 64,
        "n_stack": 64,
        "n_familiarity": 0,  # every frame familiar: the daemon tests steer the policy freely
        "member_seconds": 4,
        "epochs": 1,
        "trees": 20,
        "workers": 1,
        "candidates": [(n, replace(r, width=0.0625, batch=32)) for n, r in CANDIDATES[:3]],
    }
    return TrainConfig(**{**settings, **overrides})


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An H:Si ensemble (with the separate tip-change net) trained for a few steps: the whole
    training path, fast enough for the suite."""
    pytest.importorskip("torch")
    from tipd.train.pipeline import train_surface

    root = tmp_path_factory.mktemp("models")
    train_surface(tiny_config(root, "tiny"), log=lambda _: None)
    return root / "tiny"


@pytest.fixture(scope="session")
def fitted_tiny(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with familiarity statistics fitted on a few hundred frames."""
    from tipd.train.familiar import fit_model

    folder = tmp_path_factory.mktemp("fitted") / "tiny"
    shutil.copytree(tiny_model, folder)
    fit_model(folder, n_train=240, n_val=120, workers=1)
    return folder

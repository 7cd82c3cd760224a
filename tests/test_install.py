"""What `pip install .` carries: every shipped model file (so an installed tipd finds its models
without any environment variable) and no torch (training is the ``train`` extra)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from tests.conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_wheel_carries_every_shipped_model_file() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "models"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert any(p.endswith("ensemble.onnx") for p in tracked)
    carried: dict[str, str] = {}
    for target, patterns in PYPROJECT["tool"]["setuptools"]["data-files"].items():
        for pattern in patterns:
            for path in ROOT.glob(pattern):
                carried[path.relative_to(ROOT).as_posix()] = target
    assert set(tracked) <= set(carried), sorted(set(tracked) - set(carried))
    for path, target in carried.items():  # each lands where tipd.models.models_root looks
        assert target == f"share/tipd/{Path(path).parent.as_posix()}"


def test_the_daemon_installs_without_torch() -> None:
    base = " ".join(PYPROJECT["project"]["dependencies"])
    assert "torch" not in base and "sklearn" not in base and "scikit" not in base
    assert any(
        d.startswith("torch") for d in PYPROJECT["project"]["optional-dependencies"]["train"]
    )
    # and nothing the daemon runs imports torch
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, tipd.service, tipd.cli, tipd.classify, tipd.bridges.nanonis; "
            "print('torch' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert out.stdout.strip() == "False"

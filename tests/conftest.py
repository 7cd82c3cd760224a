"""Shared fixtures: where the real scans live, free TCP ports, the tipd executable."""

from __future__ import annotations

import shutil
import socket
import sys
from pathlib import Path

import pytest

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

"""The labelling queue: the unfamiliar first, then the least confident; scans that cannot be
read are not offered; a label is a copy in the class folder, and undo takes it back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tipd.readers import read_any
from tipd.web.labels import LOG, LabelError, Labelling


def _scan(folder: Path, name: str, spread: float) -> None:
    np.save(folder / f"{name}.npy", np.random.default_rng(0).normal(0, spread, (16, 16)))
    (folder / f"{name}.json").write_text(json.dumps({"scan_size_nm": 10}))


def _judge(path: Path) -> dict[str, Any]:
    """A verdict from the scan itself: confidence grows with its roughness (read for real)."""
    rough = float(np.nanstd(read_any(path).data)) * 1e10
    state = "unfamiliar" if rough > 5 else "good"
    return {"model": "m", "state": state, "confidence": min(1.0, rough / 5)}


def test_the_queue_puts_the_unfamiliar_first_then_the_least_confident(tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    for name, spread in (("calm", 1e-10), ("rough", 4e-10), ("wild", 9e-10), ("mid", 2e-10)):
        _scan(scans, name, spread)
    (scans / "broken.sxm").write_bytes(b"not a scan")
    lab = Labelling(scans, tmp_path / "labels", ["good", "double_tip"], _judge)
    assert [c.key for c in lab.queue] == ["wild.npy", "calm.npy", "mid.npy", "rough.npy"]
    assert lab.unreadable == {scans / "broken.sxm"}
    copies = lab.label("wild.npy", "double_tip", "me")
    assert sorted(p.name for p in copies) == ["wild.json", "wild.npy"]
    assert (tmp_path / "labels" / "double_tip" / "wild.npy").is_file()
    assert lab.counts() == {"good": 0, "double_tip": 1}
    assert lab.queue[0].key == "calm.npy"
    with pytest.raises(LabelError, match="unknown class 'blunt'"):
        lab.label("calm.npy", "blunt")
    with pytest.raises(LabelError, match=r"no scan .wild\.npy. waiting"):
        lab.label("wild.npy", "good")
    assert lab.undo().key == "wild.npy"
    assert not (tmp_path / "labels" / "double_tip" / "wild.npy").exists()
    assert lab.queue[0].key == "wild.npy"
    with pytest.raises(LabelError, match="nothing to undo"):
        lab.undo()
    log = (tmp_path / "labels" / LOG).read_text().splitlines()
    assert [line.split(",")[1] for line in log] == ["double_tip", "undo double_tip"]
    lab.label("calm.npy", "good")
    # a new session does not offer what is labelled already, and finds new scans
    _scan(scans, "later", 3e-10)
    again = Labelling(scans, tmp_path / "labels", ["good", "double_tip"], _judge)
    assert "calm.npy" not in [c.key for c in again.queue]
    assert "later.npy" in [c.key for c in again.queue]

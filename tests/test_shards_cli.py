"""``tipd synth`` writes shards and a manifest; sheets are real PNGs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tipd.synth import generate
from tipd.synth.shards import iter_shards, write_dataset


def test_dataset_is_the_same_whatever_the_workers(tmp_path: Path) -> None:
    one = write_dataset(
        "cu111", 14, tmp_path / "a", seed=9, pixels=32, shard_size=5, progress=False
    )
    two = write_dataset(
        "cu111", 14, tmp_path / "b", seed=9, pixels=32, shard_size=5, workers=2, progress=False
    )
    ma, mb = json.loads(one.read_text()), json.loads(two.read_text())
    assert [s["sha256"] for s in ma["shards"]] == [s["sha256"] for s in mb["shards"]]
    shards = list(iter_shards(tmp_path / "a"))
    assert [len(s.primary) for s in shards] == [5, 5, 4]
    heights = np.concatenate([s.heights for s in shards])
    assert heights.shape == (14, 32, 32) and heights.dtype == np.float32
    np.testing.assert_array_equal(heights[7], generate("cu111", 7, seed=9, pixels=32).heights_m)
    labels = np.concatenate([s.labels for s in shards])
    assert labels.shape == (14, 6) and set(np.concatenate([s.primary for s in shards])) == set(
        range(6)
    )
    params = (tmp_path / "a" / "shard-00001.jsonl").read_text().splitlines()
    assert json.loads(params[0])["index"] == 5


def test_corrupt_shard_is_detected(tmp_path: Path) -> None:
    write_dataset("au111", 3, tmp_path, pixels=16, progress=False)
    shard = tmp_path / "shard-00000.npz"
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ValueError, match="sha256 does not match"):
        list(iter_shards(tmp_path))


def test_cli_synth_writes_a_manifest(tmp_path: Path, tipd_exe: list[str]) -> None:
    out = tmp_path / "hsi"
    run = subprocess.run(
        [
            *tipd_exe,
            "synth",
            "--surface",
            "hsi100",
            "--n",
            "6",
            "--out",
            str(out),
            "--pixels",
            "32",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["surface"] == "hsi100" and manifest["n"] == 6
    assert manifest["labels"] == ["atoms", "dimers", "rows", "generic_defect", "tip_change"]
    assert manifest["desirable"] == ["atoms", "dimers"]


def test_cli_synth_without_arguments_says_what_is_missing(tipd_exe: list[str]) -> None:
    run = subprocess.run([*tipd_exe, "synth"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--surface, --n and --out" in run.stderr


def test_class_sheet_has_one_row_per_class(tmp_path: Path, tipd_exe: list[str]) -> None:
    path = tmp_path / "sheet.png"
    run = subprocess.run(
        [*tipd_exe, "synth", "--sheet", str(path), "--surface", "au111", "--per-class", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    with Image.open(path) as img:
        assert img.format == "PNG"
        # 6 classes × (128 px tile + caption + gap) plus the title
        assert img.size[1] >= 6 * 128 and img.size[0] >= 2 * 128

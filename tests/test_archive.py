"""The frame archive: every whole frame classified, as a file the readers (and numpy) open, with
the verdict beside it; bounded in size and age; never a half-written file under a scan's name;
a failing archive costs the frame's file, nothing else."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from tests.test_daemon import GOOD, frame, model_dir, query, start, stop
from tipd.archive import TMP_SUFFIX, Archive, _write
from tipd.frames import Frame
from tipd.protocol import encode_frame
from tipd.readers import find_scans, read_any

VERDICT = {"model": "generic", "state": "double_tip", "confidence": 0.97, "bad": 0.98}


def _frame(k: int = 0, side: int = 64) -> Frame:
    data = np.random.default_rng(k).normal(0, 1e-10, (side, side))
    return Frame(
        data=data,
        scan_size_nm=(20.0, 20.0),
        microscope="stm1",
        frame_id=f"f{k}",
        bias_V=0.5,
        setpoint_A=1e-10,
        surface="au111",
        position_nm=(10.0, -5.0),
    )


def test_an_archived_frame_reads_back_with_its_verdict(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "a", max_mb=100, max_days=30)
    f = _frame()
    path = archive.keep(f, VERDICT)
    back = read_any(path)
    assert np.array_equal(back.data, f.data.astype(np.float32))
    assert back.scan_size_nm == (20.0, 20.0) and back.bias_V == 0.5
    assert back.surface == "au111" and back.position_nm == (10.0, -5.0)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["tipd"]["state"] == "double_tip" and meta["tipd"]["confidence"] == 0.97
    assert np.load(path).shape == (64, 64)  # any numpy opens it
    assert find_scans(tmp_path / "a") == [path]


def test_the_archive_keeps_its_bounds_oldest_first(tmp_path: Path) -> None:
    one = 64 * 64 * 4 + 128  # a 64² float32 frame and the .npy header
    archive = Archive(tmp_path / "a", max_mb=10.5 * one / 1e6, max_days=1)
    t0 = time.time()
    paths = [archive.keep(_frame(k), VERDICT, t=t0 + k) for k in range(30)]
    n = len(archive.kept)
    assert 9 <= n <= 10 and archive.bytes <= archive.max_bytes
    assert [k.path for k in archive.kept] == paths[-n:]
    assert all(not p.exists() for p in paths[:-n])
    assert all(p.exists() and p.with_suffix(".json").exists() for p in paths[-n:])
    assert archive.prune(now=t0 + 30 + 86400 + 1) == n  # a day later: all too old
    assert find_scans(tmp_path / "a") == []
    # a new Archive on the same folder knows what is there
    kept = Archive(tmp_path / "a", max_mb=1, max_days=1).keep(_frame(99), VERDICT)
    again = Archive(tmp_path / "a", max_mb=1, max_days=1)
    assert [k.path for k in again.kept] == [kept] and again.bytes > 64 * 64 * 4


def test_a_write_that_fails_leaves_no_file_under_a_scans_name(tmp_path: Path) -> None:
    target = tmp_path / "x.npy"

    def half(fh: object) -> None:
        fh.write(b"\x93NUMPY half a header")  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        _write(target, half)
    assert list(tmp_path.iterdir()) == []
    # what a kill mid-write leaves (the temporary file) is gone at the next start
    (tmp_path / "a" / "stm1").mkdir(parents=True)
    (tmp_path / "a" / "stm1" / f".f1.npy{TMP_SUFFIX}").write_bytes(b"\x93NUMPY")
    Archive(tmp_path / "a", max_mb=1, max_days=1)
    assert list((tmp_path / "a" / "stm1").iterdir()) == []


def test_the_daemon_archives_each_frame_and_the_journal_points_to_it(
    tmp_path: Path, tiny_model: Path, tipd_exe: list[str]
) -> None:
    d = start(tmp_path, model_dir(tiny_model, tmp_path / "models"), tipd_exe)
    try:
        d.decide(f"a{k}" for k in range(3))
        # the archive folder's microscope sub-folder becomes a file: every write now fails
        (tmp_path / "archive" / "stm1").rename(tmp_path / "moved")
        (tmp_path / "archive" / "stm1").write_text("in the way")
        d.send(encode_frame(frame(frame_id="lost").header(), GOOD.data))
        events = d.events_until("error.stm1", 10.0)
        assert "not archived" in str(events[-1][1]["detail"])
        assert d.events_until("state.stm1", 10.0)[-1][1]["frame_id"] == "lost"  # still decided
        d.send(encode_frame(frame(frame_id="after").header(), GOOD.data))
        assert d.events_until("state.stm1", 10.0)[-1][1]["frame_id"] == "after"
        counters = d.events_until("health", 5.0)[-1][1]["counters"]
        assert isinstance(counters, dict) and counters["archive_failures"] == 2
        assert counters["archived"] == 3
    finally:
        stop(d)
    rows = {r["frame_id"]: r for r in query(d.journal, "frames", last=100) if r["kind"] == "frame"}
    for k in range(3):
        path = Path(
            rows[f"a{k}"]["archive"].replace(
                str(tmp_path / "archive" / "stm1"), str(tmp_path / "moved")
            )
        )
        back = read_any(path)
        assert np.array_equal(back.data, GOOD.data.astype(np.float32))
        assert (
            json.loads(path.with_suffix(".json").read_text())["tipd"]["state"]
            == rows[f"a{k}"]["state"]
        )
    assert rows["lost"]["archive"] is None and rows["lost"]["status"] == "classified"

"""``tipd watch-folder``: a scan saved into the folder becomes a frame once its file is
complete; a half-written or unreadable file is never published and does not stop the rest."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import zmq

from tests.conftest import free_port
from tipd.folder import FolderWatcher
from tipd.protocol import decode_frame


def _save(folder: Path, name: str, side: int = 32) -> Path:
    path = folder / f"{name}.npy"
    np.save(path, np.random.default_rng(len(name)).normal(0, 1e-10, (side, side)))
    (folder / f"{name}.json").write_text(json.dumps({"scan_size_nm": 10}))
    return path


def test_a_file_is_taken_once_it_stops_changing(tmp_path: Path) -> None:
    old = _save(tmp_path, "old")
    w = FolderWatcher(tmp_path, settle_s=2.0)
    w.skip_existing()
    new = tmp_path / "new.npy"
    new.write_bytes(b"\x93NUMPY")  # the acquisition software has begun to write
    assert w.poll(0.0) == []
    _save(tmp_path, "new")  # ... and goes on (size and time change)
    assert w.poll(1.5) == []
    assert w.poll(3.0) == []  # unchanged for 1.5 s only
    assert w.poll(3.6) == [new]  # unchanged for 2.1 s: complete
    assert w.poll(10.0) == []  # taken once
    _save(tmp_path, "new", side=16)  # saved again under the same name: taken again
    assert w.poll(11.0) == [] and w.poll(13.5) == [new]
    assert old not in w.pending


def test_watch_folder_publishes_new_scans_and_reports_bad_ones(
    tmp_path: Path, fixtures_dir: Path, tipd_exe: list[str]
) -> None:
    port = free_port()
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"frame.")
    sub.bind(f"tcp://127.0.0.1:{port}")
    _save(tmp_path, "there_before")
    proc = subprocess.Popen(
        [
            *tipd_exe,
            "watch-folder",
            str(tmp_path),
            "--frames",
            f"tcp://127.0.0.1:{port}",
            "--settle",
            "0.3",
            "--poll",
            "0.1",
            "--max-frames",
            "2",
            "--microscope",
            "stm7",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        said = proc.stderr.readline()  # it has taken stock of what was there before
        assert said.startswith("watching "), said
        (tmp_path / "broken.sxm").write_bytes(b"not a Nanonis file")
        shutil.copy(fixtures_dir / "FeSe_topography.sxm", tmp_path / "FeSe.sxm")
        got = []
        while len(got) < 1 and sub.poll(30_000):
            got.append(decode_frame(sub.recv_multipart()))
        (tmp_path / "day2").mkdir()  # a new sub-folder, as software makes one per day
        _save(tmp_path / "day2", "scan_0002")
        while len(got) < 2 and sub.poll(30_000):
            got.append(decode_frame(sub.recv_multipart()))
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        sub.close()
    assert proc.returncode == 0, err
    assert [h.frame_id for _, h, _ in got] == ["FeSe", "scan_0002"]
    assert got[0][1].microscope == "stm7" and got[0][1].shape == (224, 224)
    assert "broken.sxm" in err and "not published" in err and "there_before" not in out
    assert said.rstrip().endswith("as stm7")

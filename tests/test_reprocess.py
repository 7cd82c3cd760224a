"""``tipd reprocess`` on a real Dask ``LocalCluster`` of worker processes, over a frame archive
written by tipd's own archive: the table, a bad file, an interrupted run that goes on where it
stopped, a worker killed mid-run, and the report."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq

from tipd.archive import Archive
from tipd.frames import Frame
from tipd.reprocess.run import IN_FLIGHT, reprocess
from tipd.reprocess.table import parts_dir
from tipd.synth import generate

MODEL = "au111"


def archive(root: Path, frames: int = 12) -> Path:
    """An archive of two microscopes' frames a minute apart, and one file that is no scan."""
    a = Archive(root / "archive", 1000, 3650)
    t0 = time.time() - 7200
    for mic in ("stm1", "stm2"):
        for k in range(frames):
            lab = generate("au111", k, seed=21, pixels=96)
            f = Frame(lab.heights_m, lab.scan_size_nm, microscope=mic, frame_id=f"{mic}-{k:03d}",
                      t_acquired=t0 + 60 * k)  # fmt: skip
            verdict = {"model": MODEL, "state": "double_tip", "confidence": 0.9, "bad": 0.9,
                       "tip_change": 0.0, "classes": {"double_tip": 0.9}}  # fmt: skip
            a.keep(f, verdict, t=t0 + 60 * k)
    (root / "archive" / "stm1" / "not-a-scan.npy").write_bytes(b"broken")
    return root / "archive"


def rows(table: Path) -> list[dict[str, object]]:
    return pq.read_table(table).to_pylist()


def test_every_scan_is_a_row_and_a_bad_file_is_one_row_with_its_error(tmp_path: Path) -> None:
    src = archive(tmp_path)
    table = tmp_path / "t.parquet"
    s = reprocess([src], [MODEL], table, workers=2, batch=5, archived=True)
    assert s.complete and s.workers == 2 and s.scans == 25 and s.unreadable == 1
    got = rows(table)
    judged = [r for r in got if r["model"] == MODEL]
    assert len(judged) == 25
    errors = [r for r in judged if r["error"]]
    assert len(errors) == 1 and "not-a-scan.npy" in str(errors[0]["path"])
    ok = [r for r in judged if not r["error"]]
    assert {r["microscope"] for r in ok} == {"stm1", "stm2"}
    assert all(r["rows"] == 96 and r["class_double_tip"] is not None for r in ok)
    assert all(0 <= float(r["bad"]) <= 1 and r["evidence"] for r in ok)  # type: ignore[arg-type]
    times = [float(r["t"]) for r in ok if r["microscope"] == "stm1"]  # type: ignore[arg-type]
    assert times == sorted(times)  # each microscope's frames in time order
    kept = [r for r in got if r["model"] == f"archive:{MODEL}"]
    assert len(kept) == 24 and all(r["state"] == "double_tip" for r in kept)


def test_an_interrupted_run_goes_on_where_it_stopped_and_gives_the_same_table(
    tmp_path: Path,
) -> None:
    src = archive(tmp_path)
    whole, resumed = tmp_path / "whole.parquet", tmp_path / "resumed.parquet"
    reprocess([src], [MODEL], whole, workers=2, batch=3)
    # stopped after 2 batches: at most those, and the 2 + 2 a worker in flight, are written
    first = reprocess([src], [MODEL], resumed, workers=2, batch=3, stop_after=2)
    assert first.batches == 9 and not first.complete and not resumed.exists()
    written = len(list(parts_dir(resumed).glob("*.parquet")))
    assert 2 <= written <= 2 + IN_FLIGHT * 2
    second = reprocess([src], [MODEL], resumed, workers=2, batch=3)
    assert second.complete and second.skipped == written
    assert pq.read_table(resumed).drop(["batch"]).equals(pq.read_table(whole).drop(["batch"]))


def test_a_worker_killed_mid_run_loses_nothing(tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    src = archive(tmp_path, frames=16)
    table = tmp_path / "t.parquet"
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None)  # fmt: skip
    client = Client(cluster)
    try:
        killed = []

        def progress(done: int, total: int) -> None:
            if done and not killed:  # the first batch is in: kill one worker's process
                pids = client.run(os.getpid)
                victim = sorted(pids.values())[0]
                os.kill(victim, 9)
                killed.append(victim)

        s = reprocess([src], [MODEL], table, scheduler=cluster.scheduler_address, batch=3,
                      progress=progress)  # fmt: skip
        assert killed and s.complete and not s.failed
        assert len([r for r in rows(table) if not r["error"]]) == 32
    finally:
        client.close()
        cluster.close()


def test_the_command_line_writes_the_table_and_a_report(
    tmp_path: Path, tipd_exe: list[str]
) -> None:
    src = archive(tmp_path, frames=6)
    labels = tmp_path / "labels"
    labels.mkdir()
    first = sorted((src / "stm1").rglob("*.npy"))[0]
    (labels / "labels.csv").write_text(f"2026-01-01T00:00:00,individual_atoms,ada,{first}\n")
    out = subprocess.run(
        [*tipd_exe, "reprocess", str(src), "--model", MODEL, "--against", "generic", "--out",
         str(tmp_path / "t.parquet"), "--workers", "2", "--labels", str(labels), "--quiet"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = (tmp_path / "t.report" / "report.md").read_text()
    assert f"## {MODEL} against generic" in report and "Against the lab's labels" in report
    assert "| stm1 | generic |" in report and (tmp_path / "t.report" / "states-stm1.png").is_file()
    missing = subprocess.run(
        [*tipd_exe, "reprocess", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.parquet")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1

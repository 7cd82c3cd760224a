"""A Dask worker's side of a reprocessing: the models loaded once per worker, and a batch judged.

:class:`Judges` is a worker plugin: each worker process loads every model once when it joins
(ONNX Runtime with one thread, and the frame's physics on the same thread: the worker
processes are the parallelism, one a core), not once per scan. :func:`judge_batch` runs the
daemon's decision step over one batch's scans in time order, each model with a history of its
own (advisory, on the frames' own clock), and writes the batch's part of the table. A scan that
cannot be read, or that fails to be judged, is a row saying why, never the end of the batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distributed import WorkerPlugin, get_worker

from tipd.decide import Rules, history, step
from tipd.ensemble import Ensemble
from tipd.models import find
from tipd.readers import ReaderError, read_any
from tipd.reprocess.sources import Batch
from tipd.reprocess.table import failed, judged, kept, parts_dir, write_part


class Judges(WorkerPlugin):
    """Loads ``models`` (names or folders) once per worker, as ``worker.tipd_judges``."""

    name = "tipd-judges"

    def __init__(self, models: list[str], gpu: bool = False) -> None:
        self.models = models
        self.gpu = gpu

    def setup(self, worker: Any) -> None:
        worker.tipd_judges = {
            m: Ensemble(find(m), prefer_gpu=self.gpu, threads=1, beside=False) for m in self.models
        }


def judge_batch(
    batch: Batch, models: list[str], table: str, archived: bool = False
) -> tuple[str, int, int]:
    """Judge ``batch`` with each of ``models`` (loaded by :class:`Judges`) and write its part
    of ``table``, with the verdicts the archive kept where ``archived``; ``(batch key, scans,
    scans that could not be judged)``."""
    judges: dict[str, Ensemble] = getattr(get_worker(), "tipd_judges")  # noqa: B009
    rows: list[dict[str, Any]] = []
    errors = 0
    now = [0.0]  #: the clock of the policy and the gate: the time of the frame being judged
    for name in models:
        ens = judges[name]
        hist = history(batch.microscope, set(ens.manifest.desirable), clock=lambda: now[0])
        rules = Rules(advisory=True)
        for scan in batch.scans:
            now[0] = scan.t
            try:
                frame = read_any(scan.path)
                frame = frame.replace(microscope=batch.microscope, t_acquired=scan.t)
                done = step(frame, hist, ens, rules)
            except ReaderError as exc:
                errors += 1
                rows.append(failed(scan, name, str(exc), batch.key))
                continue
            except Exception as exc:  # one scan never ends the batch
                errors += 1
                rows.append(failed(scan, name, f"{type(exc).__name__}: {exc}", batch.key))
                continue
            rows.append(judged(scan, frame, name, done, batch.key))
    if archived:
        rows += [r for r in (kept(s, batch.key) for s in batch.scans) if r is not None]
    write_part(rows, parts_dir(Path(table)) / f"{batch.key}.parquet")
    return batch.key, len(batch.scans), errors // max(1, len(models))

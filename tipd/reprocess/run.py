"""Running a reprocessing on a Dask cluster: on this machine by default (a ``LocalCluster`` of
worker processes, one a core, one thread each), or on an existing cluster (``scheduler``).

The batches not yet written (:func:`tipd.reprocess.table.done`) go out as Dask tasks, two a
worker in flight at any time (:data:`IN_FLIGHT`, so that a stopped run leaves the rest unjudged
and the scheduler holds few tasks for a large archive); each worker has the models loaded once
(:class:`tipd.reprocess.work.Judges`). A worker that dies
takes no written part with it: Dask gives its batch to another worker. Ctrl-C stops the run with
every part written so far kept; the next run goes on from there. When every batch is written,
the parts become the table (:func:`tipd.reprocess.table.consolidate`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from tipd.reprocess.sources import Batch, batches, scans
from tipd.reprocess.table import consolidate, done

#: batches in flight per worker: one judged, one waiting, so no worker waits for the scheduler
IN_FLIGHT = 2


@dataclass
class Summary:
    """What a run did: ``scans`` in ``batches``, of which ``skipped`` batches were written by
    an earlier run; ``unreadable`` scans got an error row; ``failed`` batches could not be
    written (their scans are judged again by the next run)."""

    table: Path
    scans: int
    batches: int
    skipped: int = 0
    unreadable: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 0
    complete: bool = False


def reprocess(
    sources: list[Path],
    models: list[str],
    table: Path,
    workers: int | None = None,
    scheduler: str | None = None,
    batch: int = 64,
    gpu: bool = False,
    progress: Callable[[int, int], None] | None = None,
    stop_after: int | None = None,
    archived: bool = False,
) -> Summary:
    """Judge every scan of ``sources`` with each of ``models`` into ``table`` (Parquet); see
    the module. ``workers``: local worker processes (default: one a core); ``scheduler``: the
    address of a running cluster instead; ``progress(scans_done, scans_total)`` after each
    batch; ``stop_after``: return after that many batches (an interrupted run); ``archived``:
    the verdicts the archive kept go into the table too (model ``archive:<model>``)."""
    from distributed import Client, Future, LocalCluster, as_completed

    from tipd.reprocess.work import Judges, judge_batch

    found = scans(sources)
    todo = batches(found, batch)
    written = done(table)
    pending = [b for b in todo if b.key not in written]
    summary = Summary(table, len(found), len(todo), skipped=len(todo) - len(pending))
    total = sum(len(b.scans) for b in pending)
    start = time.monotonic()
    if progress is not None:
        progress(0, total)
    if pending:
        logging.getLogger("distributed").setLevel(logging.ERROR)
        cluster = None
        if scheduler is None:
            n = workers or os.cpu_count() or 1
            cluster = LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                silence_logs=logging.ERROR,
            )  # fmt: skip
        client = Client(cluster if cluster is not None else scheduler)
        try:
            summary.workers = len(client.scheduler_info()["workers"])
            client.register_plugin(Judges(models, gpu))
            queue = iter(pending)

            def submit(b: Batch) -> Future:  # type: ignore[type-arg]
                return client.submit(
                    judge_batch, b, models, str(table), archived, key=f"tipd-{b.key}", retries=2
                )

            window = IN_FLIGHT * max(1, summary.workers)
            running = as_completed([submit(b) for b in islice(queue, window)])
            finished = 0
            scanned = 0
            for fut in running:
                following = next(queue, None)
                if following is not None:
                    running.add(submit(following))
                try:
                    _, n, errors = fut.result()
                except Exception as exc:  # a batch that could not be written
                    summary.failed.append(f"{fut.key}: {type(exc).__name__}: {exc}")
                    continue
                finished += 1
                scanned += n
                summary.unreadable += errors
                if progress is not None:
                    progress(scanned, total)
                if stop_after is not None and finished >= stop_after:
                    break
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    summary.seconds = time.monotonic() - start
    summary.complete = len(done(table)) == len(todo)
    if summary.complete:
        consolidate(table)
    return summary

"""The table a reprocessing writes: one row per scan and model, in Parquet.

============== ============================================================================
column         what
============== ============================================================================
path           the scan file
microscope     from the archive sidecar, else the scan's folder
frame_id       from the sidecar, else the file's name
t              unix s: the frame's acquisition (archive), else the file's time
scan_w_nm      scan size, nm
scan_h_nm
rows, cols     pixels
model          the model that judged it
state          the decision (:mod:`tipd.decide`): a class, ``unknown`` or ``unfamiliar``
confidence     of the state, 0–1
bad            the confidence that the frame is not good, 0–1
tip_change     the confidence that the tip changed during the frame, 0–1
familiarity    0–1 (null where the model has no statistics)
class_<label>  every label's confidence (null for a model without that label)
evidence       JSON: every source's say (:mod:`tipd.evidence`)
actions        what the policy and the safety gate would have done on it (``pulse,move``…)
error          why the scan could not be judged (null for a judged one)
batch          the batch it was judged in
============== ============================================================================

Each batch is a *part*, ``<TABLE>.parts/<batch>.parquet``, written under a temporary name and
renamed into place: a part is there whole or not at all. :func:`consolidate` makes the table
from the parts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tipd.decide import Step
from tipd.frames import Frame
from tipd.record import evidence_list
from tipd.reprocess.sources import Scan


def judged(scan: Scan, frame: Frame, model: str, step: Step, batch: str) -> dict[str, Any]:
    """The row of a judged scan."""
    d = step.decision
    rows, cols = frame.shape
    return {
        "path": scan.path,
        "microscope": scan.microscope,
        "frame_id": frame.frame_id or Path(scan.path).stem,
        "t": scan.t,
        "scan_w_nm": float(frame.scan_size_nm[0]),
        "scan_h_nm": float(frame.scan_size_nm[1]),
        "rows": rows,
        "cols": cols,
        "model": model,
        "state": d.state,
        "confidence": float(d.confidence),
        "bad": float(d.bad),
        "tip_change": float(d.tip_change),
        "familiarity": d.familiarity,
        **{f"class_{k}": float(v) for k, v in d.classes.items()},
        "evidence": json.dumps(evidence_list(d)),
        "actions": ",".join(a.command.action for a in step.actions),
        "error": None,
        "batch": batch,
    }


def failed(scan: Scan, model: str, error: str, batch: str) -> dict[str, Any]:
    """The row of a scan that could not be judged, saying why."""
    return {
        "path": scan.path,
        "microscope": scan.microscope,
        "frame_id": Path(scan.path).stem,
        "t": scan.t,
        "model": model,
        "error": error[:2000],
        "batch": batch,
    }


def kept(scan: Scan, batch: str) -> dict[str, Any] | None:
    """The row of the verdict the archive kept for ``scan`` (model ``archive:<its model>``), or
    None where its sidecar kept none."""
    if not scan.verdict:
        return None
    v = json.loads(scan.verdict)
    return {
        "path": scan.path,
        "microscope": scan.microscope,
        "frame_id": Path(scan.path).stem,
        "t": scan.t,
        "model": f"archive:{v.get('model', '?')}",
        "state": v.get("state"),
        "confidence": v.get("confidence"),
        "bad": v.get("bad"),
        "tip_change": v.get("tip_change"),
        "familiarity": v.get("familiarity"),
        **{f"class_{k}": float(x) for k, x in (v.get("classes") or {}).items()},
        "error": None,
        "batch": batch,
    }


def parts_dir(table: Path) -> Path:
    """Where the parts of ``table`` go."""
    return table.with_name(table.name + ".parts")


def write_part(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write ``rows`` to ``path`` atomically; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    os.replace(tmp, path)
    return path


def done(table: Path) -> set[str]:
    """The batches whose parts are written."""
    folder = parts_dir(table)
    return {p.stem for p in folder.glob("*.parquet")} if folder.is_dir() else set()


def consolidate(table: Path) -> pa.Table:
    """The table from every part, sorted by microscope, time and model, written to ``table``
    (atomically); returned."""
    parts = sorted(parts_dir(table).glob("*.parquet"))
    if not parts:
        whole = pa.table({"path": pa.array([], pa.string())})
    else:
        whole = pa.concat_tables([pq.read_table(p) for p in parts], promote_options="default")
        order = pc.sort_indices(
            whole, sort_keys=[("microscope", "ascending"), ("t", "ascending"),
                              ("path", "ascending"), ("model", "ascending")],
        )  # fmt: skip
        whole = whole.take(order)
    tmp = table.with_name(f".{table.name}.tmp")
    pq.write_table(whole, tmp)
    os.replace(tmp, table)
    return whole

"""Which scans a reprocessing reads, and the batches they go out in.

A source is a folder (every scan in it, the frame archive's ``.npy`` + sidecar pairs included,
:func:`tipd.readers.find_scans`), a single scan file, or a journal (``.sqlite``: the frames it
archived). A scan's microscope and time come from its archive sidecar where it has one
(``microscope``, ``tipd.t_acquired``), else the microscope is the folder it lies in and the time
its file's modification time. Batches hold consecutive scans of one microscope, in time order,
as the daemon saw them; each has an id from the paths it holds, the same in every run.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from tipd.readers import find_scans


@dataclass(frozen=True)
class Scan:
    """One scan to judge: its file, microscope and time (unix s), and the verdict its archive
    sidecar kept (JSON text; empty where none)."""

    path: str
    microscope: str
    t: float
    verdict: str = ""


@dataclass(frozen=True)
class Batch:
    """Consecutive scans of one microscope, in time order; ``key`` names it in every run."""

    key: str
    microscope: str
    scans: tuple[Scan, ...]


def _scan(path: Path) -> Scan:
    """A scan file with its microscope and time (see the module)."""
    meta: dict[str, object] = {}
    sidecar = path.with_suffix(".json")
    if path.suffix.lower() == ".npy" and sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            meta = {}
    verdict = meta.get("tipd") if isinstance(meta.get("tipd"), dict) else {}
    assert isinstance(verdict, dict)
    microscope = str(meta.get("microscope") or path.parent.name or "?")
    try:
        t = float(verdict.get("t_acquired") or path.stat().st_mtime)
    except (OSError, TypeError, ValueError):
        t = 0.0
    return Scan(str(path), microscope, t, json.dumps(verdict) if verdict else "")


def journal_scans(journal: Path) -> list[Path]:
    """The archived frames a journal points to (those still on disk)."""
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT archive FROM frames WHERE archive IS NOT NULL AND kind = 'frame' ORDER BY n"
        ).fetchall()
    except sqlite3.Error:
        rows = []
    finally:
        db.close()
    return [Path(r[0]) for r in rows if Path(r[0]).is_file()]


def scans(sources: list[Path]) -> list[Scan]:
    """Every scan of ``sources`` (folders, scan files, journals), each once."""
    paths: list[Path] = []
    for source in sources:
        if source.is_dir():
            paths += find_scans(source)
        elif source.suffix.lower() in (".sqlite", ".db"):
            paths += journal_scans(source)
        else:
            paths.append(source)
    seen: set[str] = set()
    out = []
    for path in paths:
        key = str(path.resolve())
        if key not in seen:
            seen.add(key)
            out.append(_scan(path))
    return out


def batches(found: list[Scan], size: int) -> list[Batch]:
    """``found`` in batches of at most ``size`` consecutive scans of one microscope."""
    by_mic: dict[str, list[Scan]] = {}
    for s in found:
        by_mic.setdefault(s.microscope, []).append(s)
    out = []
    for mic, group in sorted(by_mic.items()):
        group.sort(key=lambda s: (s.t, s.path))
        for k in range(0, len(group), size):
            part = tuple(group[k : k + size])
            digest = hashlib.sha1("\n".join(s.path for s in part).encode()).hexdigest()[:16]
            out.append(Batch(f"{digest}", mic, part))
    return out

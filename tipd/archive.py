"""The frame archive: every whole frame the daemon classified, as a file a lab opens with its own
tools, with tipd's verdict beside it.

Layout, under the archive folder (default ``archive/`` in tipd's state folder)::

    <microscope>/<YYYY-MM-DD>/<HHMMSS.mmm>_<frame_id>.npy    heights, float32, (rows, cols)
    <microscope>/<YYYY-MM-DD>/<HHMMSS.mmm>_<frame_id>.json   the sidecar

The pair is what :func:`tipd.readers.read_any` reads (``.npy`` + sidecar: scan size, bias,
setpoint, position, surface, …); the sidecar's ``tipd`` key holds the verdict (state,
confidence, bad, tip change, familiarity, every label's confidence, the model), which readers
ignore. ``numpy.load`` and any JSON parser open both. Each file is written under a temporary
name and renamed into place, the sidecar last, so a crash or kill of tipd never leaves a
half-written file with a scan's name (leftover temporary files are removed at start).

The archive keeps at most ``max_mb`` megabytes and nothing older than ``max_days``; the oldest
frames go first.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from tipd.frames import Frame

#: temporary files are named ``.<name>.tmp``: no reader takes them for a scan
TMP_SUFFIX = ".tmp"


@dataclass(frozen=True)
class Kept:
    """One archived frame: its ``.npy`` path, bytes on disk (both files) and unix time."""

    path: Path
    size: int
    t: float


def safe_name(frame_id: str) -> str:
    """``frame_id`` as a file-name part: letters, digits, ``-``, ``_`` and ``.`` only."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", frame_id)[:96] or "frame"


def sidecar(frame: Frame, verdict: dict[str, Any]) -> dict[str, Any]:
    """The sidecar of ``frame``: its header fields as :mod:`tipd.readers.npy` reads them, and
    ``verdict`` under ``tipd``."""
    return {
        "scan_size_nm": list(frame.scan_size_nm),
        "angle_deg": frame.angle_deg,
        "bias_V": frame.bias_V,
        "setpoint_A": frame.setpoint_A,
        "surface": frame.surface,
        "position_nm": list(frame.position_nm),
        "channel": frame.channel,
        "direction": frame.direction,
        "unit": frame.unit,
        "microscope": frame.microscope,
        "frame_id": frame.frame_id,
        "tipd": {"t_acquired": frame.t_acquired, "seq": frame.seq, **verdict},
    }


class Archive:
    """Frames on disk, bounded in size and age (see the module docstring)."""

    def __init__(self, folder: Path, max_mb: float, max_days: float) -> None:
        self.folder = folder
        self.max_bytes = int(max_mb * 1e6)
        self.max_age_s = max_days * 86400
        self.kept: deque[Kept] = deque()
        self.bytes = 0
        self.dropped = 0  #: frames removed to stay within the bounds
        folder.mkdir(parents=True, exist_ok=True)
        self._scan()

    def _scan(self) -> None:
        """Know what is already there (oldest first); remove leftover temporary files."""
        found = []
        for path in self.folder.rglob("*"):
            if path.name.endswith(TMP_SUFFIX):
                path.unlink(missing_ok=True)
            elif path.suffix == ".npy":
                size = path.stat().st_size + _size(path.with_suffix(".json"))
                found.append(Kept(path, size, path.stat().st_mtime))
        for kept in sorted(found, key=lambda k: k.t):
            self.kept.append(kept)
            self.bytes += kept.size

    def path_for(self, frame: Frame, t: float) -> Path:
        """Where ``frame``, archived at unix time ``t``, goes."""
        stamp = datetime.fromtimestamp(t)
        name = f"{stamp:%H%M%S}.{stamp.microsecond // 1000:03d}_{safe_name(frame.frame_id)}.npy"
        return self.folder / safe_name(frame.microscope) / f"{stamp:%Y-%m-%d}" / name

    def keep(self, frame: Frame, verdict: dict[str, Any], t: float | None = None) -> Path:
        """Write ``frame`` and its sidecar; returns the ``.npy`` path. Raises :class:`OSError`
        (a full disk, a read-only folder) with nothing left behind under a scan's name."""
        t = time.time() if t is None else t
        path = self.path_for(frame, t)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = json.dumps(sidecar(frame, verdict)).encode()
        _write(path, lambda fh: np.save(fh, np.asarray(frame.data, dtype=np.float32)))
        try:
            _write(path.with_suffix(".json"), lambda fh: fh.write(meta))
        except OSError:
            path.unlink(missing_ok=True)
            raise
        kept = Kept(path, path.stat().st_size + len(meta), t)
        self.kept.append(kept)
        self.bytes += kept.size
        self.prune(t)
        return path

    def prune(self, now: float | None = None) -> int:
        """Drop the oldest frames until the archive is within ``max_mb`` and ``max_days``;
        returns how many went."""
        now = time.time() if now is None else now
        gone = 0
        while self.kept and (self.bytes > self.max_bytes or now - self.kept[0].t > self.max_age_s):
            old = self.kept.popleft()
            self.bytes -= old.size
            old.path.unlink(missing_ok=True)
            old.path.with_suffix(".json").unlink(missing_ok=True)
            gone += 1
        self.dropped += gone
        return gone


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _write(path: Path, fill: Any) -> None:
    """Write ``path`` through ``fill(file)`` under a temporary name, then rename it into place
    (atomic: a reader sees the whole file or none)."""
    tmp = path.with_name(f".{path.name}{TMP_SUFFIX}")
    try:
        with tmp.open("wb") as fh:
            fill(fh)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

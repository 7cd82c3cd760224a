"""``.npy`` heights in metres, rows = scan lines, with an optional sidecar ``<name>.json``
holding ``scan_size_nm`` ([w, h], or one number for a square scan) and any other
:class:`Frame` header field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tipd.frames import Frame
from tipd.readers.error import ReaderError

_FIELDS = {
    "scan_size_nm",
    "angle_deg",
    "bias_V",
    "setpoint_A",
    "surface",
    "position_nm",
    "channel",
    "direction",
    "unit",
    "microscope",
    "frame_id",
}
#: sidecar keys a reader passes over: ``tipd``, the daemon's verdict on an archived frame
#: (:mod:`tipd.archive`)
_IGNORED = {"tipd"}


def read_npy(path: Path, direction: str = "forward") -> Frame:
    """A 2-D float array; never unpickles. The file holds one frame, of the sidecar's
    ``direction`` (default forward); asking for the other raises :class:`ReaderError`."""
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ReaderError(f"{path}: not a plain numeric .npy array ({exc})") from exc
    if data.ndim != 2 or not np.issubdtype(data.dtype, np.number):
        raise ReaderError(f"{path}: expected a 2-D numeric array, got {data.dtype} {data.shape}")
    meta: dict[str, Any] = {}
    sidecar = path.with_suffix(".json")
    if sidecar.exists():
        try:
            meta = json.loads(sidecar.read_text())
        except json.JSONDecodeError as exc:
            raise ReaderError(f"{sidecar}: invalid JSON ({exc})") from exc
        meta = {k: v for k, v in meta.items() if k not in _IGNORED}
        unknown = set(meta) - _FIELDS
        if unknown:
            raise ReaderError(
                f"{sidecar}: unknown fields {sorted(unknown)}; known: {sorted(_FIELDS)}"
            )
    size = meta.pop("scan_size_nm", None)
    if size is None:
        raise ReaderError(f"{path}: needs a sidecar {sidecar.name} with scan_size_nm [w, h]")
    w, h = _scan_size(size, sidecar)
    pos = meta.pop("position_nm", (0.0, 0.0))
    held = meta.get("direction", "forward")
    if held != direction:
        raise ReaderError(f"{path}: holds one {held} frame, no {direction} one")
    frame = Frame(
        data=data.astype(np.float64),
        scan_size_nm=(w, h),
        source=str(path),
        frame_id=path.stem,
        position_nm=(float(pos[0]), float(pos[1])),
    )
    return frame.replace(**meta) if meta else frame


def _scan_size(size: Any, sidecar: Path) -> tuple[float, float]:
    """``scan_size_nm`` of a sidecar: ``[w, h]`` or one number (a square scan), in nm."""

    def number(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)

    if number(size):
        return float(size), float(size)
    if isinstance(size, list) and len(size) == 2 and all(number(v) for v in size):
        return float(size[0]), float(size[1])
    raise ReaderError(f"{sidecar}: scan_size_nm must be [w, h] or one number (nm), got {size!r}")

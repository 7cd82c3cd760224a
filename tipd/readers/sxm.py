"""Nanonis ``.sxm``: a text header up to ``:SCANIT_END:``, then ``\\x1a\\x04``, then big-endian
float32 images, channel by channel in ``DATA_INFO`` order, forward before backward for channels
recorded in ``both`` directions, each ``(rows, cols)`` in the order the lines were scanned.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from tipd.frames import Frame
from tipd.readers.error import ReaderError

_END = b":SCANIT_END:"


def parse_header(text: str) -> dict[str, str]:
    """``{KEY: raw value text}`` of an SXM header (keys without colons, values stripped)."""
    out: dict[str, str] = {}
    for match in re.finditer(r"^:([^:\n]+):\n(.*?)(?=^:[^:\n]+:\n|\Z)", text, re.S | re.M):
        out[match.group(1).strip()] = match.group(2).strip("\n")
    return out


def _floats(value: str) -> list[float]:
    return [float(v) for v in value.split()]


def read_sxm(path: Path, channel: str = "Z", direction: str = "forward") -> Frame:
    """The ``channel`` image (default ``Z``, metres) scanned in ``direction``."""
    raw = path.read_bytes()
    end = raw.find(_END)
    start = raw.find(b"\x1a\x04", end)
    if end < 0 or start < 0:
        raise ReaderError(f"{path}: no ':SCANIT_END:' header terminator; not a Nanonis SXM file")
    header = parse_header(raw[:end].decode("latin-1"))
    try:
        cols, rows = (int(v) for v in _floats(header["SCAN_PIXELS"]))
        width_m, height_m = _floats(header["SCAN_RANGE"])
        info = [line.split("\t") for line in header["DATA_INFO"].strip().splitlines()[1:]]
    except (KeyError, ValueError) as exc:
        raise ReaderError(f"{path}: SXM header lacks or garbles {exc}") from exc
    offset = start + 2
    block = rows * cols * 4
    found = None
    for fields in info:
        fields = [f.strip() for f in fields if f.strip()]
        name, unit, dirs = fields[1], fields[2], fields[3]
        for d in ("forward", "backward") if dirs == "both" else (dirs,):
            if name == channel and d == direction:
                found = (offset, unit)
            offset += block
    if found is None:
        raise ReaderError(f"{path}: no {channel} channel scanned {direction}")
    if offset > len(raw):
        raise ReaderError(f"{path}: truncated, {len(raw)} bytes where the header promises {offset}")
    data = np.frombuffer(raw, dtype=">f4", count=rows * cols, offset=found[0]).reshape(rows, cols)
    data = data.astype(np.float64)
    if direction == "backward":
        data = data[:, ::-1]
    setpoint = 0.0
    zc = header.get("Z-CONTROLLER", "").splitlines()
    if len(zc) >= 2:
        cells = dict(zip(zc[0].split("\t"), zc[1].split("\t"), strict=False))
        try:
            setpoint = float(cells.get("Setpoint", "0").split()[0])
        except ValueError:
            setpoint = 0.0
    offset_m = _floats(header.get("SCAN_OFFSET", "0 0"))
    return Frame(
        data=data,
        scan_size_nm=(width_m * 1e9, height_m * 1e9),
        channel="z" if found[1] == "m" else "current",
        unit=found[1] if found[1] in ("m", "A") else "m",
        direction=direction,
        angle_deg=float(header.get("SCAN_ANGLE", "0") or 0),
        bias_V=float(header.get("BIAS", "0") or 0),
        setpoint_A=setpoint,
        position_nm=(offset_m[0] * 1e9, offset_m[1] * 1e9),
        frame_id=path.stem,
        source=str(path),
    )

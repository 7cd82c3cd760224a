"""Gwyddion 2 ``.gwy`` files through ``gwyfile``: the first data field is the image."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tipd.frames import Frame
from tipd.readers.error import ReaderError

#: words in a Gwyddion channel title that mark the backward (retrace) scan direction
BACKWARD_WORDS = ("backward", "bwd", "retrace", "<-")


def read_gwy(path: Path, direction: str = "forward") -> Frame:
    """The first data field of ``path`` in scan ``direction`` (heights in its SI unit,
    normally metres). A field whose title names the backward direction (``Z (Backward)``,
    ``bwd``, ``retrace``) is backward, any other forward; a file without a field of the
    asked-for direction raises :class:`ReaderError` naming the fields it has."""
    import gwyfile

    if path.read_bytes()[:4] != b"GWYP":
        raise ReaderError(f"{path}: not a Gwyddion 2 file (magic is not 'GWYP')")
    fields = gwyfile.util.get_datafields(gwyfile.load(str(path)))
    if not fields:
        raise ReaderError(f"{path}: holds no data field")
    wanted = [
        (name, field)
        for name, field in fields.items()
        if any(w in name.lower() for w in BACKWARD_WORDS) == (direction == "backward")
    ]
    if not wanted:
        raise ReaderError(
            f"{path}: no {direction} data field; its fields: {', '.join(map(repr, fields))}"
        )
    name, field = wanted[0]
    unit = getattr(field.si_unit_z, "unitstr", "m") if field.si_unit_z is not None else "m"
    return Frame(
        data=np.asarray(field.data, dtype=np.float64),
        scan_size_nm=(float(field.xreal) * 1e9, float(field.yreal) * 1e9),
        unit="A" if unit == "A" else "m",
        channel="current" if unit == "A" else "z",
        frame_id=f"{path.stem}:{name}",
        direction=direction,
        source=str(path),
    )

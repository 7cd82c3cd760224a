"""Gwyddion 2 ``.gwy`` files through ``gwyfile``: the first data field is the image."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tipd.frames import Frame
from tipd.readers import ReaderError


def read_gwy(path: Path) -> Frame:
    """The first data field of ``path`` (heights in its SI unit, normally metres)."""
    import gwyfile

    if path.read_bytes()[:4] != b"GWYP":
        raise ReaderError(f"{path}: not a Gwyddion 2 file (magic is not 'GWYP')")
    fields = gwyfile.util.get_datafields(gwyfile.load(str(path)))
    if not fields:
        raise ReaderError(f"{path}: holds no data field")
    name, field = next(iter(fields.items()))
    unit = getattr(field.si_unit_z, "unitstr", "m") if field.si_unit_z is not None else "m"
    return Frame(
        data=np.asarray(field.data, dtype=np.float64),
        scan_size_nm=(float(field.xreal) * 1e9, float(field.yreal) * 1e9),
        unit="A" if unit == "A" else "m",
        channel="current" if unit == "A" else "z",
        frame_id=f"{path.stem}:{name}",
        source=str(path),
    )

"""Omicron MATRIX images (``*.Z_mtrx``) through ``access2thematrix``.

The session parameter file (``<session>_0001.mtrx``) must lie beside the image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tipd.frames import Frame
from tipd.readers.error import ReaderError


def read_matrix(path: Path, direction: str = "forward") -> Frame:
    """The ``direction`` trace (forward or backward) of an image, up or down, whichever exists.

    access2thematrix orders rows for display (a down scan reversed); we reverse again so row 0
    is the first line scanned. Lines not scanned (aborted images) are NaN.
    """
    import access2thematrix

    mtrx = access2thematrix.MtrxData()
    traces, message = mtrx.open(str(path))
    if not traces:
        raise ReaderError(f"{path}: {message} (is the _0001.mtrx parameter file beside it?)")
    names = [str(t) for t in traces.values()]
    wanted = [n for n in names if n.startswith(direction)]
    if not wanted:
        raise ReaderError(f"{path}: no {direction} trace; has {', '.join(names)}")
    image, message = mtrx.select_image(wanted[0])
    if not hasattr(image, "data"):
        raise ReaderError(f"{path}: {message}")
    data = np.asarray(image.data, dtype=np.float64)
    if wanted[0].endswith("down"):
        data = data[::-1]
    angle = float(getattr(image, "angle", 0.0) or 0.0)
    bias = mtrx.param.get("EEPA::GapVoltageControl.Voltage", [0.0])[0]
    setpoint = mtrx.param.get("EEPA::Regulator.Setpoint_1", [0.0])[0]
    return Frame(
        data=data,
        scan_size_nm=(float(image.width) * 1e9, float(image.height) * 1e9),
        direction=direction,
        angle_deg=angle,
        bias_V=float(bias),
        setpoint_A=float(setpoint),
        position_nm=(float(image.x_offset) * 1e9, float(image.y_offset) * 1e9),
        frame_id=path.stem,
        source=str(path),
    )

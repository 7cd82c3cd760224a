"""Real scan files → :class:`tipd.frames.Frame`, heights in metres, rows = scan lines.

=========  ===========================  ==================================================
suffix     format                       reader
=========  ===========================  ==================================================
.sxm       Nanonis SXM                  our own (:mod:`.sxm`): nanonispy2 reads only files
                                        with both directions in every channel
.Z_mtrx    Omicron MATRIX (+ _0001.mtrx) access2thematrix
.gwy       Gwyddion 2 (GWYP)            gwyfile
.sm4       RHK SM4                      our own (:mod:`.sm4`): spym needs xarray,
                                        matplotlib and hvplot just to open a file
.npy       NumPy array (+ sidecar .json) numpy with ``allow_pickle=False``
=========  ===========================  ==================================================

Conventions: row 0 is the first line scanned; backward (retrace) lines are flipped so x runs
the same way as forward; lines never scanned are NaN; ``scan_size_nm`` is (width, height).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tipd.frames import Frame
from tipd.readers.error import ReaderError

__all__ = ["SUFFIXES", "ReaderError", "find_scans", "read_any"]

SUFFIXES = (".sxm", ".z_mtrx", ".gwy", ".sm4", ".npy")


def find_scans(folder: Path) -> list[Path]:
    """Files under ``folder`` (recursively) with a suffix :func:`read_any` knows, sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)


def read_any(path: Path | str, direction: str = "forward") -> Frame:
    """Read the topography (z) channel of ``path``, dispatching on its suffix.

    Raises :class:`ReaderError` for unknown suffixes, unreadable or inconsistent files, and
    heights with an infinity or without one finite value (NaN marks a pixel not scanned).
    """
    path = Path(path)
    frame = _read(path, direction)
    if np.isinf(frame.data).any():
        raise ReaderError(f"{path}: infinite heights")
    if not np.isfinite(frame.data).any():
        raise ReaderError(f"{path}: no height at all (every pixel is NaN)")
    return frame


def _read(path: Path, direction: str) -> Frame:
    """The frame of ``path`` as its format's reader gives it."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".sxm":
            from tipd.readers.sxm import read_sxm

            return read_sxm(path, direction=direction)
        if suffix == ".z_mtrx":
            from tipd.readers.matrix import read_matrix

            return read_matrix(path, direction=direction)
        if suffix == ".gwy":
            from tipd.readers.gwy import read_gwy

            return read_gwy(path, direction=direction)
        if suffix == ".sm4":
            from tipd.readers.sm4 import read_sm4

            return read_sm4(path, direction=direction)
        if suffix == ".npy":
            from tipd.readers.npy import read_npy

            return read_npy(path, direction=direction)
    except ReaderError:
        raise
    except FileNotFoundError as exc:
        raise ReaderError(f"{path}: no such file") from exc
    except Exception as exc:  # a third-party reader failing on a bad file
        raise ReaderError(
            f"{path}: not a readable {suffix} file ({type(exc).__name__}: {exc})"
        ) from exc
    raise ReaderError(f"{path}: unknown file type {suffix!r}; known: {', '.join(SUFFIXES)}")

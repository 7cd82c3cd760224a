"""Frames: an image with its scan metadata, and assembly of whole frames from line chunks."""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from tipd.protocol import FrameHeader, ProtocolError


@dataclass
class Frame:
    """One scan frame.

    ``data`` has shape ``(rows, cols)``: row 0 is the first scan line, columns run along the
    fast-scan (x) axis. Heights are in metres (``unit="m"``) or currents in amperes; lines not
    yet scanned are NaN. ``scan_size_nm`` is ``(width, height)`` in nm.
    """

    data: np.ndarray
    scan_size_nm: tuple[float, float]
    microscope: str = "stm"
    frame_id: str = ""
    seq: int = 0
    t_acquired: float = field(default_factory=time.time)
    channel: str = "z"
    direction: str = "forward"
    unit: str = "m"
    angle_deg: float = 0.0
    bias_V: float = 0.0
    setpoint_A: float = 0.0
    surface: str | None = None
    position_nm: tuple[float, float] = (0.0, 0.0)
    source: str | None = None  #: file path or socket the frame came from

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)``."""
        rows, cols = self.data.shape
        return int(rows), int(cols)

    @property
    def pixel_size_nm(self) -> tuple[float, float]:
        """``(dx, dy)`` in nm per pixel."""
        rows, cols = self.shape
        return self.scan_size_nm[0] / cols, self.scan_size_nm[1] / rows

    def header(self, first_row: int = 0, n_rows: int | None = None) -> FrameHeader:
        """The wire header for rows ``first_row .. first_row + n_rows - 1`` (default: all)."""
        rows, cols = self.shape
        return FrameHeader(
            microscope=self.microscope,
            frame_id=self.frame_id,
            seq=self.seq,
            t_acquired=self.t_acquired,
            channel=self.channel,  # type: ignore[arg-type]
            direction=self.direction,  # type: ignore[arg-type]
            shape=(rows, cols),
            first_row=first_row,
            n_rows=rows - first_row if n_rows is None else n_rows,
            dtype="<f4",
            unit=self.unit,  # type: ignore[arg-type]
            scan_size_nm=self.scan_size_nm,
            pixel_count=(cols, rows),
            angle_deg=self.angle_deg,
            bias_V=self.bias_V,
            setpoint_A=self.setpoint_A,
            surface=self.surface,
            position_nm=self.position_nm,
        )

    @classmethod
    def from_header(cls, header: FrameHeader, data: np.ndarray) -> Frame:
        """A frame of the header's whole shape; ``data`` fills rows from ``first_row``."""
        full = np.full(header.shape, np.nan)
        full[header.first_row : header.first_row + header.n_rows] = data
        return cls(
            data=full,
            scan_size_nm=(float(header.scan_size_nm[0]), float(header.scan_size_nm[1])),
            microscope=header.microscope,
            frame_id=header.frame_id,
            seq=header.seq,
            t_acquired=header.t_acquired,
            channel=header.channel,
            direction=header.direction,
            unit=header.unit,
            angle_deg=header.angle_deg,
            bias_V=header.bias_V,
            setpoint_A=header.setpoint_A,
            surface=header.surface,
            position_nm=(float(header.position_nm[0]), float(header.position_nm[1])),
        )

    def replace(self, **changes: object) -> Frame:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


@dataclass
class PartialFrame:
    """A frame being assembled from line chunks: ``rows_seen`` rows filled so far.

    ``frame.data`` holds the rows up to the furthest one received (NaN where none arrived),
    and grows as rows arrive: a sender cannot make tipd hold a whole frame's buffer with one
    line. ``shape`` is the whole frame's ``(rows, cols)``."""

    frame: Frame
    filled: np.ndarray  #: bool, shape (rows,), True where the row has arrived
    shape: tuple[int, int]
    last_row: int = -1  #: index of the newest row received

    def hold(self, stop: int) -> None:
        """Make ``frame.data`` hold rows ``0 .. stop - 1`` at least (doubling, at most the
        whole frame)."""
        have = self.frame.data.shape[0]
        if stop <= have:
            return
        rows = min(self.shape[0], max(stop, 2 * have))
        grown = np.full((rows, self.shape[1]), np.nan)
        grown[:have] = self.frame.data
        self.frame.data = grown

    @property
    def rows_seen(self) -> int:
        return int(self.filled.sum())

    @property
    def complete(self) -> bool:
        return bool(self.filled.all())


class LineAssembler:
    """Builds frames from ``lines.<mic>`` chunks, keyed by (microscope, frame_id).

    At most ``max_open`` frames are kept open per microscope; the oldest is dropped when a newer
    one starts (a scan that was aborted never completes). Chunks that disagree with the frame's
    first header (shape, dtype, scan size) raise :class:`ProtocolError`.
    """

    def __init__(self, max_open: int = 2) -> None:
        self.max_open = max_open
        self._open: OrderedDict[tuple[str, str], PartialFrame] = OrderedDict()

    def add(self, header: FrameHeader, data: np.ndarray) -> PartialFrame:
        """Add one chunk (shape ``(header.n_rows, cols)``); return the frame so far."""
        key = (header.microscope, header.frame_id)
        partial = self._open.get(key)
        stop = header.first_row + header.n_rows
        if partial is None:
            start = header.model_copy(update={"shape": (stop, header.shape[1])})
            frame = Frame.from_header(start, data)
            partial = PartialFrame(frame, np.zeros(header.shape[0], dtype=bool), header.shape)
            self._open[key] = partial
            self._evict(header.microscope)
        elif partial.shape != tuple(header.shape) or partial.frame.scan_size_nm != tuple(
            header.scan_size_nm
        ):
            raise ProtocolError(
                f"header.shape: expected {list(partial.shape)} and scan_size_nm "
                f"{list(partial.frame.scan_size_nm)} as in frame {header.frame_id!r}'s first "
                f"chunk, got {list(header.shape)} and {list(header.scan_size_nm)}"
            )
        partial.hold(stop)
        partial.frame.data[header.first_row : stop] = data
        partial.filled[header.first_row : stop] = True
        partial.last_row = stop - 1
        partial.frame.t_acquired = header.t_acquired
        if partial.complete:
            del self._open[key]
        return partial

    def _evict(self, microscope: str) -> None:
        keys = [k for k in self._open if k[0] == microscope]
        for key in keys[: max(0, len(keys) - self.max_open)]:
            del self._open[key]

    def open_frames(self) -> list[PartialFrame]:
        """Frames still waiting for rows, oldest first."""
        return list(self._open.values())

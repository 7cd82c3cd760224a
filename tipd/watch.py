"""``tipd watch``: bind the frame endpoint as the daemon would, check and show what arrives.

A lab uses it to see that its publisher (the virtual microscope, a bridge, ``tipd replay``)
speaks wire protocol v1: every message is decoded and validated, line chunks are assembled,
each complete frame is summarised, and a contact sheet of the frames can be written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zmq

from tipd.frames import Frame, LineAssembler
from tipd.protocol import ProtocolError, decode_frame
from tipd.sheet import contact_sheet, rows_of


@dataclass
class WatchResult:
    """What a watch saw: complete frames, chunks received, and rejected messages."""

    frames: list[Frame] = field(default_factory=list)
    chunks: int = 0
    errors: list[str] = field(default_factory=list)
    assembled_equal: int = 0  #: complete frames whose line chunks matched them exactly


def watch(
    endpoint: str,
    n_frames: int,
    timeout_s: float,
    echo: bool = True,
) -> WatchResult:
    """Bind a SUB socket at ``endpoint`` and collect ``n_frames`` complete frames (or stop at
    ``timeout_s``). Line chunks are assembled and compared with the complete frame."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 10000)
    sub.bind(endpoint)
    for topic in (b"frame.", b"lines."):
        sub.setsockopt(zmq.SUBSCRIBE, topic)
    assembler = LineAssembler(max_open=4)
    assembled: dict[str, np.ndarray] = {}
    result = WatchResult()
    end = time.monotonic() + timeout_s
    try:
        while len(result.frames) < n_frames and time.monotonic() < end:
            if not sub.poll(100):
                continue
            parts = sub.recv_multipart()
            try:
                kind, header, data = decode_frame(parts)
            except ProtocolError as exc:
                result.errors.append(str(exc))
                if echo:
                    print(f"rejected: {exc}", flush=True)
                continue
            if kind == "lines":
                result.chunks += 1
                partial = assembler.add(header, data)
                if partial.complete and partial.rows_seen == header.shape[0]:
                    assembled[header.frame_id] = partial.frame.data
                continue
            frame = Frame.from_header(header, data)
            result.frames.append(frame)
            whole = assembled.pop(header.frame_id, None)
            same = whole is not None and np.array_equal(whole, frame.data)
            result.assembled_equal += int(same)
            if echo:
                z = frame.data * 1e9
                print(
                    f"{frame.frame_id}  {frame.shape[1]}×{frame.shape[0]} px  "
                    f"{frame.scan_size_nm[0]:.0f} nm  at ({frame.position_nm[0]:.0f}, "
                    f"{frame.position_nm[1]:.0f}) nm  z range {np.ptp(z):.2f} nm  "
                    f"chunks match: {'yes' if same else 'n/a (joined mid-frame)'}",
                    flush=True,
                )
    finally:
        sub.close()
    return result


def write_sheet(frames: list[Frame], path: Path, per_row: int = 6) -> Path:
    """A contact sheet of ``frames`` (flattened line by line), ``per_row`` to a row."""
    rows = rows_of(
        [f.data for f in frames],
        [f.frame_id for f in frames],
        [f.scan_size_nm[0] for f in frames],
        per_row,
    )
    return contact_sheet(rows, path, tile=160, title="tipd watch: frames as received")

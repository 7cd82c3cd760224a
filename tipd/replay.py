"""``tipd replay DIR``: publish a folder of real scans as frames, so a lab can watch tipd on its
own archive. Whole frames at ``rate`` per second, or line by line as a scan would
(``line_time`` seconds per line, in chunks). Unreadable files are reported and skipped."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import zmq

from tipd.frames import Frame
from tipd.protocol import encode_frame
from tipd.readers import ReaderError, find_scans, read_any


def replay(
    folder: Path,
    endpoint: str,
    microscope: str = "replay",
    surface: str | None = None,
    rate: float = 1.0,
    line_time: float | None = None,
    chunk: int = 16,
    loop: bool = False,
) -> int:
    """Publish every scan in ``folder`` to ``endpoint`` (connecting a PUB); returns frames sent."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 2000)
    pub.connect(endpoint)
    time.sleep(0.3)  # let the subscriber's filter arrive
    sent, seq = 0, 0
    try:
        while True:
            for path in find_scans(folder):
                try:
                    frame = read_any(path)
                except ReaderError as exc:
                    print(f"skipped: {exc}", file=sys.stderr)
                    continue
                frame = frame.replace(
                    microscope=microscope,
                    frame_id=f"{path.stem}-{seq}",
                    seq=seq,
                    surface=surface,
                    t_acquired=time.time(),
                )
                seq += 1
                _publish(pub, frame, line_time, chunk)
                sent += 1
                print(
                    f"{frame.frame_id}: {path.name} {frame.shape[1]}×{frame.shape[0]} px",
                    flush=True,
                )
                if line_time is None:
                    time.sleep(1.0 / rate)
            if not loop:
                return sent
    finally:
        pub.close()


def _publish(pub: zmq.Socket[bytes], frame: Frame, line_time: float | None, chunk: int) -> None:
    rows = frame.shape[0]
    if line_time is not None:
        for first in range(0, rows, chunk):
            n = min(chunk, rows - first)
            pub.send_multipart(encode_frame(frame.header(first, n), frame.data[first : first + n]))
            time.sleep(n * line_time)
    pub.send_multipart(encode_frame(frame.header(), frame.data))

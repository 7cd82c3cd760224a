"""A client of the Nanonis TCP programming interface: framing, typed arguments, errors.

Framing (Nanonis "TCP Protocol" document; the layout the ``nanonisTCP`` package speaks):

* request: a 40-byte big-endian header — command name (32 bytes, ASCII, NUL-padded), body size
  (int32), send-response flag (uint16), 2 unused bytes — then the body: the arguments,
  big-endian (int32/uint32/uint16, float32, strings as int32 size + bytes, arrays as
  consecutive values);
* response: the same 40-byte header (body size of the response), then the return values, then
  the error trailer: error status (int32, 0 = no error), error code (int32), description size
  (int32) and the description (as RT engines after 14000 send it and ``nanonisTCP`` reads it).

Why our own client and not ``nanonisTCP`` (which the tests use to check our fake server):
``nanonisTCP`` converts every float through hex strings one at a time (a 512×512 frame grab
takes seconds of CPU), reads replies with ``recv`` loops that hang forever when the controller
dies, has no timeouts, and pulls in matplotlib. This client is ~200 lines over ``struct`` and
numpy, with a timeout on every call and a :class:`NanonisError` that names the call.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import astuple, dataclass

import numpy as np

HEADER = struct.Struct(">32siHH")  #: name, body size, send response, unused
HEADER_SIZE = HEADER.size  # 40
MAX_BODY = 256 * 1024 * 1024  #: refuse replies larger than this (a 4096² float32 frame is 64 MiB)


class NanonisError(Exception):
    """The controller answered a call with an error, or the connection failed."""


def encode_request(name: str, body: bytes = b"") -> bytes:
    """Header + body of one call."""
    raw = name.encode("ascii")
    if len(raw) > 32:
        raise ValueError(f"command name {name!r} longer than 32 bytes")
    return HEADER.pack(raw, len(body), 1, 0) + body


def encode_response(name: str, values: bytes, status: int = 0, message: str = "") -> bytes:
    """Header + return values + error trailer of one reply (what a controller sends)."""
    text = message.encode("utf-8")
    body = values + struct.pack(">iii", status, 0, len(text)) + text
    return HEADER.pack(name.encode("ascii"), len(body), 0, 0) + body


def split_header(header: bytes) -> tuple[str, int]:
    """``(command name, body size)`` of a 40-byte header."""
    if len(header) != HEADER_SIZE:
        raise NanonisError(f"header: expected {HEADER_SIZE} bytes, got {len(header)}")
    raw, size, _, _ = HEADER.unpack(header)
    name = raw.rstrip(b"\0").decode("ascii", errors="replace")
    if not 0 <= size <= MAX_BODY:
        raise NanonisError(f"{name}: body size {size} outside 0–{MAX_BODY} bytes")
    return name, size


class Reader:
    """Reads big-endian values from a body in order; raises :class:`NanonisError` on a short
    body, naming the call."""

    def __init__(self, name: str, body: bytes) -> None:
        self.name, self.body, self.at = name, body, 0

    def _take(self, n: int) -> bytes:
        if self.at + n > len(self.body):
            raise NanonisError(
                f"{self.name}: reply too short: needed {n} bytes at offset {self.at}, "
                f"body has {len(self.body)}"
            )
        out = self.body[self.at : self.at + n]
        self.at += n
        return out

    def raw(self, n: int) -> bytes:
        return self._take(n)

    def i32(self) -> int:
        return int(struct.unpack(">i", self._take(4))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self._take(4))[0])

    def u16(self) -> int:
        return int(struct.unpack(">H", self._take(2))[0])

    def f32(self) -> float:
        return float(struct.unpack(">f", self._take(4))[0])

    def string(self) -> str:
        n = self.i32()
        if n < 0:
            raise NanonisError(f"{self.name}: negative string size {n}")
        return self._take(n).decode("utf-8", errors="replace")

    def f32_array(self, count: int) -> np.ndarray:
        if count < 0:
            raise NanonisError(f"{self.name}: negative array size {count}")
        return np.frombuffer(self._take(4 * count), dtype=">f4").astype(np.float32)

    def error(self) -> None:
        """Read the error trailer; raise when it reports an error."""
        status, code = self.i32(), self.i32()
        message = self.string()
        if status != 0:
            raise NanonisError(f"{self.name} failed (status {status}, code {code}): {message}")


@dataclass
class TipShaperProps:
    """TipShaper.PropsSet/PropsGet, in Nanonis units (s, V, m); ``change_bias`` 0 no change,
    1 yes, 2 no; ``restore_feedback`` 0/1."""

    switch_off_delay_s: float
    change_bias: int
    bias_V: float
    tip_lift_m: float  #: first ramp, relative to the current z (negative: towards the sample)
    lift_time_1_s: float
    bias_lift_V: float
    bias_settling_s: float
    lift_height_m: float  #: second ramp (positive: away from the sample)
    lift_time_2_s: float
    end_wait_s: float
    restore_feedback: int

    FORMAT = ">fIffffffffI"


class NanonisClient:
    """One TCP connection to a Nanonis controller; every call waits at most ``timeout_s``."""

    def __init__(self, host: str, port: int, timeout_s: float = 10.0) -> None:
        self.address = (host, port)
        self.timeout_s = timeout_s
        try:
            self.sock = socket.create_connection(self.address, timeout=timeout_s)
        except OSError as exc:
            raise NanonisError(f"cannot connect to Nanonis at {host}:{port}: {exc}") from exc
        self.sock.settimeout(timeout_s)

    def close(self) -> None:
        self.sock.close()

    def _recv(self, n: int) -> bytes:
        chunks, left = [], n
        while left:
            chunk = self.sock.recv(min(left, 1 << 20))
            if not chunk:
                raise NanonisError(f"Nanonis at {self.address} closed the connection")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def call(self, name: str, body: bytes = b"") -> Reader:
        """Send ``name`` with ``body``; a :class:`Reader` over the reply's body."""
        try:
            self.sock.sendall(encode_request(name, body))
            got, size = split_header(self._recv(HEADER_SIZE))
            reply = self._recv(size)
        except TimeoutError as exc:
            raise NanonisError(f"{name}: no reply within {self.timeout_s} s") from exc
        except OSError as exc:
            raise NanonisError(f"{name}: connection failed: {exc}") from exc
        if got != name:
            raise NanonisError(f"{name}: the reply is for {got!r}")
        return Reader(name, reply)

    def _void(self, name: str, body: bytes = b"") -> None:
        self.call(name, body).error()

    # ------------------------------------------------------------------ bias, z

    def bias_get(self) -> float:
        """Bias (V)."""
        r = self.call("Bias.Get")
        v = r.f32()
        r.error()
        return v

    def bias_pulse(self, width_s: float, bias_V: float, wait: bool = True) -> None:
        """One pulse of ``bias_V`` (absolute) for ``width_s``, z controller held."""
        self._void("Bias.Pulse", struct.pack(">IffHH", int(wait), width_s, bias_V, 1, 2))

    def setpoint_get(self) -> float:
        """Z-controller setpoint (A for a current feedback)."""
        r = self.call("ZCtrl.SetpntGet")
        v = r.f32()
        r.error()
        return v

    def withdraw(self, wait: bool = True, timeout_ms: int = -1) -> None:
        self._void("ZCtrl.Withdraw", struct.pack(">Ii", int(wait), timeout_ms))

    def tip_shaper_props_get(self) -> TipShaperProps:
        r = self.call("TipShaper.PropsGet")
        values = struct.unpack(TipShaperProps.FORMAT, r.raw(44))
        r.error()
        return TipShaperProps(*values)

    def tip_shaper_props_set(self, props: TipShaperProps) -> None:
        self._void("TipShaper.PropsSet", struct.pack(TipShaperProps.FORMAT, *astuple(props)))

    def tip_shaper_start(self, wait: bool = True, timeout_ms: int = -1) -> None:
        self._void("TipShaper.Start", struct.pack(">Ii", int(wait), timeout_ms))

    # ------------------------------------------------------------------ scan

    def scan_action(self, action: str, up: bool = False) -> None:
        """``start``, ``stop``, ``pause`` or ``resume`` the scan (direction down or up)."""
        code = {"start": 0, "stop": 1, "pause": 2, "resume": 3}[action]
        self._void("Scan.Action", struct.pack(">HI", code, int(up)))

    def scan_status(self) -> bool:
        """True while a scan is running."""
        r = self.call("Scan.StatusGet")
        running = r.u32() > 0
        r.error()
        return running

    def scan_frame_get(self) -> tuple[float, float, float, float, float]:
        """``(x, y, width, height)`` of the scan frame in m (centre and size) and its angle (°)."""
        r = self.call("Scan.FrameGet")
        values = (r.f32(), r.f32(), r.f32(), r.f32(), r.f32())
        r.error()
        return values

    def scan_frame_set(self, x: float, y: float, w: float, h: float, angle: float) -> None:
        self._void("Scan.FrameSet", struct.pack(">fffff", x, y, w, h, angle))

    def scan_buffer_get(self) -> tuple[list[int], int, int]:
        """``(channel indexes recorded, pixels per line, lines)``."""
        r = self.call("Scan.BufferGet")
        n = r.i32()
        channels = [r.i32() for _ in range(max(0, n))]
        pixels, lines = r.i32(), r.i32()
        r.error()
        return channels, pixels, lines

    def scan_frame_data_grab(
        self, channel: int, forward: bool = True
    ) -> tuple[str, np.ndarray, bool]:
        """``(channel name, data (lines, pixels) float32 in SI units with NaN where not yet
        scanned, scanning up)`` of the frame in the scan buffer."""
        r = self.call("Scan.FrameDataGrab", struct.pack(">II", channel, int(forward)))
        name = r.string()
        rows, cols = r.i32(), r.i32()
        if not (0 <= rows <= 4096 and 0 <= cols <= 4096):
            raise NanonisError(f"Scan.FrameDataGrab: absurd shape {rows}×{cols}")
        data = r.f32_array(rows * cols).reshape(rows, cols)
        up = r.u32() == 1
        r.error()
        return name, data, up

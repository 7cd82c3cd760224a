"""A fake Nanonis controller for the tests: the TCP programming interface's binary framing on
loopback, backed by the virtual microscope.

It answers the calls the bridge makes (and that ``nanonisTCP`` makes for them), each with the
documented argument layout, and an error trailer (status, code, description) that names what
went wrong — an unknown command, a short body, or a command the microscope refuses. Scanning
advances in real time at the microscope's line time while a scan runs; the scan buffer holds
the frame in progress with NaN where no line was scanned yet, and keeps the finished frame
until the next start, as a Nanonis does with continuous scan off.
"""

from __future__ import annotations

import socketserver
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import astuple
from typing import Any

import numpy as np

from tipd.bridges.nanonis_tcp import (
    HEADER_SIZE,
    NanonisError,
    Reader,
    TipShaperProps,
    encode_response,
    split_header,
)
from tipd.protocol import Command
from tipd.sim.microscope import ScanSettings, VirtualMicroscope

Z_INDEX = 14  #: where the fake keeps Z in its scan buffer (current is 0)


#: bytes of zeroed return values a call sends with an error (its layout stays parseable)
ERROR_VALUES = {
    "Bias.Get": 4,
    "ZCtrl.SetpntGet": 4,
    "TipShaper.PropsGet": 44,
    "Scan.StatusGet": 4,
    "Scan.FrameGet": 20,
    "Scan.BufferGet": 12,  # no channels, 0 pixels, 0 lines
    "Scan.FrameDataGrab": 16,  # empty name, 0 × 0, direction
}


class FakeError(Exception):
    """Answered as a Nanonis error (status 1, code -1, this text)."""


class FakeNanonis:
    """A Nanonis on ``127.0.0.1:port`` (see the module docstring); ``calls`` logs every call."""

    def __init__(
        self, surface: str = "au111", seed: int = 0, pixels: int = 32, line_time_s: float = 0.005
    ) -> None:
        settings = ScanSettings(pixels=pixels, scan_size_nm=30.0, line_time_s=line_time_s)
        self.mic = VirtualMicroscope(surface, seed=seed, settings=settings, start_tip="double")
        self.lock = threading.Lock()
        self.calls: list[str] = []
        self.truth: list[dict[str, Any]] = []
        self.bias = 0.5
        self.setpoint = 100e-12
        self.centre = (0.0, 0.0)  # m
        self.size = (30e-9, 30e-9)
        self.shaper = TipShaperProps(0.05, 2, 0.0, -1e-9, 0.1, 0.0, 0.05, 2e-9, 0.1, 0.05, 1)
        self.running = False
        self.started = 0.0
        self.buffer = np.full((pixels, pixels), np.nan)
        self._ids = 0
        self.handlers: dict[str, Callable[[Reader], bytes]] = {
            "Bias.Get": lambda r: struct.pack(">f", self.bias),
            "Bias.Set": self._bias_set,
            "Bias.Pulse": self._pulse,
            "ZCtrl.SetpntGet": lambda r: struct.pack(">f", self.setpoint),
            "ZCtrl.Withdraw": self._withdraw,
            "TipShaper.PropsGet": lambda r: struct.pack(
                TipShaperProps.FORMAT, *astuple(self.shaper)
            ),
            "TipShaper.PropsSet": self._shaper_set,
            "TipShaper.Start": self._shaper_start,
            "Scan.Action": self._action,
            "Scan.StatusGet": lambda r: struct.pack(">I", int(self._advance())),
            "Scan.FrameGet": lambda r: struct.pack(">fffff", *self.centre, *self.size, 0.0),
            "Scan.FrameSet": self._frame_set,
            "Scan.BufferGet": lambda r: struct.pack(">iiiii", 2, 0, Z_INDEX, pixels, pixels),
            "Scan.FrameDataGrab": self._grab,
        }
        fake = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                fake._serve(self.request)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ framing

    def _serve(self, sock: Any) -> None:
        while True:
            header = _recv(sock, HEADER_SIZE)
            if header is None:
                return
            try:
                name, size = split_header(header)
            except NanonisError:
                return  # not our protocol: hang up as a controller would
            body = _recv(sock, size) or b""
            with self.lock:
                self.calls.append(name)
                sock.sendall(self._dispatch(name, body))

    def _dispatch(self, name: str, body: bytes) -> bytes:
        handler = self.handlers.get(name)
        if handler is None:
            return encode_response(name, b"", 1, f"unknown command {name}")
        try:
            return encode_response(name, handler(Reader(name, body)))
        except (FakeError, NanonisError) as exc:
            # the return values are still sent (zeros), then the error trailer
            return encode_response(name, bytes(ERROR_VALUES.get(name, 0)), 1, str(exc))

    # ------------------------------------------------------------------ microscope

    def _execute(self, action: str, **params: float) -> None:
        self._ids += 1
        done = self.mic.execute(
            Command(
                id=f"nanonis-{self._ids}", microscope=self.mic.name, action=action, params=params
            )  # type: ignore[arg-type]
        )
        if done.record is not None:
            self.truth.append(done.record)
        if done.reply.status != "done":
            raise FakeError(done.reply.detail)

    def _advance(self) -> bool:
        """Scan the lines due by now; True while the scan runs."""
        if not self.running or self.mic.frame is None:
            return False
        rows = self.buffer.shape[0]
        due = min(rows, int((time.monotonic() - self.started) / self.mic.settings.line_time_s))
        if due > self.mic.frame.row:
            first, data = self.mic.scan_lines(due - self.mic.frame.row)
            self.buffer[first : first + len(data)] = data
        if self.mic.frame_complete:
            _, truth = self.mic.finish_frame()
            self.truth.append(truth)
            self.running = False
        return self.running

    def _bias_set(self, r: Reader) -> bytes:
        self.bias = r.f32()
        return b""

    def _pulse(self, r: Reader) -> bytes:
        _wait, width, bias, _hold, rel_abs = r.u32(), r.f32(), r.f32(), r.u16(), r.u16()
        self._execute("pulse", bias_V=bias + (self.bias if rel_abs == 1 else 0.0), width_s=width)
        return b""

    def _withdraw(self, r: Reader) -> bytes:
        r.u32(), r.i32()
        self.running = False
        self._execute("withdraw")
        return b""

    def _shaper_set(self, r: Reader) -> bytes:
        self.shaper = TipShaperProps(*struct.unpack(TipShaperProps.FORMAT, r.raw(44)))
        return b""

    def _shaper_start(self, r: Reader) -> bytes:
        r.u32(), r.i32()
        depth_nm = -self.shaper.tip_lift_m * 1e9
        if depth_nm <= 0:
            raise FakeError(f"tip lift {self.shaper.tip_lift_m} m does not approach the sample")
        bias = self.shaper.bias_V if self.shaper.change_bias == 1 else self.bias
        self._execute("crash", depth_nm=depth_nm, bias_V=bias)
        return b""

    def _action(self, r: Reader) -> bytes:
        action, _direction = r.u16(), r.u32()
        if action == 0:  # start
            if self.mic.withdrawn:
                self._execute("rescan")
            self.mic.start_frame()
            self.buffer[:] = np.nan
            self.running, self.started = True, time.monotonic()
        elif action == 1:  # stop
            self.running = False
            self.mic.frame = None
        return b""

    def _frame_set(self, r: Reader) -> bytes:
        x, y, w, h, _angle = (r.f32() for _ in range(5))
        dx, dy = (x - self.centre[0]) * 1e9, (y - self.centre[1]) * 1e9
        self._execute("move", dx_nm=dx, dy_nm=dy)
        self.centre, self.size = (x, y), (w, h)
        return b""

    def _grab(self, r: Reader) -> bytes:
        channel, _forward = r.u32(), r.u32()
        self._advance()
        if channel == Z_INDEX:
            name, data = b"Z (m)", self.buffer
        elif channel == 0:
            name, data = b"Current (A)", np.where(np.isfinite(self.buffer), 1e-10, np.nan)
        else:
            raise FakeError(f"channel {channel} is not in the scan buffer")
        rows, cols = data.shape
        head = struct.pack(">i", len(name)) + name + struct.pack(">ii", rows, cols)
        return head + data.astype(">f4").tobytes() + struct.pack(">I", 0)


def _recv(sock: Any, n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)

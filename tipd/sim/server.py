"""``tipd sim``: the virtual microscope on the wire.

One thread, one loop, following the pyzmq guide's patterns: a PUB socket that *connects* to the
daemon's frame endpoint (the daemon's SUB binds, so either side may start first) and a ROUTER
bound at the controller endpoint, polled between scan chunks so that commands are executed at
the line where they arrive. Lines are published as ``lines.<mic>`` chunks while the frame is
scanned and the finished frame once more as ``frame.<mic>``. The truth of every frame and
command goes to a JSON-lines log that the daemon never sees.
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

import structlog
import zmq

from tipd.curve import Curve, required
from tipd.protocol import ProtocolError, Reply, decode_command, encode_frame, encode_reply

from .microscope import VirtualMicroscope

log = structlog.get_logger("tipd.sim")

DEFAULT_FRAMES_ENDPOINT = "tcp://127.0.0.1:5550"
DEFAULT_CONTROL_ENDPOINT = "tcp://127.0.0.1:5551"


@dataclass
class SimEndpoints:
    """Where the sim publishes frames (connects) and takes commands (binds)."""

    frames: str = DEFAULT_FRAMES_ENDPOINT
    control: str = DEFAULT_CONTROL_ENDPOINT


class SimServer:
    """Drives a :class:`VirtualMicroscope` in real time on ZeroMQ sockets.

    ``action_time_scale`` multiplies how long actions take (a 200 ms pulse pauses the scan
    200 ms at 1.0; tests use 0). ``max_frames`` stops after that many complete frames.
    """

    def __init__(
        self,
        microscope: VirtualMicroscope,
        endpoints: SimEndpoints | None = None,
        truth_path: Path | None = None,
        max_frames: int | None = None,
        action_time_scale: float = 1.0,
        curve: Curve | None = None,
    ) -> None:
        self.mic = microscope
        self.endpoints = endpoints or SimEndpoints()
        self.truth_path = truth_path
        self.max_frames = max_frames
        self.action_time_scale = action_time_scale
        self.frames_done = 0
        self._stop = False
        self._truth: IO[str] | None = None
        required({"control": self.endpoints.control}, curve, "--curve-secret and --curve-allowed")
        self.curve = curve

    def stop(self, *_: Any) -> None:
        """Ask the loop to end after the current chunk (safe from a signal handler)."""
        self._stop = True

    def _write_truth(self, record: dict[str, Any]) -> None:
        if self._truth is not None:
            self._truth.write(json.dumps(record, default=float) + "\n")
            self._truth.flush()

    def run(self) -> int:
        """Scan until stopped (SIGINT/SIGTERM) or ``max_frames`` frames are done."""
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        pub = ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 500)
        pub.setsockopt(zmq.SNDHWM, 2000)
        router = ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        if self.curve is not None and self.curve.server_key is not None:
            self.curve.client(pub)
        if self.curve is not None and self.curve.allowed is not None:
            self.curve.server(router, "commands")
        pub.connect(self.endpoints.frames)
        router.bind(self.endpoints.control)
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        if self.truth_path is not None:
            self.truth_path.parent.mkdir(parents=True, exist_ok=True)
            if self.truth_path.exists():  # a restart: remember what was already executed
                for line in self.truth_path.read_text().splitlines():
                    record = json.loads(line)
                    if record.get("record") == "command":
                        self.mic.remember(record)
            self._truth = self.truth_path.open("a")
        s = self.mic.settings
        log.info(
            "sim started",
            microscope=self.mic.name,
            surface=self.mic.surface,
            frames=self.endpoints.frames,
            control=self.endpoints.control,
            pixels=s.pixels,
            scan_size_nm=s.scan_size_nm,
            line_time_s=s.line_time_s,
        )
        deadline = time.monotonic()
        try:
            while not self._stop:
                if not self.mic.scanning:
                    if self.mic.withdrawn:
                        self._serve(router, poller, time.monotonic() + 0.1)
                        deadline = time.monotonic()
                        continue
                    self.mic.start_frame()
                first, rows = self.mic.scan_lines(s.chunk_lines)
                frame = self.mic.frame_message(self.mic.frame.data if self.mic.frame else rows)
                pub.send_multipart(encode_frame(frame.header(first, len(rows)), rows))
                deadline = max(deadline + len(rows) * s.line_time_s, time.monotonic() - 1.0)
                self._serve(router, poller, deadline)
                if self.mic.frame_complete:
                    done, truth = self.mic.finish_frame()
                    pub.send_multipart(encode_frame(done.header(), done.data))
                    self._write_truth(truth)
                    self.frames_done += 1
                    log.info("frame", frame_id=done.frame_id, position_nm=done.position_nm)
                    if self.max_frames is not None and self.frames_done >= self.max_frames:
                        break
        finally:
            pub.close()
            router.close()
            if self.curve is not None:
                self.curve.stop()
            if self._truth is not None:
                self._truth.close()
        log.info("sim stopped", frames=self.frames_done)
        return 0

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stop()

    def _serve(self, router: zmq.Socket[bytes], poller: zmq.Poller, until: float) -> None:
        """Answer commands until the monotonic time ``until``."""
        while not self._stop:
            left = until - time.monotonic()
            if left <= 0:
                return
            if not dict(poller.poll(int(left * 1000) + 1)):
                continue
            identity, *parts = router.recv_multipart()
            try:
                command = decode_command(parts)
            except ProtocolError as exc:
                log.warning("bad command", error=str(exc))
                reply = Reply(id="unknown", status="rejected", detail=str(exc), t_done=time.time())
                router.send_multipart([identity, *encode_reply(reply)])
                continue
            done = self.mic.execute(command)
            if done.seconds and self.action_time_scale:
                time.sleep(min(done.seconds * self.action_time_scale, 10.0))
            router.send_multipart([identity, *encode_reply(done.reply)])
            for record in self.mic.dropped:  # the frame the command interrupted, so far
                self._write_truth(record)
            self.mic.dropped.clear()
            if done.record is not None:
                self._write_truth(done.record)
            log.info(
                "command",
                id=command.id,
                action=command.action,
                status=done.reply.status,
                detail=done.reply.detail,
                repeat=done.record is None,
            )

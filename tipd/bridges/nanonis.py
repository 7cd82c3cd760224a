"""``tipd bridge nanonis``: a Nanonis controller on wire protocol v1.

The bridge drives the scan over the Nanonis TCP programming interface
(:mod:`tipd.bridges.nanonis_tcp`) and stands where the virtual microscope stands:

* **frames**: it starts a scan (``Scan.Action``), polls the scan buffer
  (``Scan.FrameDataGrab``) while ``Scan.StatusGet`` says the scan runs, publishes every new
  block of complete lines as ``lines.<mic>`` and the finished frame as ``frame.<mic>``, with the
  real metadata (frame centre and size from ``Scan.FrameGet``, bias from ``Bias.Get``,
  setpoint from ``ZCtrl.SetpntGet``), then starts the next scan. Rows are published in scan
  order (a scan going up is flipped), heights in metres.
* **commands**: a ROUTER where tipd's DEALER connects, like the virtual microscope's:
  ``pulse`` → ``Bias.Pulse`` (absolute bias, z held); ``crash`` → the tip shaper
  (``TipShaper.PropsSet`` with a first ramp of ``-depth`` and a bounded second ramp of
  ``depth + retract`` back up, then ``TipShaper.Start``); ``move`` → ``Scan.FrameSet`` with the
  frame centre shifted; ``rescan`` → a new scan; ``withdraw`` → ``ZCtrl.Withdraw`` (and no
  scanning until a move or rescan). Each command is checked against the bridge's own limits
  (a :class:`tipd.safety.Limits`, through the same check as tipd's gate) before any Nanonis
  call, and a command id is executed once: a resent id gets its first reply again.

Nanonis units are SI (m, V, s, A); the wire's are nm, V, s, A.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import zmq

from tipd.bridges.nanonis_tcp import NanonisClient, NanonisError
from tipd.curve import Curve, required
from tipd.frames import Frame
from tipd.once import RepliesById
from tipd.protocol import (
    CONDITIONING,
    Command,
    CrashParams,
    MoveParams,
    ProtocolError,
    PulseParams,
    Reply,
    decode_command,
    encode_frame,
    encode_reply,
)
from tipd.safety import Limits, SafetyGate

log = structlog.get_logger("tipd.bridge")

#: a crash's second ramp goes back up by the depth plus this (nm), so the tip ends above
#: where it started; the total of both ramps is bounded by the limits
RETRACT_NM = 1.0


@dataclass
class BridgeConfig:
    """Where the bridge publishes and listens, and how it polls (s)."""

    microscope: str = "stm1"
    frames: str = "tcp://127.0.0.1:5550"  #: tipd's frame endpoint (connect)
    control: str = "tcp://127.0.0.1:5551"  #: the bridge's command endpoint (bind)
    channel: int | None = None  #: scan-buffer channel index of Z; None: the first named "Z…"
    surface: str | None = None
    poll_s: float = 0.2
    chunk_lines: int = 16
    limits: Limits = field(default_factory=Limits)
    #: keeps executed command ids across a crash of the bridge (:mod:`tipd.once`); None: in
    #: memory only
    executed: Path | None = None


class NanonisBridge:
    """Frames out and commands in for one Nanonis controller (see the module docstring)."""

    def __init__(
        self,
        client: NanonisClient,
        config: BridgeConfig | None = None,
        ctx: zmq.Context[zmq.Socket[bytes]] | None = None,
        curve: Curve | None = None,
    ) -> None:
        self.nanonis = client
        self.config = config or BridgeConfig()
        required({"control": self.config.control}, curve, "--curve-secret and --curve-allowed")
        self.check = SafetyGate(limits=self.config.limits)
        ctx = ctx or zmq.Context.instance()
        self.pub = ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 500)
        self.router = ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        if curve is not None and curve.server_key is not None:
            curve.client(self.pub)
        if curve is not None and curve.allowed is not None:
            curve.server(self.router, "commands")
        self.curve = curve
        self.pub.connect(self.config.frames)
        self.router.bind(self.config.control)
        self.poller = zmq.Poller()
        self.poller.register(self.router, zmq.POLLIN)
        self.executed = RepliesById(path=self.config.executed)
        self.withdrawn = False
        self.scanning = False
        self.frames_done = 0
        self.seq = 0
        self.sent_rows = 0
        self.meta: dict[str, Any] = {}
        self.channel = self.config.channel if self.config.channel is not None else self._find_z()
        self._stop = False

    def close(self) -> None:
        self.pub.close()
        self.router.close()
        if self.curve is not None:
            self.curve.stop()

    def stop(self, *_: Any) -> None:
        self._stop = True

    def _find_z(self) -> int:
        channels, _, _ = self.nanonis.scan_buffer_get()
        for index in channels:
            name, _, _ = self.nanonis.scan_frame_data_grab(index)
            if name.strip().lower().startswith("z"):
                return index
        raise NanonisError(f"no Z channel among the recorded channels {channels}")

    # ------------------------------------------------------------------ loop

    def serve(self, max_frames: int | None = None) -> int:
        """Scan and answer commands until stopped or ``max_frames`` frames are published."""
        log.info("bridge started", microscope=self.config.microscope, channel=self.channel)
        while not self._stop:
            self.step()
            if max_frames is not None and self.frames_done >= max_frames:
                break
        return 0

    def step(self) -> None:
        """One round: answer waiting commands (for up to ``poll_s``), then the scan's progress."""
        deadline = time.monotonic() + self.config.poll_s
        while (left := deadline - time.monotonic()) > 0:
            if not dict(self.poller.poll(int(left * 1000) + 1)):
                break
            self._answer()
        if self.withdrawn:
            return
        if not self.scanning:
            self._start_scan()
            return
        self._progress()

    def _start_scan(self) -> None:
        x, y, w, h, angle = self.nanonis.scan_frame_get()
        self.meta = {
            "position_nm": (x * 1e9, y * 1e9),
            "scan_size_nm": (w * 1e9, h * 1e9),
            "angle_deg": angle,
            "bias_V": self.nanonis.bias_get(),
            "setpoint_A": self.nanonis.setpoint_get(),
            "frame_id": f"{self.config.microscope}-{time.strftime('%Y%m%dT%H%M%S')}-{self.seq:06d}",
            "seq": self.seq,
        }
        self.seq += 1
        self.sent_rows = 0
        self.nanonis.scan_action("start")
        self.scanning = True

    def _frame(self, data: np.ndarray) -> Frame:
        m = self.meta
        return Frame(
            data=data,
            scan_size_nm=m["scan_size_nm"],
            microscope=self.config.microscope,
            frame_id=m["frame_id"],
            seq=m["seq"],
            t_acquired=time.time(),
            angle_deg=m["angle_deg"],
            bias_V=m["bias_V"],
            setpoint_A=m["setpoint_A"],
            surface=self.config.surface,
            position_nm=m["position_nm"],
        )

    def _progress(self) -> None:
        running = self.nanonis.scan_status()
        _, data, up = self.nanonis.scan_frame_data_grab(self.channel, forward=True)
        if up:
            data = data[::-1]
        data = np.ascontiguousarray(data, dtype=np.float32)
        finite = np.isfinite(data).all(axis=1)
        done = int(np.argmin(finite)) if not finite.all() else len(finite)  # leading full rows
        frame = self._frame(data)
        while done - self.sent_rows >= self.config.chunk_lines or (
            not running and done > self.sent_rows
        ):
            n = min(self.config.chunk_lines, done - self.sent_rows)
            rows = data[self.sent_rows : self.sent_rows + n]
            self.pub.send_multipart(encode_frame(frame.header(self.sent_rows, n), rows))
            self.sent_rows += n
        if running:
            return
        self.scanning = False
        if done == data.shape[0] and done > 0:
            self.pub.send_multipart(encode_frame(frame.header(), data))
            self.frames_done += 1
            log.info("frame", frame_id=frame.frame_id, position_nm=frame.position_nm)
        else:
            log.warning("scan ended incomplete", frame_id=frame.frame_id, rows=done)

    # ------------------------------------------------------------------ commands

    def _answer(self) -> None:
        identity, *parts = self.router.recv_multipart()
        try:
            command = decode_command(parts)
        except ProtocolError as exc:
            log.warning("bad command", error=str(exc))
            reply = Reply(id="unknown", status="rejected", detail=str(exc), t_done=time.time())
            self.router.send_multipart([identity, *encode_reply(reply)])
            return
        reply = self.execute(command)
        self.router.send_multipart([identity, *encode_reply(reply)])

    def execute(self, command: Command) -> Reply:
        """Check ``command`` against the bridge's limits and carry it out once."""
        earlier = self.executed.get(command.id)
        if earlier is not None:
            return earlier
        refusal = self.check.limit_violation(command)
        if command.microscope != self.config.microscope:
            refusal = f"this is microscope {self.config.microscope!r}, not {command.microscope!r}"
        elif not refusal and self.withdrawn and command.action in CONDITIONING:
            refusal = "the tip is withdrawn: move or rescan to approach first"
        self.executed.begin(command.id)  # before acting: a crash from here on is not redone
        if refusal:
            reply = Reply(id=command.id, status="rejected", detail=refusal, t_done=time.time())
        else:
            try:
                detail = self._carry_out(command)
                reply = Reply(id=command.id, status="done", detail=detail, t_done=time.time())
            except NanonisError as exc:
                reply = Reply(id=command.id, status="failed", detail=str(exc), t_done=time.time())
        self.executed.remember(reply)
        log.info(
            "command",
            id=command.id,
            action=command.action,
            status=reply.status,
            detail=reply.detail,
        )
        return reply

    def _carry_out(self, command: Command) -> str:
        p = command.params
        if isinstance(p, PulseParams):
            self.nanonis.bias_pulse(p.width_s, p.bias_V, wait=True)
            return f"Bias.Pulse {p.bias_V:+.2f} V for {p.width_s * 1e3:.0f} ms"
        if isinstance(p, CrashParams):
            props = self.nanonis.tip_shaper_props_get()
            props.change_bias, props.bias_V = 1, p.bias_V
            props.tip_lift_m = -p.depth_nm * 1e-9
            props.lift_height_m = (p.depth_nm + RETRACT_NM) * 1e-9
            props.restore_feedback = 1
            self.nanonis.tip_shaper_props_set(props)
            self.nanonis.tip_shaper_start(wait=True)
            return f"TipShaper: {p.depth_nm:.2f} nm in, {p.depth_nm + RETRACT_NM:.2f} nm back"
        if isinstance(p, MoveParams):
            x, y, w, h, angle = self.nanonis.scan_frame_get()
            self._stop_scan()
            nx, ny = x + p.dx_nm * 1e-9, y + p.dy_nm * 1e-9
            self.nanonis.scan_frame_set(nx, ny, w, h, angle)
            self.withdrawn = False
            return f"Scan.FrameSet centre ({nx * 1e9:.1f}, {ny * 1e9:.1f}) nm"
        if command.action == "rescan":
            self._stop_scan()
            self.withdrawn = False
            return "rescanning"
        if command.action == "withdraw":
            self._stop_scan()
            self.nanonis.withdraw(wait=True)
            self.withdrawn = True
            return "ZCtrl.Withdraw; move or rescan to approach"
        raise NanonisError(f"unhandled action {command.action}")

    def _stop_scan(self) -> None:
        """End the frame in progress (it is not published) so the next scan starts afresh."""
        if self.scanning:
            self.nanonis.scan_action("stop")
            self.scanning = False

"""The Nanonis bridge over real TCP against a fake Nanonis (tests/fake_nanonis.py), and the same
fake held to the unmodified ``nanonisTCP`` client from PyPI."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import zmq

from tests.conftest import free_port
from tests.fake_nanonis import Z_INDEX, FakeNanonis
from tipd.bridges.nanonis import BridgeConfig, NanonisBridge
from tipd.bridges.nanonis_tcp import NanonisClient, NanonisError, encode_request
from tipd.frames import LineAssembler
from tipd.protocol import Command, decode_frame, decode_reply, encode_command


@pytest.fixture
def fake() -> Iterator[FakeNanonis]:
    server = FakeNanonis(pixels=32, line_time_s=0.004)
    yield server
    server.close()


# ---------------------------------------------------------------- the unmodified client


def test_fake_satisfies_the_unmodified_nanonistcp_client(fake: FakeNanonis) -> None:
    nt = pytest.importorskip("nanonisTCP")
    from nanonisTCP.Bias import Bias
    from nanonisTCP.Scan import Scan
    from nanonisTCP.TipShaper import TipShaper
    from nanonisTCP.ZController import ZController

    conn = nt.nanonisTCP("127.0.0.1", fake.port)
    try:
        bias, scan, zc, shaper = Bias(conn), Scan(conn), ZController(conn), TipShaper(conn)
        bias.Set(1.25)
        assert bias.Get() == pytest.approx(1.25)
        assert zc.SetpntGet() == pytest.approx(100e-12)
        n, channels, pixels, lines = scan.BufferGet()
        assert (n, channels, pixels, lines) == (2, [0, Z_INDEX], 32, 32)
        _, _, w, h, _ = scan.FrameGet()
        assert (w, h) == pytest.approx((30e-9, 30e-9))
        scan.Action("start", "down")
        assert scan.StatusGet() is True
        time.sleep(0.05)
        name, data, direction = scan.FrameDataGrab(Z_INDEX, 1)
        assert name == "Z (m)" and data.shape == (32, 32) and direction == "down"
        assert np.isfinite(data[0]).all() and np.isnan(data[-1]).all()  # mid-scan
        bias.Pulse(0.2, 3.0, z_hold=1, rel_abs=2)
        props = shaper.PropsGet()
        shaper.PropsSet(Tip_lift=-1.5e-9, Bias=0.02, Change_bias=1)
        assert shaper.PropsGet()[3] == pytest.approx(-1.5e-9)
        shaper.Start(1, -1)
        scan.FrameSet(100e-9, 0.0, w, h)
        assert scan.FrameGet()[0] == pytest.approx(100e-9)
        zc.Withdraw(1, -1)
        with pytest.raises(Exception, match="withdrawn"):  # the microscope's own refusal
            bias.Pulse(0.2, 3.0)
        with pytest.raises(Exception, match="outside"):
            scan.Action("start")
            bias.Pulse(0.2, 11.0, rel_abs=2)
        assert props[3] == pytest.approx(-1e-9)
    finally:
        conn.close_connection()
    actions = [r["action"] for r in fake.truth if r.get("record") == "command"]
    assert actions[:4] == ["pulse", "crash", "move", "withdraw"]
    crash = next(r for r in fake.truth if r.get("action") == "crash")
    assert crash["params"]["depth_nm"] == pytest.approx(1.5)


# ---------------------------------------------------------------- our client


def test_our_client_reads_frames_and_names_errors(fake: FakeNanonis) -> None:
    c = NanonisClient("127.0.0.1", fake.port, timeout_s=5)
    try:
        assert c.scan_buffer_get() == ([0, Z_INDEX], 32, 32)
        c.scan_action("start")
        time.sleep(0.2)
        assert c.scan_status() is False  # 32 lines at 4 ms: done
        name, data, up = c.scan_frame_data_grab(Z_INDEX)
        assert name == "Z (m)" and data.shape == (32, 32) and not up
        assert np.isfinite(data).all() and 1e-12 < np.ptp(data) < 1e-8  # metres
        with pytest.raises(NanonisError, match=r"Bias.Pulse failed .*outside ±10"):
            c.bias_pulse(0.1, 12.0)
        with pytest.raises(NanonisError, match="channel 3 is not in the scan buffer"):
            c.scan_frame_data_grab(3)
        with pytest.raises(NanonisError, match=r"unknown command Nope\.Get"):
            c.call("Nope.Get").error()
    finally:
        c.close()


def test_our_client_times_out_on_a_silent_controller() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        c = NanonisClient("127.0.0.1", server.getsockname()[1], timeout_s=0.3)
        with pytest.raises(NanonisError, match=r"Bias.Get: no reply within 0.3 s"):
            c.bias_get()
        c.close()
    with pytest.raises(NanonisError, match="cannot connect"):
        NanonisClient("127.0.0.1", 1, timeout_s=0.3)
    with pytest.raises(ValueError, match="longer than 32 bytes"):
        encode_request("X" * 33)


# ---------------------------------------------------------------- the bridge


class Harness:
    """The bridge in a thread, tipd's two sockets on the other side."""

    def __init__(self, fake: FakeNanonis, free_port: int, control_port: int) -> None:
        self.ctx = zmq.Context()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.bind(f"tcp://127.0.0.1:{free_port}")
        self.config = BridgeConfig(
            frames=f"tcp://127.0.0.1:{free_port}",
            control=f"tcp://127.0.0.1:{control_port}",
            surface="au111",
            poll_s=0.02,
            chunk_lines=8,
        )
        self.bridge: NanonisBridge | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(fake.port,), daemon=True)
        self.thread.start()
        assert self.ready.wait(10)
        self.dealer = self.ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.connect(self.config.control)

    def _run(self, port: int) -> None:
        client = NanonisClient("127.0.0.1", port, timeout_s=5)
        self.bridge = NanonisBridge(client, self.config, ctx=self.ctx)
        self.ready.set()
        try:
            self.bridge.serve()
        finally:
            self.bridge.close()
            client.close()

    def command(self, command: Command, timeout_s: float = 10.0) -> str:
        self.dealer.send_multipart(encode_command(command))
        assert self.dealer.poll(int(timeout_s * 1000)), "no reply"
        reply = decode_reply(self.dealer.recv_multipart())
        assert reply.id == command.id
        return f"{reply.status}: {reply.detail}"

    def close(self) -> None:
        assert self.bridge is not None
        self.bridge.stop()
        self.thread.join(10)
        self.sub.close()
        self.dealer.close()
        self.ctx.term()


def cmd(action: str, id: str | None = None, **params: float) -> Command:
    extra = {"id": id} if id else {}
    return Command(microscope="stm1", action=action, params=params, **extra)  # type: ignore[arg-type]


def test_bridge_publishes_lines_and_frames_and_obeys_commands(fake: FakeNanonis) -> None:
    h = Harness(fake, free_port(), free_port())
    try:
        assembler = LineAssembler()
        whole, built = [], {}
        deadline = time.monotonic() + 30
        while len(whole) < 2 and time.monotonic() < deadline:
            if not h.sub.poll(1000):
                continue
            kind, header, data = decode_frame(h.sub.recv_multipart())
            if kind == "frame":
                whole.append((header, data))
            else:
                partial = assembler.add(header, data)
                if partial.complete:
                    built[header.frame_id] = partial.frame.data.copy()
        assert len(whole) == 2, "no complete frames from the bridge"
        header, data = whole[0]
        assert header.microscope == "stm1" and header.surface == "au111"
        assert header.scan_size_nm == pytest.approx((30.0, 30.0)) and header.bias_V == 0.5
        assert tuple(header.shape) == (32, 32) and np.isfinite(data).all()
        assert np.array_equal(built[header.frame_id], data), "chunks differ from the frame"

        assert h.command(cmd("pulse", bias_V=3.0, width_s=0.2)).startswith("done: Bias.Pulse")
        assert h.command(cmd("crash", depth_nm=1.2, bias_V=0.02)).startswith("done: TipShaper")
        crash = [r for r in fake.truth if r.get("action") == "crash"][-1]
        assert crash["params"]["depth_nm"] == pytest.approx(1.2, abs=1e-6)
        move = cmd("move", id="m-1", dx_nm=150.0, dy_nm=-50.0)
        assert h.command(move).startswith("done: Scan.FrameSet centre (150.0, -50.0)")
        assert h.command(move).startswith("done: Scan.FrameSet")  # resent id: not moved again
        assert fake.centre == pytest.approx((150e-9, -50e-9))
        # beyond the bridge's own limits: refused before any Nanonis call
        calls = len(fake.calls)
        assert h.command(cmd("pulse", bias_V=9.0, width_s=0.2)).startswith("rejected: limit:")
        assert h.command(cmd("crash", depth_nm=3.5, bias_V=0.02)).startswith("rejected: limit:")
        assert (
            "Bias.Pulse" not in fake.calls[calls:] and "TipShaper.Start" not in fake.calls[calls:]
        )
        assert h.command(cmd("withdraw")).startswith("done: ZCtrl.Withdraw")
        assert fake.mic.withdrawn
        assert "withdrawn" in h.command(cmd("pulse", bias_V=3.0, width_s=0.2))
    finally:
        h.close()
    executed = [r["action"] for r in fake.truth if r.get("record") == "command"]
    assert executed == ["pulse", "crash", "move", "withdraw"]


def test_bridge_cli_runs_against_the_fake(fake: FakeNanonis, tipd_exe: list[str]) -> None:
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"frame.")
    frames, control = free_port(), free_port()
    sub.bind(f"tcp://127.0.0.1:{frames}")
    proc = subprocess.Popen(
        [
            *(*tipd_exe, "bridge", "nanonis", "--port", str(fake.port), "--max-frames", "2"),
            *("--frames", f"tcp://127.0.0.1:{frames}", "--control", f"tcp://127.0.0.1:{control}"),
            *("--poll", "0.02"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert sub.poll(30000), "no frame from tipd bridge"
        _, header, _ = decode_frame(sub.recv_multipart())
        assert tuple(header.shape) == (32, 32)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        sub.close()
        ctx.term()
    bad = subprocess.run(
        [*tipd_exe, "bridge", "nanonis", "--port", "1", "--timeout", "0.5"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "cannot connect to Nanonis at 127.0.0.1:1" in bad.stderr

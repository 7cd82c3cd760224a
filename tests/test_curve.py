"""CURVE on every endpoint: only allowed keys get frames in, events out or commands through;
refused peers are counted; binding beyond loopback without keys is refused."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq

from tests.conftest import free_port
from tests.fake_nanonis import FakeNanonis
from tests.test_daemon import frame, model_dir
from tipd.bridges.nanonis import BridgeConfig, NanonisBridge
from tipd.bridges.nanonis_tcp import NanonisClient
from tipd.curve import Curve, CurveError, generate, loopback, required
from tipd.protocol import (
    Command,
    MoveParams,
    PulseParams,
    decode_event,
    decode_reply,
    encode_command,
    encode_frame,
)

PULSE = PulseParams(bias_V=3.0, width_s=0.2)
MOVE = MoveParams(dx_nm=100.0, dy_nm=0.0)


def test_loopback_endpoints() -> None:
    for ep in ("tcp://127.0.0.1:5550", "tcp://localhost:1", "tcp://[::1]:5", "ipc:///tmp/x"):
        assert loopback(ep), ep
    for ep in ("tcp://0.0.0.0:5550", "tcp://*:5550", "tcp://eth0:5550", "tcp://10.0.0.2:1"):
        assert not loopback(ep), ep
    with pytest.raises(CurveError, match=r"frames tcp://\*:5550 bind beyond loopback"):
        required({"frames": "tcp://*:5550", "events": "tcp://127.0.0.1:1"}, None, "keys")
    required({"frames": "tcp://127.0.0.1:5550"}, None, "keys")  # loopback: optional


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Key pairs for tipd, the microscope, a dashboard and a stranger, and the allow-lists:
    tipd accepts the microscope and the dashboard; the microscope accepts tipd."""
    root = tmp_path_factory.mktemp("keys")
    for name in ("tipd", "mic", "dash", "stranger"):
        generate(root, name)
    for folder, names in (("tipd-allowed", ("mic", "dash")), ("mic-allowed", ("tipd",))):
        (root / folder).mkdir()
        for n in names:
            (root / folder / f"{n}.key").write_bytes((root / f"{n}.key").read_bytes())
    assert (root / "tipd.key_secret").stat().st_mode & 0o077 == 0  # secret: owner only
    return root


def client(
    ctx: zmq.Context[zmq.Socket[bytes]], kind: int, keys: Path, me: str, server: str
) -> zmq.Socket[bytes]:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    Curve.from_files(keys / f"{me}.key_secret", server_key=keys / f"{server}.key").client(sock)
    return sock


def commands_need_a_key(endpoint: str, keys: Path, executed: Callable[[], list[str]]) -> None:
    """A stranger's and a keyless DEALER get no reply and execute nothing; tipd's key works."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        stranger = client(ctx, zmq.DEALER, keys, "stranger", "mic")
        plain = ctx.socket(zmq.DEALER)
        plain.setsockopt(zmq.LINGER, 0)
        tipd = client(ctx, zmq.DEALER, keys, "tipd", "mic")
        for sock in (stranger, plain, tipd):
            sock.connect(endpoint)
        for sock in (stranger, plain):
            pulse = Command(microscope="stm1", action="pulse", params=PULSE)
            sock.send_multipart(encode_command(pulse), flags=zmq.NOBLOCK)
        assert not stranger.poll(1500) and not plain.poll(100), "a command got through unkeyed"
        ok = Command(microscope="stm1", action="move", params=MOVE)
        tipd.send_multipart(encode_command(ok))
        assert tipd.poll(10000), "tipd's key was refused"
        reply = decode_reply(tipd.recv_multipart())
        assert reply.id == ok.id and reply.status == "done"
    finally:
        ctx.destroy(linger=0)
    assert executed() == ["move"]


def test_sim_takes_commands_only_from_allowed_keys(
    keys: Path, tipd_exe: list[str], tmp_path: Path
) -> None:
    control, frames = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    truth = tmp_path / "truth.jsonl"
    proc = subprocess.Popen(
        [
            *(*tipd_exe, "sim", "--control", control, "--frames", frames, "--pixels", "32"),
            *("--truth", str(truth), "--curve-secret", str(keys / "mic.key_secret")),
            *("--curve-allowed", str(keys / "mic-allowed")),
            *("--curve-server-key", str(keys / "tipd.key")),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def executed() -> list[str]:
        records = [json.loads(x) for x in truth.read_text().splitlines()]
        return [r["action"] for r in records if r["record"] == "command"]

    try:
        time.sleep(0.5)
        commands_need_a_key(control, keys, executed)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "CURVE client refused" in out


def test_bridge_takes_commands_only_from_allowed_keys(keys: Path) -> None:
    fake = FakeNanonis(pixels=16, line_time_s=0.004)
    control = f"tcp://127.0.0.1:{free_port()}"
    config = BridgeConfig(control=control, frames=f"tcp://127.0.0.1:{free_port()}", poll_s=0.02)
    curve = Curve.from_files(keys / "mic.key_secret", keys / "mic-allowed", keys / "tipd.key")
    box: dict[str, NanonisBridge] = {}
    ready = threading.Event()

    def run() -> None:
        box["b"] = NanonisBridge(NanonisClient("127.0.0.1", fake.port), config, curve=curve)
        ready.set()
        box["b"].serve()
        box["b"].close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        commands_need_a_key(
            control, keys, lambda: [r["action"] for r in fake.truth if r["record"] == "command"]
        )
        assert curve.refused["commands"] >= 1
    finally:
        box["b"].stop()
        thread.join(10)
        fake.close()
    other = FakeNanonis()
    try:
        with pytest.raises(CurveError, match="bind beyond loopback"):
            NanonisBridge(
                NanonisClient("127.0.0.1", other.port),
                BridgeConfig(control=f"tcp://0.0.0.0:{free_port()}"),
            )
    finally:
        other.close()


@pytest.fixture
def curve_daemon(
    keys: Path, tiny_model: Path, tipd_exe: list[str], tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    frames, events = (f"tcp://127.0.0.1:{free_port()}" for _ in range(2))
    config = tmp_path / "tipd.toml"
    config.write_text(f"""
journal = "{tmp_path / "journal.sqlite"}"
health_s = 0.2
[endpoints]
frames = "{frames}"
events = "{events}"
operator = "tcp://127.0.0.1:{free_port()}"
control = "tcp://127.0.0.1:{free_port()}"
[security]
secret_key = "{keys / "tipd.key_secret"}"
allowed_keys = "{keys / "tipd-allowed"}"
""")
    env = {**os.environ, "TIPD_MODELS_DIR": str(model_dir(tiny_model, tmp_path / "models"))}
    proc = subprocess.Popen(
        [*tipd_exe, "run", "--config", str(config)],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    yield proc, frames, events
    proc.terminate()
    proc.communicate(timeout=30)


def test_daemon_counts_and_ignores_frames_from_strangers(
    keys: Path, curve_daemon: tuple[subprocess.Popen[str], str, str]
) -> None:
    _, frames, events = curve_daemon
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        dash = client(ctx, zmq.SUB, keys, "dash", "tipd")
        dash.setsockopt(zmq.SUBSCRIBE, b"")
        dash.connect(events)
        snoop = ctx.socket(zmq.SUB)  # no key: never hears anything
        snoop.setsockopt(zmq.SUBSCRIBE, b"")
        snoop.connect(events)
        stranger = client(ctx, zmq.PUB, keys, "stranger", "tipd")
        stranger.connect(frames)
        mic = client(ctx, zmq.PUB, keys, "mic", "tipd")
        mic.connect(frames)

        def health(timeout: float = 60.0) -> dict[str, int]:
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                if dash.poll(500):
                    parts = dash.recv_multipart()
                    if parts[0] == b"health":
                        counters: dict[str, int] = decode_event(parts).model_dump()["counters"]
                        return counters
            raise AssertionError("no health event for the allowed dashboard")

        health()
        time.sleep(0.5)
        for k in range(5):
            f = frame(frame_id=f"stranger-{k}")
            stranger.send_multipart(encode_frame(f.header(), f.data.astype(np.float32)))
        f = frame(frame_id="ours")
        mic.send_multipart(encode_frame(f.header(), f.data.astype(np.float32)))
        end = time.monotonic() + 30
        counters = health()
        while counters.get("frames", 0) < 1 and time.monotonic() < end:
            counters = health()
        assert counters["frames"] == 1, counters  # the allowed publisher's frame, only
        assert counters["curve_refused_frames"] >= 1, counters
        assert not snoop.poll(200), "a subscriber without a key heard the events"
    finally:
        ctx.destroy(linger=0)


def test_daemon_refuses_to_bind_beyond_loopback_without_keys(
    tiny_model: Path, tipd_exe: list[str], tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "TIPD_MODELS_DIR": str(model_dir(tiny_model, tmp_path / "models")),
        "TIPD_ENDPOINTS__FRAMES": f"tcp://0.0.0.0:{free_port()}",
        "TIPD_JOURNAL": str(tmp_path / "j.sqlite"),
    }
    out = subprocess.run([*tipd_exe, "run"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "bind beyond loopback, so CURVE is required" in out.stdout + out.stderr


def test_keys_never_overwrites_a_pair_and_says_so(tmp_path: Path, tipd_exe: list[str]) -> None:
    first = subprocess.run(
        [*tipd_exe, "keys", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert first.returncode == 0
    secret = (tmp_path / "tipd.key_secret").read_bytes()
    again = subprocess.run(
        [*tipd_exe, "keys", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 2 and "exists" in again.stderr and "--replace" in again.stderr
    assert "Traceback" not in again.stderr and len(again.stderr.strip().splitlines()) == 1
    assert (tmp_path / "tipd.key_secret").read_bytes() == secret
    replaced = subprocess.run(
        [*tipd_exe, "keys", str(tmp_path), "--replace"], capture_output=True, text=True, timeout=60
    )
    assert replaced.returncode == 0 and (tmp_path / "tipd.key_secret").read_bytes() != secret


def test_a_secret_key_others_can_read_is_loaded_with_a_warning(
    keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tipd.curve import Curve

    loose = tmp_path / "loose.key_secret"
    loose.write_bytes((keys / "tipd.key_secret").read_bytes())
    loose.chmod(0o644)
    Curve.from_files(loose)
    out = capsys.readouterr()
    assert "secret key readable by others" in out.out + out.err

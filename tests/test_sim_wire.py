"""``tipd sim`` as a subprocess over real ZeroMQ sockets on loopback."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zmq

from tests.conftest import free_port
from tipd.frames import LineAssembler
from tipd.protocol import Command, FrameHeader, Reply, decode_frame, decode_reply, encode_command


@dataclass
class Sim:
    proc: subprocess.Popen[bytes]
    sub: zmq.Socket[bytes]
    control: str
    truth: Path

    def messages(self, seconds: float) -> Iterator[tuple[str, FrameHeader, np.ndarray]]:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.sub.poll(50):
                yield decode_frame(self.sub.recv_multipart())

    def next_header(self, seconds: float = 10.0) -> FrameHeader:
        for _, header, _ in self.messages(seconds):
            return header
        raise AssertionError("no frame message from the sim")

    def truth_records(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.truth.read_text().splitlines()]


def _drain(sub: zmq.Socket[bytes]) -> set[str]:
    """Read what has arrived; the frame ids it held."""
    seen = set()
    while sub.poll(0):
        seen.add(decode_frame(sub.recv_multipart())[1].frame_id)
    return seen


def _first_of_a_new_frame(sim: Sim, old: set[str]) -> FrameHeader:
    """The first message of a frame not among ``old``: chunks of a frame begun before a
    command may still be on their way when its reply comes."""
    for _, header, _ in sim.messages(10.0):
        if header.frame_id not in old:
            return header
    raise AssertionError("no new frame from the sim")


@pytest.fixture
def sim(tmp_path: Path, tipd_exe: list[str]) -> Iterator[Sim]:
    frames_port, control_port = free_port(), free_port()
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 100000)
    sub.bind(f"tcp://127.0.0.1:{frames_port}")  # the daemon's side binds; the sim connects
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    truth = tmp_path / "truth.jsonl"
    proc = subprocess.Popen(
        [
            *tipd_exe,
            "sim",
            "--pixels",
            "48",
            "--line-time",
            "0.001",
            "--chunk-lines",
            "8",
            "--frames",
            f"tcp://127.0.0.1:{frames_port}",
            "--control",
            f"tcp://127.0.0.1:{control_port}",
            "--truth",
            str(truth),
            "--action-time-scale",
            "0",
            "--seed",
            "4",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        running = Sim(proc, sub, f"tcp://127.0.0.1:{control_port}", truth)
        yield running
        proc = running.proc  # a test may have killed the sim and started it again
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        sub.close()
        assert code == 0, proc.stdout.read().decode() if proc.stdout else ""


def test_line_chunks_reassemble_into_the_complete_frames(sim: Sim) -> None:
    assembler = LineAssembler(max_open=4)
    assembled: dict[str, np.ndarray] = {}
    compared = 0
    for kind, header, data in sim.messages(20.0):
        if kind == "lines":
            partial = assembler.add(header, data)
            if partial.complete:
                assembled[header.frame_id] = partial.frame.data.copy()
        elif header.frame_id in assembled:
            np.testing.assert_array_equal(assembled.pop(header.frame_id), data)
            assert header.surface == "au111" and header.shape == (48, 48)
            assert header.scan_size_nm == (30.0, 30.0)
            compared += 1
            if compared == 4:
                break
    assert compared == 4


def send(dealer: zmq.Socket[bytes], command: Command) -> Reply:
    dealer.send_multipart(encode_command(command))
    assert dealer.poll(10000), f"no reply to {command.action}"
    return decode_reply(dealer.recv_multipart())


def test_commands_over_a_real_dealer_socket(sim: Sim) -> None:
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(sim.control)
    try:
        sim.next_header()  # the sim is up and scanning

        # out of the microscope's own limits: refused, nothing executed
        bad = Command(microscope="stm1", action="pulse", params={"bias_V": 50.0, "width_s": 0.1})
        reply = send(dealer, bad)
        assert reply.status == "rejected" and "bias_V 50.0 outside" in reply.detail

        # move: later frames are at the new position
        move = Command(microscope="stm1", action="move", params={"dx_nm": 250.0, "dy_nm": 40.0})
        before = {sim.next_header().frame_id}
        assert send(dealer, move).status == "done"
        before |= _drain(sim.sub)
        assert _first_of_a_new_frame(sim, before).position_nm == (250.0, 40.0)

        # pulse: the tip goes from one state to another, as the reply says
        pulse = Command(microscope="stm1", action="pulse", params={"bias_V": 4.0, "width_s": 0.05})
        reply = send(dealer, pulse)
        assert reply.status == "done"
        assert re.search(r"tip (sharp|blunt|double|multiple|contaminated) -> \w+", reply.detail)

        pulse_reply = reply
        # resent with the same id: the same reply, executed once
        assert send(dealer, pulse) == reply

        # crash: a crater the truth log knows about
        crash = Command(microscope="stm1", action="crash", params={"depth_nm": 1.0, "bias_V": 0.02})
        reply = send(dealer, crash)
        assert reply.status == "done" and "crater" in reply.detail

        # rescan: the next chunk starts a new frame at row 0
        old = {sim.next_header().frame_id}
        assert send(dealer, Command(microscope="stm1", action="rescan", params={})).status == "done"
        old |= _drain(sim.sub)
        assert _first_of_a_new_frame(sim, old).first_row == 0

        # withdraw: silence until an approach (rescan)
        assert (
            send(dealer, Command(microscope="stm1", action="withdraw", params={})).status == "done"
        )
        _drain(sim.sub)
        assert list(sim.messages(0.5)) == []
        refused = send(
            dealer,
            Command(microscope="stm1", action="pulse", params={"bias_V": 2.0, "width_s": 0.1}),
        )
        assert refused.status == "rejected" and "withdrawn" in refused.detail
        assert send(dealer, Command(microscope="stm1", action="rescan", params={})).status == "done"
        sim.next_header()

        # a malformed command gets a rejection that says why
        dealer.send_multipart([b'{"v":1,"microscope":"stm1","action":"pulse","params":{}}'])
        assert dealer.poll(5000)
        garbage = decode_reply(dealer.recv_multipart())
        assert garbage.status == "rejected" and "params.bias_V" in garbage.detail
    finally:
        dealer.close()

    records = [r for r in sim.truth_records() if r["record"] == "command"]
    ids = [r["id"] for r in records]
    assert ids.count(pulse.id) == 1, "a resent id must be executed once"
    executed = {r["action"]: r for r in records if r["status"] == "done"}
    assert executed["move"]["position_nm"] == [250.0, 40.0]
    before, after = executed["pulse"]["tip_before"], executed["pulse"]["tip_after"]
    assert f"tip {before['kind']} -> {after['kind']}" in pulse_reply.detail  # type: ignore[index]
    assert set(executed) == {"move", "pulse", "crash", "rescan", "withdraw"}
    frames = [r for r in sim.truth_records() if r["record"] == "frame"]
    assert frames and all("labels" in r and "kind" in r for r in frames)


def test_commands_from_two_clients_get_their_own_replies(sim: Sim) -> None:
    ctx = zmq.Context.instance()
    a, b = ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)
    for s in (a, b):
        s.setsockopt(zmq.LINGER, 0)
        s.connect(sim.control)
    try:
        ca = Command(
            id=str(uuid.uuid4()),
            microscope="stm1",
            action="move",
            params={"dx_nm": 1.0, "dy_nm": 0.0},
        )
        cb = Command(
            id=str(uuid.uuid4()),
            microscope="stm1",
            action="move",
            params={"dx_nm": 2.0, "dy_nm": 0.0},
        )
        a.send_multipart(encode_command(ca))
        b.send_multipart(encode_command(cb))
        assert a.poll(10000) and b.poll(10000)
        assert decode_reply(a.recv_multipart()).id == ca.id
        assert decode_reply(b.recv_multipart()).id == cb.id
    finally:
        a.close()
        b.close()


def test_replay_publishes_real_scans_whole_and_line_by_line(
    fixtures_dir: Path, tmp_path: Path, tipd_exe: list[str]
) -> None:
    import shutil

    from tipd.readers import read_any

    folder = tmp_path / "archive"
    folder.mkdir()
    for name in ("FeSe_topography.sxm", "test_single_image.gwy"):
        shutil.copy(fixtures_dir / name, folder / name)
    (folder / "broken.sxm").write_bytes(b"junk")
    port = free_port()
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.bind(f"tcp://127.0.0.1:{port}")
    whole = {}
    chunks = 0
    try:
        # poll while replay runs: libzmq attaches a new peer only when the socket is used
        proc = subprocess.Popen(
            [
                *tipd_exe,
                "replay",
                str(folder),
                "--frames",
                f"tcp://127.0.0.1:{port}",
                "--line-time",
                "0.0001",
                "--chunk-lines",
                "64",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        end = time.monotonic() + 60
        while time.monotonic() < end and (proc.poll() is None or sub.poll(0)):
            if sub.poll(100):
                kind, header, data = decode_frame(sub.recv_multipart())
                if kind == "frame":
                    whole[header.frame_id.rsplit("-", 1)[0]] = data
                else:
                    chunks += 1
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0 and "broken.sxm" in err
    finally:
        sub.close()
    assert set(whole) == {"FeSe_topography", "test_single_image"}
    assert chunks == 224 // 64 + 1 + 512 // 64
    expected = read_any(folder / "FeSe_topography.sxm").data.astype(np.float32)
    np.testing.assert_array_equal(whole["FeSe_topography"], expected)


def test_a_restarted_controller_does_not_execute_a_resent_command(
    tmp_path: Path, tipd_exe: list[str]
) -> None:
    control = f"tcp://127.0.0.1:{free_port()}"
    truth = tmp_path / "truth.jsonl"
    argv = [
        *tipd_exe,
        "sim",
        "--pixels",
        "32",
        "--line-time",
        "0.001",
        "--frames",
        f"tcp://127.0.0.1:{free_port()}",
        "--control",
        control,
        "--truth",
        str(truth),
        "--action-time-scale",
        "0",
    ]
    move = Command(microscope="stm1", action="move", params={"dx_nm": 50.0, "dy_nm": 0.0})
    replies = []
    for _ in range(2):  # the same command id to the first and to the restarted controller
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        dealer = zmq.Context.instance().socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(control)
        try:
            replies.append(send(dealer, move))
        finally:
            dealer.close()
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    assert replies[0] == replies[1] and replies[0].status == "done"
    executed = [
        json.loads(x)
        for x in truth.read_text().splitlines()
        if json.loads(x)["record"] == "command"
    ]
    assert [e["id"] for e in executed] == [move.id]


def test_an_id_is_executed_once_across_a_crash_of_the_sim(sim: Sim) -> None:
    """The sim writes each id to its executed file before acting and the reply before
    answering. Killed and started again (without even its truth log), it answers a resent id
    from that file, and an id it had begun but never answered is not carried out again."""
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(sim.control)
    executed = sim.truth.with_name(sim.truth.stem + ".executed.jsonl")
    try:
        sim.next_header()
        move = Command(microscope="stm1", action="move", params={"dx_nm": 40.0, "dy_nm": 0.0})
        first = send(dealer, move)
        assert first.status == "done"
        sim.proc.kill()
        sim.proc.wait(10)
        sim.truth.unlink()
        torn = Command(microscope="stm1", action="pulse", params={"bias_V": 2.0, "width_s": 0.1})
        with executed.open("a") as fh:  # killed after beginning this one, before its reply
            fh.write(json.dumps({"begin": True, "id": torn.id, "t": 1.7e9}) + "\n")
            fh.write('{"reply": {"id": "half a li')  # and mid-write
        sim.proc = subprocess.Popen(sim.proc.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert send(dealer, move) == first  # answered from the file, not moved again
        interrupted = send(dealer, torn)
        assert interrupted.status == "failed" and "interrupted" in interrupted.detail
        time.sleep(0.3)
    finally:
        dealer.close()
    commands = [r for r in sim.truth_records() if r["record"] == "command"]
    assert commands == []  # the restarted sim executed nothing

"""``tipd run`` as a subprocess over real sockets: bad input, model checks, reload, actions."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zmq

from tests.conftest import free_port
from tipd.frames import Frame
from tipd.journal import query
from tipd.protocol import decode_event, encode_frame


@dataclass
class Daemon:
    proc: subprocess.Popen[str]
    frames: str
    control: str
    events: str
    journal: Path
    pub: zmq.Socket[bytes]
    sub: zmq.Socket[bytes]

    def send(self, parts: list[bytes]) -> None:
        self.pub.send_multipart(parts)

    def events_until(self, want: str, seconds: float = 15.0) -> list[tuple[str, dict[str, object]]]:
        """Collect events until one whose topic starts with ``want`` arrives."""
        got: list[tuple[str, dict[str, object]]] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.sub.poll(100):
                parts = self.sub.recv_multipart()
                topic = parts[0].decode()
                got.append((topic, decode_event(parts).model_dump()))
                if topic.startswith(want):
                    return got
        raise AssertionError(f"no {want!r} event in {seconds} s; got {[t for t, _ in got]}")

    def decide(self, frame_ids: Iterable[str]) -> list[tuple[str, dict[str, object]]]:
        """Send stm1 a whole frame (``GOOD``'s heights) under each id, waiting for each one's
        state event; the events received meanwhile."""
        got = []
        for frame_id in frame_ids:
            self.send(encode_frame(frame(frame_id=frame_id).header(), GOOD.data))
            got += self.events_until("state.stm1", 10.0)
        return got


def frame(
    microscope: str = "stm1",
    frame_id: str = "f1",
    rows: int = 32,
    surface: str | None = None,
    data: np.ndarray | None = None,
) -> Frame:
    z = np.random.default_rng(0).normal(0, 1e-10, (rows, rows)) if data is None else data
    return Frame(
        data=z, scan_size_nm=(10.0, 10.0), microscope=microscope, frame_id=frame_id, surface=surface
    )


def model_dir(tiny_model: Path, root: Path, thresholds: float | None = None) -> Path:
    """A models folder whose default ``generic`` is the tiny model. ``thresholds``: every
    label's threshold set to it, and no class desirable, so that every decision names a class
    and is one the policy acts on, whatever the few-step tiny model makes of a frame."""
    target = root / "generic"
    shutil.copytree(tiny_model, target)
    if thresholds is not None:
        manifest = json.loads((target / "manifest.json").read_text())
        manifest["thresholds"] = {k: thresholds for k in manifest["thresholds"]}
        manifest["desirable"] = []
        (target / "manifest.json").write_text(json.dumps(manifest))
    return root


def start(
    tmp_path: Path,
    models: Path,
    tipd_exe: list[str],
    extra: str = "",
    control: str | None = None,
    microscopes: str = '["stm1", "stm2"]',
) -> Daemon:
    ports = [free_port() for _ in range(3)]
    frames, control_ep, events = (f"tcp://127.0.0.1:{p}" for p in ports)
    control_ep = control or control_ep
    journal = tmp_path / "journal.sqlite"
    config = tmp_path / "tipd.toml"
    live = "" if "advisory" in extra else "advisory = false\n"
    config.write_text(f"""{live}
journal = "{journal}"
microscopes = {microscopes}
window_lines = 16
window_every = 8
health_s = 0.2
{extra}
[endpoints]
frames = "{frames}"
control = "{control_ep}"
events = "{events}"
operator = "tcp://127.0.0.1:{free_port()}"
preview = "tcp://127.0.0.1:{free_port()}"

[archive]
folder = "{tmp_path / "archive"}"
""")
    env = {**os.environ, "TIPD_MODELS_DIR": str(models)}
    proc = subprocess.Popen(
        [*tipd_exe, "run", "--config", str(config)],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(events)
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.connect(frames)
    d = Daemon(proc, frames, control_ep, events, journal, pub, sub)
    d.events_until("health", 60.0)  # up and serving
    time.sleep(0.3)  # let the frame subscription reach our publisher
    return d


def stop(d: Daemon) -> str:
    d.proc.send_signal(signal.SIGTERM)
    out, _ = d.proc.communicate(timeout=30)
    d.pub.close()
    d.sub.close()
    assert d.proc.returncode == 0, out
    return out


@pytest.fixture
def daemon(tmp_path: Path, tiny_model: Path, tipd_exe: list[str]) -> Iterator[Daemon]:
    d = start(tmp_path, model_dir(tiny_model, tmp_path / "models"), tipd_exe)
    yield d
    stop(d)


GOOD = frame()


def _header(**changes: object) -> bytes:
    h = json.loads(encode_frame(GOOD.header(), GOOD.data.astype(np.float32))[1])
    h.update(changes)
    return json.dumps(h).encode()


BAD = [
    # (messages whose topic is not frame.* or lines.* never arrive: the SUB filter drops them)
    ("garbage bytes", [b"frame.\x00\xff garbage"], "expected 3 parts"),
    ("garbage parts", [b"frame.stm1", b"\xff\xfe{", b"\x01"], "expected UTF-8 JSON"),
    ("wrong part count", [b"frame.stm1", _header()], "expected 3 parts"),
    ("payload length", [b"frame.stm1", _header(), b"\0" * 100], "payload: expected 4096 bytes"),
    ("NaN data", encode_frame(GOOD.header(), np.full((32, 32), np.nan)), "at least one finite"),
    ("infinite data", encode_frame(GOOD.header(), np.full((32, 32), np.inf)), "infinity"),
    (
        "zero size",
        [b"frame.stm1", _header(shape=[0, 32], n_rows=0, pixel_count=[32, 0]), b""],
        "header.shape.0",
    ),
    (
        "100k x 100k",
        [
            b"frame.stm1",
            _header(shape=[100000, 100000], n_rows=100000, pixel_count=[100000, 100000]),
            b"",
        ],
        "header.shape.0",
    ),
    (
        "NaN metadata",
        [b"frame.stm1", _header(bias_V=float("nan")), GOOD.data.astype("<f4").tobytes()],
        "non-finite",
    ),
]


def test_bad_input_gets_an_error_event_and_the_daemon_keeps_serving(daemon: Daemon) -> None:
    for name, parts, needle in BAD:
        daemon.send(parts)
        events = daemon.events_until("error", 10.0)
        assert [t for t, _ in events if t.startswith("state")] == [], name
        detail = str(events[-1][1]["detail"])
        assert needle in detail, (name, detail)
    daemon.send(encode_frame(frame(microscope="stm9").header(), GOOD.data))
    err = daemon.events_until("error.stm9", 10.0)[-1][1]
    assert err["what"] == "microscope" and "unknown microscope 'stm9'" in str(err["detail"])
    daemon.send(encode_frame(frame(surface="graphene").header(), GOOD.data))
    err = daemon.events_until("error.stm1", 10.0)[-1][1]
    assert err["what"] == "surface" and "graphene" in str(err["detail"])
    # ... and still classified with the default model, like every good frame after the garbage
    state = daemon.events_until("state.stm1", 10.0)[-1][1]
    assert state["frame_id"] == "f1" and state["rows_seen"] == 32
    daemon.send(encode_frame(frame(frame_id="f2").header(), GOOD.data))
    assert daemon.events_until("state.stm1", 10.0)[-1][1]["frame_id"] == "f2"
    health = daemon.events_until("health", 5.0)[-1][1]
    counters = health["counters"]
    assert isinstance(counters, dict) and counters["errors"] >= len(BAD) + 2
    rows = query(daemon.journal, "frames", last=100)
    assert sum(r["status"] == "rejected" for r in rows) >= len(BAD) + 1
    assert any(r["status"] == "classified" and r["frame_id"] == "f2" for r in rows)


def test_line_chunks_are_classified_mid_frame(daemon: Daemon) -> None:
    f = frame(rows=64, frame_id="streamed")
    f.data[37:] += 2e-10  # the tip got shorter at line 37
    seen: list[int] = []
    jumps: dict[int, list[int]] = {}
    for first in range(0, 64, 8):  # paced like a scan, so each chunk is the newest message
        daemon.send(encode_frame(f.header(first, 8), f.data[first : first + 8]))
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            if daemon.sub.poll(50):
                parts = daemon.sub.recv_multipart()
                if parts[0] == b"state.stm1":
                    ev = decode_event(parts).model_dump()
                    seen.append(int(ev["rows_seen"]))
                    jumps[seen[-1]] = ev["line_jumps"]
                    break
    # windows are decided as lines arrive, before the frame is complete
    assert len(seen) >= 3 and seen == sorted(seen) and seen[0] < 64 and min(seen) >= 16
    # the line jump is reported at its frame row by the first window that holds it
    assert all(j == [] for n, j in jumps.items() if n <= 37), jumps
    assert jumps[min(n for n in jumps if n > 38)] == [37], jumps


def test_a_tampered_model_stops_the_start(
    tmp_path: Path, tiny_model: Path, tipd_exe: list[str]
) -> None:
    models = model_dir(tiny_model, tmp_path / "models")
    graph = models / "generic" / "ensemble.onnx"
    graph.write_bytes(graph.read_bytes()[:-1])
    code, out = start_fails(tmp_path, models, tipd_exe)
    assert code == 2
    assert "sha256" in out and "does not match" in out


def start_fails(
    tmp_path: Path,
    models: Path,
    tipd_exe: list[str],
    journal: Path | None = None,
    extra: str = "",
) -> tuple[int, str]:
    """``tipd run`` with ``models``, ``journal`` (default: one in ``tmp_path``) and ``extra``
    settings, expected to stop at its start: the exit code and everything it printed."""
    config = tmp_path / "t.toml"
    config.write_text(f'journal = "{journal or tmp_path / "j.sqlite"}"\n{extra}')
    run = subprocess.run(
        [*tipd_exe, "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TIPD_MODELS_DIR": str(models)},
    )
    return run.returncode, run.stdout + run.stderr


def test_sighup_with_a_broken_model_keeps_the_old_one(
    tmp_path: Path, tiny_model: Path, tipd_exe: list[str]
) -> None:
    models = model_dir(tiny_model, tmp_path / "models")
    d = start(tmp_path, models, tipd_exe)
    try:
        graph = models / "generic" / "ensemble.onnx"
        graph.write_bytes(b"not onnx")
        d.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        d.send(encode_frame(GOOD.header(), GOOD.data))
        assert d.events_until("state.stm1", 10.0)[-1][1]["frame_id"] == "f1"
        health = d.events_until("health", 5.0)[-1][1]
        assert health["counters"]["reload_failed"] == 1  # type: ignore[index]
    finally:
        out = stop(d)
    assert "reload failed; keeping the old settings and models" in out


ACTIVE = """
[policy]
confidence = 0.0
consecutive = 1
[safety]
cooldown_s = 0.0
forbidden_radius_nm = 0.0
max_fruitless = 100
max_actions_per_hour = 1000
[controller]
timeout_s = 0.3
retries = 1
"""


def test_controller_down_does_not_stall_frames(
    tmp_path: Path, tiny_model: Path, tipd_exe: list[str]
) -> None:
    models = model_dir(tiny_model, tmp_path / "models", thresholds=0.0)
    # 2 s a try, 2 tries: the six frames have 4 s to be decided before the first command
    # gives up, room enough on a loaded machine
    slow = ACTIVE.replace("timeout_s = 0.3", "timeout_s = 2.0")
    d = start(
        tmp_path, models, tipd_exe, extra=slow, control=f"tcp://127.0.0.1:{free_port()}"
    )  # nobody listens there
    try:
        stream: list[tuple[str, dict[str, object]]] = []
        stream += d.decide(f"g{k}" for k in range(6))
        end = time.monotonic() + 15
        while time.monotonic() < end and not any(_failed(b) for _, b in stream):
            stream += d.events_until("action.stm1", 15.0)
        first_failure = next(i for i, (_, b) in enumerate(stream) if _failed(b))
        states = [i for i, (t, _) in enumerate(stream) if t == "state.stm1"]
        # every frame was decided before the first command gave up waiting: nothing stalled
        assert len(states) == 6 and max(states) < first_failure
        reply = stream[first_failure][1]["reply"]
        assert isinstance(reply, dict) and "no reply" in str(reply["detail"])
    finally:
        stop(d)
    commands = query(d.journal, "commands", last=50)
    assert commands and all(c["status"] in ("sent", "failed") for c in commands)
    assert any(c["status"] == "failed" for c in commands)


def _failed(body: dict[str, object]) -> bool:
    reply = body.get("reply")
    return isinstance(reply, dict) and reply.get("status") == "failed"


@pytest.mark.parametrize("mode", ["send", "advisory", "limited", "slow"])
def test_decisions_command_the_virtual_microscope(
    tmp_path: Path, tiny_model: Path, tipd_exe: list[str], mode: str
) -> None:
    models = model_dir(tiny_model, tmp_path / "models", thresholds=0.0)
    control = f"tcp://127.0.0.1:{free_port()}"
    extra = f"advisory = {str(mode == 'advisory').lower()}\n" + ACTIVE
    if mode == "limited":  # every rung of every ladder asks for more than these limits
        extra = extra.replace(
            "[safety]", "[safety]\nmax_bias_V = 1.0\nmax_move_nm = 10.0\nmax_crash_nm = 0.5"
        )
    if mode == "slow":  # actions take 0.6–1.5 s; tipd resends every 0.2 s, up to 20 times
        extra = extra.replace("timeout_s = 0.3\nretries = 1", "timeout_s = 0.2\nretries = 20")
    d = start(tmp_path, models, tipd_exe, extra=extra, control=control)
    truth = tmp_path / "truth.jsonl"
    sim = subprocess.Popen(
        [
            *tipd_exe,
            "sim",
            "--pixels",
            "32",
            "--line-time",
            "0.002",
            "--chunk-lines",
            "8",
            "--frames",
            d.frames,
            "--control",
            control,
            "--truth",
            str(truth),
            "--action-time-scale",
            "3" if mode == "slow" else "0",
            "--start-tip",
            "double",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        replies = []
        end = time.monotonic() + 30
        while len(replies) < 2 and time.monotonic() < end:
            _, body = d.events_until("action.stm1", 30.0)[-1]
            if body.get("reply"):
                replies.append(body["reply"])
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(10)
        log = stop(d)
    commands = query(d.journal, "commands", last=100)
    executed = [
        json.loads(line)
        for line in truth.read_text().splitlines()
        if json.loads(line)["record"] == "command"
    ]
    if mode == "limited":
        assert commands and all(c["status"] == "refused" for c in commands)
        assert all("limit:" in c["detail"] for c in commands)
        assert executed == []  # refused at the gate, never sent
    elif mode == "advisory":
        assert all(c["status"] == "advisory" for c in commands) and commands
        assert executed == []  # nothing reached the microscope
        assert all(r["status"] == "rejected" and "advisory" in r["detail"] for r in replies)
    else:
        done = [c for c in commands if c["status"] == "done"]
        assert done, commands
        assert {c["id"] for c in done} <= {e["id"] for e in executed}
        assert all(math.isfinite(e["t"]) for e in executed)
        ids = [e["id"] for e in executed]
        assert len(ids) == len(set(ids))  # resent after a timeout, executed once
        if mode == "slow":
            import re

            tries = [int(t) for t in re.findall(r"tries=(\d+)", log)]
            assert tries and max(tries) >= 2, log[-2000:]


def test_systemd_ready_and_sigkill_leaves_a_whole_journal(
    tmp_path: Path, tiny_model: Path, tipd_exe: list[str]
) -> None:
    import socket
    import sqlite3

    notify = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify))
    listener.settimeout(30)
    os.environ["NOTIFY_SOCKET"] = str(notify)
    try:
        d = start(tmp_path, model_dir(tiny_model, tmp_path / "models"), tipd_exe)
    finally:
        del os.environ["NOTIFY_SOCKET"]
    messages = [listener.recv(256).decode()]
    assert "READY=1" in messages[0]
    for k in range(20):  # frames in flight when the daemon dies
        d.send(
            encode_frame(frame(frame_id=f"k{k}", rows=64).header(), np.zeros((64, 64)) + k * 1e-10)
        )
    d.events_until("state.stm1", 10.0)
    d.proc.kill()
    d.proc.wait(10)
    db = sqlite3.connect(str(d.journal))
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("SELECT COUNT(*) FROM frames WHERE frame_id LIKE 'k%'").fetchone()[0] >= 1
    db.close()
    again = start(tmp_path, tmp_path / "models", tipd_exe)  # same journal, same config
    again.send(encode_frame(frame(frame_id="after").header(), GOOD.data))
    assert again.events_until("state.stm1", 10.0)[-1][1]["frame_id"] == "after"
    stop(again)
    listener.close()
    assert query(again.journal, "frames", last=1)[-1]["frame_id"] == "after"


def test_under_overload_the_newest_frame_wins_and_nothing_is_lost(daemon: Daemon) -> None:
    z = np.random.default_rng(1).normal(0, 1e-10, (256, 256))
    for k in range(200):
        daemon.send(encode_frame(frame(frame_id=f"burst{k}", rows=256, data=z).header(), z))
    end = time.monotonic() + 30
    rows: list[dict[str, object]] = []
    while time.monotonic() < end:
        rows = [
            r
            for r in query(daemon.journal, "frames", last=1000)
            if str(r["frame_id"]).startswith("burst")
        ]
        if len(rows) == 200:
            break
        time.sleep(0.2)
    assert len(rows) == 200  # every frame received is journaled, classified or skipped
    status = {str(r["frame_id"]): r["status"] for r in rows}
    assert status["burst199"] == "classified"
    assert "skipped" in status.values()
    assert set(status.values()) <= {"classified", "skipped"}


@pytest.mark.parametrize("act_on_windows", [False, True])
def test_window_decisions_drive_the_policy_only_when_configured(
    tmp_path: Path, tiny_model: Path, tipd_exe: list[str], act_on_windows: bool
) -> None:
    """Frames that never complete are decided window by window; with every decision a fault
    (thresholds 0, one decision enough), those windows act only with ``act_on_windows``."""
    models = model_dir(tiny_model, tmp_path / "models", thresholds=0.0)
    extra = f"act_on_windows = {str(act_on_windows).lower()}\n" + ACTIVE
    d = start(tmp_path, models, tipd_exe, extra=extra)
    try:
        stream: list[tuple[str, dict[str, object]]] = []
        for k in range(3):
            f = frame(rows=64, frame_id=f"part{k}")
            for first in range(0, 48, 8):  # 48 of 64 lines: the frame is never whole
                d.send(encode_frame(f.header(first, 8), f.data[first : first + 8]))
                time.sleep(0.05)
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            if d.sub.poll(100):
                parts = d.sub.recv_multipart()
                stream.append((parts[0].decode(), decode_event(parts).model_dump()))
    finally:
        stop(d)
    states = [b for t, b in stream if t.startswith("state.")]
    actions = [b for t, b in stream if t.startswith("action.")]
    assert states and all(int(str(s["rows_seen"])) < 64 for s in states)  # windows only
    assert bool(actions) == act_on_windows, [a["command"] for a in actions]


def test_frames_the_model_does_not_know_are_reported_and_never_acted_on(
    tmp_path: Path, fitted_tiny: Path, tipd_exe: list[str]
) -> None:
    """Every decision names a class (thresholds 0, nothing desirable), so familiar frames
    would act after three; frames of a scale the model never saw (5 µm) are unfamiliar: state
    events and journal rows say so, a health event says tipd is blind, nothing is sent."""
    root = tmp_path / "models"
    model_dir(fitted_tiny, root, thresholds=0.0)
    d = start(tmp_path, root, tipd_exe, extra="blind_after = 3")
    try:
        z = np.random.default_rng(0).normal(0, 1e-10, (64, 64))
        seen: list[tuple[str, dict[str, object]]] = []
        for i in range(4):
            f = Frame(data=z, scan_size_nm=(5000.0, 5000.0), microscope="stm1", frame_id=f"u{i}")
            d.send(encode_frame(f.header(), f.data))
            seen += d.events_until("state.stm1", 10.0)
            state = seen[-1][1]
            assert state["state"] == "unfamiliar" and state["familiarity"] == 0.0
            assert state["confidence"] == 1.0  # 1 − familiarity
        time.sleep(0.5)
        seen += d.events_until("health", 5.0)
        # the third unfamiliar frame raised a health event of its own, at once
        assert [e["blind"] for t, e in seen if t == "health" and e["microscope"] == "stm1"] == [
            {"stm1": 3}
        ]
        assert any(e["blind"] == {"stm1": 4} for t, e in seen if t == "health")  # and it stays
        assert not [t for t, _ in seen if t.startswith("action")]
        rows = query(d.journal, "frames", last=10)
        assert [r["state"] for r in rows if r["kind"] == "frame"] == ["unfamiliar"] * 4
        assert all(r["familiarity"] == 0.0 for r in rows if r["kind"] == "frame")
        assert query(d.journal, "commands", last=10) == []
    finally:
        out = stop(d)
    assert "blind" in out


def test_restarted_on_a_spot_it_conditioned_tipd_moves_away_then_conditions_there(
    tmp_path: Path, tiny_model: Path, tipd_exe: list[str]
) -> None:
    """The gate's spots survive a restart; a pulse refused on one leads to a move to the nearest
    free area, and the next pulse is sent there (nobody answers the controller endpoint: the
    commands are sent and fail, which is all this needs)."""
    models = model_dir(tiny_model, tmp_path / "models", thresholds=0.0)
    spot = ACTIVE.replace("forbidden_radius_nm = 0.0", "forbidden_radius_nm = 20.0")
    control = f"tcp://127.0.0.1:{free_port()}"

    def run(frame_ids: list[str], at: tuple[float, float]) -> list[dict[str, object]]:
        d = start(tmp_path, models, tipd_exe, extra=spot, control=control)
        try:
            t = time.time()
            for frame_id in frame_ids:
                f = frame(frame_id=frame_id).replace(position_nm=at)
                d.send(encode_frame(f.header(), GOOD.data))
                d.events_until("state.stm1", 10.0)
            time.sleep(0.5)
        finally:
            stop(d)
        rows = query(d.journal, "commands", last=100)
        return sorted((c for c in rows if float(c["t_sent"]) >= t), key=lambda c: c["t_sent"])

    first = run(["a1"], (0.0, 0.0))
    assert [c["action"] for c in first] == ["pulse", "move"]
    second = run(["b1"], (0.0, 0.0))  # restarted where it pulsed
    assert [(c["action"], c["status"]) for c in second[:2]] == [
        ("pulse", "refused"),
        ("move", second[1]["status"]),
    ]
    assert "forbidden area" in str(second[0]["detail"]) and second[1]["status"] != "refused"
    move = json.loads(str(second[1]["params"]))
    third = run(["c1"], (move["dx_nm"], move["dy_nm"]))  # where the move took it
    assert third and third[0]["action"] == "pulse" and third[0]["status"] != "refused"

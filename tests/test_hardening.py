"""What one message, one file or one disk can do to a running tipd: never stop it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import zmq

from tests.conftest import free_port
from tests.test_daemon import ACTIVE, GOOD, frame, model_dir, start, start_fails, stop
from tipd.config import Settings
from tipd.journal import Journal, query
from tipd.protocol import encode_frame


def _fill_up(journal: Journal) -> None:
    """Make the journal's database full, as a full disk would: SQLite refuses to grow it."""
    pages = journal.db.execute("PRAGMA page_count").fetchone()[0]
    journal.db.execute(f"PRAGMA max_page_count = {pages}")


def test_a_full_journal_keeps_its_rows_in_memory_and_writes_them_when_it_can(
    tmp_path: Path,
) -> None:
    j = Journal(tmp_path / "j.sqlite")
    assert (tmp_path / "j.sqlite").stat().st_mode & 0o777 == 0o600  # its owner's only
    j.frame("stm1", "before", 0, "frame", 8, "classified", "good")
    _fill_up(j)
    for k in range(300):  # far more than fits in what is left of the file
        j.frame("stm1", f"full{k}", k, "frame", 8, "classified", "good", detail="x" * 500)
    assert j.failures >= 1 and len(j.pending) > 0 and "full" in j.last_error
    j.db.execute("PRAGMA max_page_count = 1073741823")  # space again
    j.frame("stm1", "after", 301, "frame", 8, "classified", "good")
    assert len(j.pending) == 0 and j.dropped == 0 and j.last_error == ""
    j.close()
    ids = [r["frame_id"] for r in query(tmp_path / "j.sqlite", last=1000)]
    assert ids == ["before", *[f"full{k}" for k in range(300)], "after"]  # in order, none lost


def test_a_row_that_can_never_be_written_is_dropped_not_retried_forever(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    j.frame("stm1", "huge", 2**64, "frame", 8, "classified")  # beyond SQLite's integers
    j.frame("stm1", "next", 1, "frame", 8, "classified")
    assert j.dropped == 1 and j.failures == 1 and not j.pending
    assert [r["frame_id"] for r in query(tmp_path / "j.sqlite")] == ["next"]


def in_process(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch, **extra: Any
) -> Settings:
    """Settings for a daemon run in this process on free loopback ports, with the tiny model."""
    monkeypatch.setenv("TIPD_MODELS_DIR", str(model_dir(tiny_model, tmp_path / "models")))
    names = ("frames", "control", "events", "operator")
    endpoints = {n: f"tcp://127.0.0.1:{free_port()}" for n in names}
    return Settings(journal=tmp_path / "j.sqlite", endpoints=endpoints, **extra)


def sockets(settings: Settings) -> tuple[zmq.Socket[bytes], zmq.Socket[bytes]]:
    """A PUB connected to the daemon's frame endpoint, and a SUB to all its events."""
    ctx = zmq.Context.instance()
    pub, sub = ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
    pub.connect(settings.endpoints.frames)
    sub.connect(settings.endpoints.events)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    return pub, sub


def test_the_daemon_goes_on_when_its_journal_is_full_and_catches_up(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process, over real sockets: the journal fills up mid-stream; frames are still
    decided and published, health counts the failed writes, and every row lands once there
    is room again."""
    from tipd.protocol import decode_event
    from tipd.service import Daemon

    settings = in_process(tmp_path, tiny_model, monkeypatch, health_s=0.1)

    async def scenario() -> dict[str, int]:
        daemon = Daemon(settings)
        serving = asyncio.create_task(daemon.run())
        pub, sub = sockets(settings)
        await asyncio.sleep(0.5)
        states: list[str] = []
        counters: dict[str, int] = {}

        async def send(frame_id: str) -> None:
            pub.send_multipart(encode_frame(frame(frame_id=frame_id).header(), GOOD.data))
            end = time.monotonic() + 10
            while time.monotonic() < end:
                await asyncio.sleep(0.01)
                while sub.poll(0):
                    parts = sub.recv_multipart()
                    event = decode_event(parts).model_dump()
                    if parts[0].startswith(b"state."):
                        states.append(event["frame_id"])
                    if parts[0] == b"health":
                        counters.update(event["counters"])
                if frame_id in states:
                    return

        await send("a0")
        _fill_up(daemon.journal)
        for k in range(20):
            await send(f"full{k}")
        await asyncio.sleep(0.3)
        await send("full-last")
        daemon.journal.db.execute("PRAGMA max_page_count = 1073741823")
        await send("b0")
        daemon.stopping.set()
        await serving
        pub.close()
        sub.close()
        assert states == ["a0", *[f"full{k}" for k in range(20)], "full-last", "b0"]
        return counters

    counters = asyncio.run(scenario())
    assert counters["journal_failures"] >= 1 and counters["journal_pending"] >= 1
    rows = query(tmp_path / "j.sqlite", last=1000)
    ids = [r["frame_id"] for r in rows if r["kind"] == "frame"]
    assert ids == ["a0", *[f"full{k}" for k in range(20)], "full-last", "b0"]


def test_an_exception_while_handling_one_message_is_an_error_event_not_an_exit(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: the model raises on one frame (as any bug in tipd might). The guard
    around every message reports it and the next frame is decided as usual."""
    from tipd.ensemble import Ensemble
    from tipd.protocol import decode_event
    from tipd.service import Daemon

    settings = in_process(tmp_path, tiny_model, monkeypatch)
    real = Ensemble.classify

    def classify(self: Ensemble, frames: list, meanwhile: object = None) -> list:  # type: ignore[type-arg]
        if frames[0].frame_id == "boom":
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return real(self, frames, meanwhile)  # type: ignore[arg-type]

    monkeypatch.setattr(Ensemble, "classify", classify)

    async def scenario() -> list[tuple[bytes, dict[str, object]]]:
        daemon = Daemon(settings)
        serving = asyncio.create_task(daemon.run())
        pub, sub = sockets(settings)
        await asyncio.sleep(0.5)
        got: list[tuple[bytes, dict[str, object]]] = []
        for frame_id in ("boom", "fine"):
            pub.send_multipart(encode_frame(frame(frame_id=frame_id).header(), GOOD.data))
            await asyncio.sleep(0.5)
        end = time.monotonic() + 5
        while time.monotonic() < end and not any(t == b"state.stm1" for t, _ in got):
            await asyncio.sleep(0.05)
            while sub.poll(0):
                parts = sub.recv_multipart()
                got.append((parts[0], decode_event(parts).model_dump()))
        daemon.stopping.set()
        assert await serving == 0
        pub.close()
        sub.close()
        return got

    got = asyncio.run(scenario())
    errors = [e for t, e in got if t == b"error.stm1"]
    assert errors and errors[0]["what"] == "internal" and errors[0]["frame_id"] == "boom"
    assert "OverflowError" in str(errors[0]["detail"])
    assert [e["frame_id"] for t, e in got if t == b"state.stm1"] == ["fine"]


def test_garbage_after_a_valid_frame_does_not_skip_the_valid_frame(
    tmp_path: Path, tiny_model: Path, tipd_exe: list[str]
) -> None:
    d = start(tmp_path, model_dir(tiny_model, tmp_path / "models"), tipd_exe)
    try:
        decided = []
        for k in range(10):
            d.send(encode_frame(frame(frame_id=f"v{k}").header(), GOOD.data))
            d.send([b"frame.stm1", b"{garbage", b"\x00"])  # right behind it, same topic
            events = d.events_until("state.stm1", 10.0)
            decided.append(events[-1][1]["frame_id"])
    finally:
        stop(d)
    assert decided == [f"v{k}" for k in range(10)]
    rows = query(d.journal, last=100)
    assert not [r for r in rows if r["status"] == "skipped"]


def test_a_graph_that_passes_its_check_but_does_not_load_stops_the_start_cleanly(
    tmp_path: Path, tiny_model: Path, tipd_exe: list[str]
) -> None:
    models = model_dir(tiny_model, tmp_path / "models")
    graph = models / "generic" / "ensemble.onnx"
    graph.write_bytes(b"\x08\x07garbage that is not an ONNX graph")
    manifest = json.loads((models / "generic" / "manifest.json").read_text())
    manifest["graph"]["sha256"] = hashlib.sha256(graph.read_bytes()).hexdigest()
    (models / "generic" / "manifest.json").write_text(json.dumps(manifest))
    code, out = start_fails(tmp_path, models, tipd_exe)
    assert code == 2, out
    assert "ONNX Runtime cannot load it" in out and "Traceback" not in out


def test_an_unwritable_journal_stops_the_start_with_one_line(
    tmp_path: Path, tiny_model: Path, tipd_exe: list[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the journal's folder should be")
    models = model_dir(tiny_model, tmp_path / "models")
    code, out = start_fails(tmp_path, models, tipd_exe, blocker / "journal.sqlite")
    assert code == 2 and "cannot start: journal" in out and "Traceback" not in out


def test_a_reload_with_tighter_limits_applies_to_a_microscope_already_known(
    tmp_path: Path, tiny_model: Path, tipd_exe: list[str]
) -> None:
    """Every frame acts (thresholds 0, one frame a streak); nobody answers on the control
    endpoint, so sent commands fail after their timeout. After SIGHUP with limits that every
    rung exceeds, the same microscope's next commands are refused at the gate."""
    models = model_dir(tiny_model, tmp_path / "models", thresholds=0.0)
    d = start(tmp_path, models, tipd_exe, extra=ACTIVE, control=f"tcp://127.0.0.1:{free_port()}")
    try:
        for k in range(3):
            d.send(encode_frame(frame(frame_id=f"a{k}").header(), GOOD.data))
            d.events_until("action.stm1", 10.0)
        config = tmp_path / "tipd.toml"
        tight = "[safety]\nmax_bias_V = 1.0\nmax_move_nm = 10.0\nmax_crash_nm = 0.5"
        config.write_text(config.read_text().replace("[safety]", tight))
        d.proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)  # the reload happens between messages
        t_reload = time.time()
        d.decide(f"b{k}" for k in range(4))
        time.sleep(0.5)
    finally:
        out = stop(d)
    assert "reloaded" in out
    commands = query(d.journal, "commands", last=100)
    before = [c for c in commands if c["t_sent"] < t_reload]
    after = [c for c in commands if c["t_sent"] >= t_reload]
    assert before and all(c["status"] in ("sent", "failed") for c in before)
    assert after and all(c["status"] == "refused" for c in after)
    assert all("limit:" in c["detail"] for c in after)


def test_more_microscopes_than_allowed_are_refused(
    tmp_path: Path, tiny_model: Path, tipd_exe: list[str]
) -> None:
    d = start(
        tmp_path,
        model_dir(tiny_model, tmp_path / "models"),
        tipd_exe,
        extra="max_microscopes = 2\n",
        microscopes="[]",  # any id: the count is the bound
    )
    try:
        for name in ("m1", "m2"):
            d.send(encode_frame(frame(microscope=name).header(), GOOD.data))
            d.events_until(f"state.{name}", 10.0)
        d.send(encode_frame(frame(microscope="m3").header(), GOOD.data))
        err = d.events_until("error.m3", 10.0)[-1][1]
        assert err["what"] == "microscope" and "max_microscopes" in str(err["detail"])
        d.send(encode_frame(frame(microscope="m1", frame_id="again").header(), GOOD.data))
        assert d.events_until("state.m1", 10.0)[-1][1]["frame_id"] == "again"
    finally:
        stop(d)


def test_the_shipped_config_is_advisory_with_a_stop_file_and_an_allow_list() -> None:
    from tipd.config import load

    shipped = load(Path(__file__).resolve().parent.parent / "config" / "tipd.toml")
    assert shipped.advisory and shipped.safety.stop_file is not None
    assert shipped.microscopes == ["stm1"]
    assert load().advisory  # and so are the defaults without a file


def test_live_and_advisory_together_is_a_usage_error(tipd_exe: list[str]) -> None:
    run = subprocess.run(
        [*tipd_exe, "run", "--live", "--advisory"], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2 and "not allowed with" in run.stderr
    assert "Traceback" not in run.stderr


def test_the_safety_state_survives_a_restart(
    tmp_path: Path, tiny_model: Path, tipd_exe: list[str]
) -> None:
    """Every frame acts; after two pulses or crashes without a good frame the gate wants an
    operator. A restart on the same journal must not forget that, nor the spots."""
    models = model_dir(tiny_model, tmp_path / "models", thresholds=0.0)
    active = ACTIVE.replace("max_fruitless = 100", "max_fruitless = 2")
    control = f"tcp://127.0.0.1:{free_port()}"  # nobody answers: commands fail, still count
    d = start(tmp_path, models, tipd_exe, extra=active, control=control)
    try:
        for k in range(12):
            d.decide([f"a{k}"])
            time.sleep(0.2)
            kept = _gate_row(d.journal)
            if kept and kept["needs_operator"]:
                break
    finally:
        stop(d)
    assert kept is not None and kept["needs_operator"] and len(kept["spots"]) >= 2
    t_restart = time.time()
    d = start(tmp_path, models, tipd_exe, extra=active, control=control)
    try:
        d.decide(f"b{k}" for k in range(4))
        time.sleep(0.3)
    finally:
        out = stop(d)
    assert "safety state restored" in out
    after = [
        c
        for c in query(d.journal, "commands", last=200)
        if c["t_sent"] >= t_restart and c["action"] in ("pulse", "crash")
    ]
    assert after and all(c["status"] == "refused" for c in after)
    assert all("needs_operator" in c["detail"] for c in after)


def _gate_row(journal: Path) -> dict[str, object] | None:
    import sqlite3

    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT state FROM gates WHERE microscope = 'stm1'").fetchone()
    finally:
        db.close()
    return None if row is None else dict(json.loads(row[0]))


def test_a_flood_of_garbage_costs_a_bounded_number_of_reports(
    tmp_path: Path, tiny_model: Path, tipd_exe: list[str]
) -> None:
    d = start(
        tmp_path,
        model_dir(tiny_model, tmp_path / "models"),
        tipd_exe,
        extra="error_events_per_s = 5\n",
    )
    try:
        for _ in range(300):
            d.send([b"frame.stm1", b"{garbage", b"\x00"])
        d.send(encode_frame(frame(frame_id="after").header(), GOOD.data))
        events = d.events_until("state.stm1", 20.0)
        end = time.monotonic() + 3.0  # the summary follows within two seconds
        while time.monotonic() < end:
            events += d.events_until("health", 5.0)
    finally:
        stop(d)
    errors = [e for t, e in events if t.startswith("error")]
    full = [e for e in errors if e["what"] == "protocol"]
    summaries = [e for e in errors if "counted but not reported" in str(e["detail"])]
    assert 5 <= len(full) <= 10 and summaries
    health = [e for t, e in events if t == "health"][-1]
    counters = health["counters"]
    assert isinstance(counters, dict)
    assert counters["error_protocol"] == 300  # every message counted
    assert counters["errors_held_back"] >= 290 - 5
    rows = query(d.journal, last=1000)
    assert sum(r["status"] == "rejected" for r in rows) <= 10


UNIT = Path(__file__).resolve().parent.parent / "systemd" / "tipd.service"


def test_the_systemd_unit_is_sandboxed_but_lets_the_gpu_through() -> None:
    keys: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            keys.setdefault(k, []).append(v)
    assert keys["UMask"] == ["0077"] and keys["MemoryMax"] and keys["TasksMax"]
    assert "PrivateDevices" not in keys  # it would hide /dev/nvidia*, and the GPU with it
    assert keys["DevicePolicy"] == ["closed"]
    assert any("nvidiactl" in v for v in keys["DeviceAllow"])
    assert keys["ExecStart"][0].split()[1:3] == ["run", "--config"]


def test_systemd_rates_the_unit_below_exposure_2() -> None:
    import shutil

    analyze = shutil.which("systemd-analyze")
    if analyze is None:  # pragma: no cover - every Debian machine has it
        pytest.skip("systemd-analyze not installed")
    out = subprocess.run(
        [analyze, "security", "--offline=true", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    level = float(out.stdout.split("Overall exposure level for tipd.service:")[1].split()[0])
    assert level < 2.0, out.stdout[-3000:]


def test_bad_settings_are_one_line_and_exit_2(tmp_path: Path, tipd_exe: list[str]) -> None:
    cases = {
        "advisory = \n": "not valid TOML",
        'advisory = "maybe"\n': "advisory: Input should be a valid boolean",
        "[safety]\nmax_bias_V = -1\n": "safety.max_bias_V: Input should be greater than 0",
        "colour = 3\n": "colour: Extra inputs are not permitted",
    }
    for text, needle in [*cases.items(), (None, "cannot read it")]:
        config = tmp_path / "t.toml"
        if text is None:
            config.unlink()
        else:
            config.write_text(text)
        run = subprocess.run(
            [*tipd_exe, "run", "--config", str(config)], capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 2 and needle in run.stderr, (text, run.stderr)
        assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr


def test_an_endpoint_in_use_stops_the_start_with_one_line(
    tmp_path: Path, tiny_model: Path, tipd_exe: list[str]
) -> None:
    models = model_dir(tiny_model, tmp_path / "m")
    busy = zmq.Context.instance().socket(zmq.PUB)
    port = free_port()
    busy.bind(f"tcp://127.0.0.1:{port}")
    try:
        extra = f'[endpoints]\nframes = "tcp://127.0.0.1:{port}"\n'
        code, out = start_fails(tmp_path, models, tipd_exe, extra=extra)
    finally:
        busy.close()
    assert code == 2 and "cannot start: endpoint" in out and "Traceback" not in out

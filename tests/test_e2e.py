"""End to end, with nothing lowered: the shipped Au(111) ensemble, the default policy and safety
limits, `tipd run` and `tipd sim` as subprocesses on real sockets. The sim's tip is double;
the daemon must see it, pulse, and the sim must execute the pulse; the journal and the events
tell the whole story. In advisory mode the same decisions are made and nothing is sent."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.test_daemon import start, stop
from tipd.journal import query
from tipd.models import models_root
from tipd.protocol import CONDITIONING


@pytest.mark.parametrize("advisory", [False, True], ids=["send", "advisory"])
def test_the_daemon_sees_a_double_tip_and_pulses_it(
    tmp_path: Path, tipd_exe: list[str], advisory: bool
) -> None:
    if not (models_root() / "au111" / "manifest.json").is_file():
        pytest.skip("no shipped au111 model")
    control = f"tcp://127.0.0.1:{free_port()}"
    d = start(
        tmp_path,
        models_root(),
        tipd_exe,
        extra=f"advisory = {str(advisory).lower()}\n",
        control=control,
    )
    truth = tmp_path / "truth.jsonl"
    sim = subprocess.Popen(
        [
            *tipd_exe,
            "sim",
            *("--surface", "au111", "--seed", "0", "--start-tip", "double"),
            *("--pixels", "128", "--line-time", "0.004", "--chunk-lines", "16"),
            *("--frames", d.frames, "--control", control, "--truth", str(truth)),
            *("--action-time-scale", "0", "--change-per-line", "0"),  # it stays double
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    story: list[tuple[str, dict[str, object]]] = []
    try:
        end = time.monotonic() + 90
        while time.monotonic() < end:
            events = d.events_until("action.stm1", max(1.0, end - time.monotonic()))
            story += events
            _, body = events[-1]
            command = body["command"]
            assert isinstance(command, dict)
            if command["action"] in CONDITIONING and body.get("reply"):
                break
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(10)
        stop(d)
    records = [json.loads(line) for line in truth.read_text().splitlines()]
    executed = [r for r in records if r["record"] == "command"]
    frames = [r for r in records if r["record"] == "frame"]
    assert frames and frames[0]["tip_start"]["kind"] == "double"  # complete or interrupted

    actions = [b for t, b in story if t == "action.stm1"]
    acted = [b for b in actions if b.get("reply") and b["command"]["action"] in CONDITIONING]  # type: ignore[index]
    assert acted, f"no conditioning in 90 s; actions: {[b['command'] for b in actions]}"
    command, reply = acted[-1]["command"], acted[-1]["reply"]
    assert isinstance(command, dict) and isinstance(reply, dict)
    reason = command["reason"]
    assert isinstance(reason, dict) and reason["state"] in ("double_tip", "poor")
    # the decisions that led there: state events naming no good tip, before the action
    states = [b for t, b in story if t == "state.stm1"]
    assert states and not any(s["desirable"] for s in states[-3:])

    journal = {c["id"]: c for c in query(d.journal, "commands", last=100)}
    row = journal[command["id"]]
    assert query(d.journal, "frames", last=5), "decisions are journaled"
    if advisory:
        assert reply["status"] == "rejected" and "advisory" in reply["detail"]
        assert row["status"] == "advisory"
        assert executed == []  # nothing reached the microscope
    else:
        assert reply["status"] == "done", reply
        assert row["status"] == "done"
        pulse = next(e for e in executed if e["id"] == command["id"])
        assert pulse["action"] == command["action"] and pulse["status"] == "done"
        assert len(pulse["tip_before"]["apexes"]) >= 2  # the double tip (maybe dirty by now)
        assert len({e["id"] for e in executed}) == len(executed)  # each command once

"""Operator commands end to end: ``tipd status | reset | hold | release | reference`` against a
running daemon, journaled with who, and kept across a restart."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np

from tests.conftest import free_port
from tests.test_daemon import ACTIVE, GOOD, Daemon, frame, model_dir, start, stop
from tipd.journal import query
from tipd.protocol import encode_frame


def operator(tipd_exe: list[str], tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*tipd_exe, *args, "--config", str(tmp_path / "tipd.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )


def status(tipd_exe: list[str], tmp_path: Path) -> dict[str, object]:
    out = operator(tipd_exe, tmp_path, "status", "stm1", "--json")
    assert out.returncode == 0, out.stderr
    gates = json.loads(out.stdout)["gates"]
    return dict(gates["stm1"])


def frames_until(d: Daemon, tipd_exe: list[str], tmp_path: Path, key: str) -> dict[str, object]:
    """Send frames (each acts) until the gate's status says ``key``."""
    for k in range(12):
        d.decide([f"x{time.monotonic_ns()}{k}"])
        time.sleep(0.2)
        now = status(tipd_exe, tmp_path)
        if now[key]:
            return now
    raise AssertionError(f"the gate never reached {key}")


def commands_since(d: Daemon, t: float) -> list[dict[str, object]]:
    return [c for c in query(d.journal, "commands", last=500) if float(c["t_sent"]) >= t]


def test_an_operator_resets_holds_and_releases_a_running_daemon(
    tmp_path: Path, tiny_model: Path, tipd_exe: list[str]
) -> None:
    models = model_dir(tiny_model, tmp_path / "models", thresholds=0.0)
    active = ACTIVE.replace("max_fruitless = 100", "max_fruitless = 1")
    control = f"tcp://127.0.0.1:{free_port()}"  # nobody answers: commands fail, still count
    d = start(tmp_path, models, tipd_exe, extra=active, control=control)
    try:
        gate = frames_until(d, tipd_exe, tmp_path, "needs_operator")
        assert any("needs_operator since" in r for r in gate["refusing"])  # type: ignore[attr-defined]
        text = operator(tipd_exe, tmp_path, "status")
        assert "stm1: NEEDS OPERATOR" in text.stdout and "tipd reset" in text.stdout
        # held (needs_operator), or degraded once the silent controller's reply timed out
        first = text.stdout.splitlines()[0]
        assert first in ("tipd: held", "tipd: degraded"), text.stdout
        assert "  stm1: needs an operator (`tipd reset stm1`)" in text.stdout

        reset = operator(tipd_exe, tmp_path, "reset", "stm1", "--who", "ada")
        assert reset.returncode == 0 and "needs_operator cleared" in reset.stdout
        t_reset = time.time()
        d.send(encode_frame(frame(frame_id="after-reset").header(), GOOD.data))
        d.events_until("action.stm1", 10.0)
        time.sleep(0.3)
        after = commands_since(d, t_reset)
        assert after and after[0]["status"] in ("sent", "failed")  # acted again

        hold = operator(tipd_exe, tmp_path, "hold", "stm1", "--who", "ada")
        assert hold.returncode == 0 and "on hold" in hold.stdout
        t_hold = time.time()
        d.decide(f"held{k}" for k in range(3))
        time.sleep(0.3)
        held = commands_since(d, t_hold)
        assert held and all(c["status"] == "refused" for c in held)
        assert all("on hold" in str(c["detail"]) for c in held)
    finally:
        stop(d)

    # a restart keeps the hold, with who and since when
    d = start(tmp_path, models, tipd_exe, extra=active, control=control)
    try:
        d.send(encode_frame(frame(frame_id="restarted").header(), GOOD.data))
        d.events_until("state.stm1", 10.0)
        gate = status(tipd_exe, tmp_path)
        assert gate["held"] and any("on hold by ada" in r for r in gate["refusing"])  # type: ignore[attr-defined]
        release = operator(tipd_exe, tmp_path, "release", "stm1", "--who", "bob")
        assert release.returncode == 0
        assert not status(tipd_exe, tmp_path)["held"]
        unknown = operator(tipd_exe, tmp_path, "hold", "stm9")
        assert unknown.returncode == 1 and "unknown microscope 'stm9'" in unknown.stdout
        ops = d.events_until("health", 5.0)
    finally:
        stop(d)
    rows = query(d.journal, "operator", last=10)
    done = [(r["op"], r["who"]) for r in rows]
    assert done == [("reset", "ada"), ("hold", "ada"), ("release", "bob")]
    assert ops


def test_no_daemon_is_one_clear_line_and_exit_2(tmp_path: Path, tipd_exe: list[str]) -> None:
    out = subprocess.run(
        [*tipd_exe, "status", "--endpoint", f"tcp://127.0.0.1:{free_port()}", "--timeout", "0.5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "no answer from tipd" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_stop_file_in_the_config_halts_commands_while_it_exists(
    tmp_path: Path, tiny_model: Path, tipd_exe: list[str]
) -> None:
    stop_file = tmp_path / "STOP"
    models = model_dir(tiny_model, tmp_path / "models", thresholds=0.0)
    active = ACTIVE.replace("[safety]", f'[safety]\nstop_file = "{stop_file}"')
    d = start(tmp_path, models, tipd_exe, extra=active, control=f"tcp://127.0.0.1:{free_port()}")
    try:
        stop_file.touch()
        t_stop = time.time()
        d.decide(f"s{k}" for k in range(3))
        time.sleep(0.3)
        stopped = commands_since(d, t_stop)
        gate = status(tipd_exe, tmp_path)
        stop_file.unlink()
        t_go = time.time()
        d.send(encode_frame(frame(frame_id="go").header(), GOOD.data))
        d.events_until("action.stm1", 10.0)
        time.sleep(0.3)
        going = commands_since(d, t_go)
    finally:
        stop(d)
    assert stopped and all(c["status"] == "refused" for c in stopped)
    assert all(f"stop file {stop_file} is present" in str(c["detail"]) for c in stopped)
    assert gate["stopped"] is True
    assert going and going[0]["status"] in ("sent", "failed")


def test_an_operator_marks_a_frame_good_and_its_area_is_judged_against_it(
    tmp_path: Path, tiny_model: Path, tipd_exe: list[str]
) -> None:
    """``tipd reference`` makes a frame its area's reference: the same frame again is "as the
    operator's reference"; a frame neither in memory nor in the archive is one clear error."""
    models = model_dir(tiny_model, tmp_path / "models")
    d = start(tmp_path, models, tipd_exe)
    try:
        rng = np.random.default_rng(1)
        z = rng.normal(0, 1e-10, (96, 96))
        f = frame(frame_id="r1", rows=96, data=z)
        d.send(encode_frame(f.header(), f.data))
        d.events_until("state.stm1", 10.0)
        marked = operator(tipd_exe, tmp_path, "reference", "stm1")  # the latest: r1
        assert marked.returncode == 0 and "frame 'r1' is the reference" in marked.stdout
        again = frame(frame_id="r2", rows=96, data=z)
        d.send(encode_frame(again.header(), again.data))
        events = d.events_until("state.stm1", 10.0)
        assert any(t.startswith("operator") and b["op"] == "reference" for t, b in events)
        state = events[-1][1]
        said = [e["reason"] for e in state["evidence"] if e["source"] == "memory"]  # type: ignore[union-attr, index]
        assert said and said[0].startswith("as the operator's reference")
        unknown = operator(tipd_exe, tmp_path, "reference", "stm1", "nosuch")
        assert unknown.returncode == 1 and "no frame 'nosuch'" in unknown.stdout
    finally:
        stop(d)
    ops = [(r["op"], r["who"]) for r in query(d.journal, "operator", last=10)]
    assert [op for op, _ in ops] == ["reference"]


def test_a_reference_file_that_cannot_be_read_stops_the_start(
    tmp_path: Path, tipd_exe: list[str]
) -> None:
    bad = tmp_path / "ref.sxm"
    bad.write_bytes(b"not a scan")
    out = subprocess.run(
        [*tipd_exe, "run", "--reference", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2 and out.stderr.startswith("tipd run: --reference: ")
    assert len(out.stderr.strip().splitlines()) == 1

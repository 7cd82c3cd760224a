"""The safety gate at the edges of every limit: just inside passes, just outside is refused."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tipd.protocol import Command
from tipd.safety import CODES, Limits, SafetyGate

L = Limits()
EPS = 1e-9


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def cmd(action: str, **params: float) -> Command:
    return Command(microscope="stm1", action=action, params=params)  # type: ignore[arg-type]


def gate(**kw: object) -> tuple[SafetyGate, Clock]:
    clock = Clock()
    return SafetyGate(clock=clock, **kw), clock  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("command", "allowed"),
    [
        (cmd("pulse", bias_V=L.max_bias_V, width_s=0.1), True),
        (cmd("pulse", bias_V=-L.max_bias_V, width_s=0.1), True),
        (cmd("pulse", bias_V=L.max_bias_V + EPS, width_s=0.1), False),
        (cmd("pulse", bias_V=-L.max_bias_V - EPS, width_s=0.1), False),
        (cmd("pulse", bias_V=3.0, width_s=L.min_pulse_s), True),
        (cmd("pulse", bias_V=3.0, width_s=L.min_pulse_s - EPS), False),
        (cmd("pulse", bias_V=3.0, width_s=L.max_pulse_s), True),
        (cmd("pulse", bias_V=3.0, width_s=L.max_pulse_s + EPS), False),
        (cmd("crash", depth_nm=L.max_crash_nm, bias_V=0.02), True),
        (cmd("crash", depth_nm=L.max_crash_nm + EPS, bias_V=0.02), False),
        (cmd("crash", depth_nm=1.0, bias_V=L.max_bias_V + EPS), False),
        (cmd("move", dx_nm=L.max_move_nm, dy_nm=0.0), True),
        (cmd("move", dx_nm=600.0, dy_nm=800.0 + 1e-6), False),
        (cmd("rescan"), True),
        (cmd("withdraw"), True),
    ],
)
def test_hard_limits_at_their_edges(command: Command, allowed: bool) -> None:
    g, _ = gate()
    verdict = g.check(command, (0.0, 0.0))
    assert verdict.allowed is allowed, verdict.reason
    if not allowed:
        assert verdict.reason.startswith("limit:")


def test_hourly_budget_edge() -> None:
    g, clock = gate(limits=Limits(cooldown_s=0, forbidden_radius_nm=0, max_fruitless=100))
    pulse = cmd("pulse", bias_V=3.0, width_s=0.1)
    for _ in range(L.max_actions_per_hour):
        assert g.check(pulse, (0, 0)).allowed
        g.commit(pulse, (0, 0))
        clock.t += 1
    refused = g.check(pulse, (0, 0))
    assert not refused.allowed and "20 actions in the last hour" in refused.reason
    assert g.check(cmd("rescan"), (0, 0)).allowed  # only conditioning is budgeted
    clock.t += 3600 - L.max_actions_per_hour  # the first action is an hour old now
    assert g.check(pulse, (0, 0)).allowed


def test_fruitless_actions_lead_to_needs_operator() -> None:
    g, _ = gate(limits=Limits(cooldown_s=0))
    pulse = cmd("pulse", bias_V=3.0, width_s=0.1)
    for k in range(L.max_fruitless):
        assert g.check(pulse, (100.0 * k, 0.0)).allowed
        g.commit(pulse, (100.0 * k, 0.0))
        g.commit(cmd("move", dx_nm=100.0, dy_nm=0.0), (100.0 * k, 0.0))  # moves don't count
        assert g.needs_operator is (k == L.max_fruitless - 1)
    refused = g.check(cmd("move", dx_nm=100.0, dy_nm=0.0), (1000.0, 0.0))
    assert not refused.allowed and "needs_operator" in refused.reason
    assert g.check(cmd("withdraw"), (0, 0)).allowed  # retracting stays possible
    g.reset_operator()
    assert g.check(cmd("move", dx_nm=100.0, dy_nm=0.0), (1000.0, 0.0)).allowed


def test_budgets_and_cooldown_count_conditioning_not_moves() -> None:
    g, _ = gate()
    pulse = cmd("pulse", bias_V=3.0, width_s=0.1)
    g.commit(pulse, (0.0, 0.0))
    move = cmd("move", dx_nm=150.0, dy_nm=0.0)
    assert g.check(move, (0.0, 0.0)).allowed  # away at once: no cooldown for a move
    early = g.check(pulse, (150.0, 0.0))
    assert not early.allowed and "cooldown" in early.reason
    for _ in range(50):
        g.commit(move, (0.0, 0.0))
    assert g.fruitless == 1 and not g.needs_operator


def test_a_good_frame_ends_the_fruitless_run() -> None:
    g, _ = gate(limits=Limits(cooldown_s=0, forbidden_radius_nm=0))
    for _ in range(L.max_fruitless - 1):
        g.commit(cmd("pulse", bias_V=3.0, width_s=0.1), (0, 0))
    g.good_frame()
    g.commit(cmd("pulse", bias_V=3.0, width_s=0.1), (0, 0))
    assert not g.needs_operator and g.fruitless == 1


def test_forbidden_radius_edge() -> None:
    g, _ = gate(limits=Limits(cooldown_s=0))
    g.commit(cmd("pulse", bias_V=3.0, width_s=0.1), (0.0, 0.0))
    r = L.forbidden_radius_nm
    inside = g.check(cmd("pulse", bias_V=3.0, width_s=0.1), (r - 1e-6, 0.0))
    assert not inside.allowed and "forbidden area" in inside.reason
    assert g.check(cmd("pulse", bias_V=3.0, width_s=0.1), (r, 0.0)).allowed
    # a move whose target lands inside the circle is refused too
    assert not g.check(cmd("move", dx_nm=-15.0, dy_nm=0.0), (30.0, 0.0)).allowed
    assert g.check(cmd("move", dx_nm=50.0, dy_nm=0.0), (0.0, 0.0)).allowed


def test_cooldown_edge() -> None:
    g, clock = gate(limits=Limits(forbidden_radius_nm=0))
    g.commit(cmd("pulse", bias_V=3.0, width_s=0.1), (0, 0))
    clock.t += L.cooldown_s - 1e-6
    early = g.check(cmd("pulse", bias_V=3.0, width_s=0.1), (0, 0))
    assert not early.allowed and "cooldown" in early.reason
    clock.t += 1e-6
    assert g.check(cmd("pulse", bias_V=3.0, width_s=0.1), (0, 0)).allowed


def test_hold_and_stop_file_halt_everything(tmp_path: Path) -> None:
    stop = tmp_path / "STOP"
    g, _ = gate(stop_file=stop)
    pulse = cmd("pulse", bias_V=3.0, width_s=0.1)
    g.hold()
    assert not g.check(pulse, (0, 0)).allowed and g.check(cmd("withdraw"), (0, 0)).allowed
    g.release()
    assert g.check(pulse, (0, 0)).allowed
    stop.touch()
    for c in (pulse, cmd("rescan"), cmd("withdraw")):
        verdict = g.check(c, (0, 0))
        assert not verdict.allowed and "stop file" in verdict.reason
    stop.unlink()
    assert g.check(pulse, (0, 0)).allowed


def test_a_snapshot_restored_in_a_new_gate_keeps_every_budget_and_spot() -> None:
    clock = [1000.0]
    gate = SafetyGate(limits=Limits(max_fruitless=3, cooldown_s=10.0), clock=lambda: clock[0])
    pulse = Command(microscope="stm1", action="pulse", params={"bias_V": 2.5, "width_s": 0.1})
    gate.commit(pulse, (5.0, 5.0))
    clock[0] += 20
    gate.commit(pulse, (50.0, 5.0))
    gate.hold()
    state = gate.snapshot(wall=1.7e9)
    # a new process: another monotonic clock, 3 s of wall time later
    clock2 = [42.0]
    again = SafetyGate(limits=Limits(max_fruitless=3, cooldown_s=10.0), clock=lambda: clock2[0])
    again.restore(json.loads(json.dumps(state)), wall=1.7e9 + 3)
    same = ("held", "needs_operator", "fruitless", "actions_last_hour", "stopped")
    assert {k: again.status()[k] for k in same} == {k: gate.status()[k] for k in same}
    assert again.held and again.fruitless == 2 and again.held_by == gate.held_by
    assert any("cooldown: 7.0 s left" in r for r in again.reasons())  # 3 s of 10 gone
    again.release()
    assert "cooldown" in again.check(pulse, (500.0, 500.0)).reason  # 3 s since the last
    clock2[0] += 8
    assert "forbidden area" in again.check(pulse, (6.0, 6.0)).reason
    assert again.check(pulse, (500.0, 500.0)).allowed
    again.commit(pulse, (500.0, 500.0))
    assert again.needs_operator  # the third without a good frame, across the restart


def test_reasons_say_why_the_gate_refuses_and_what_clears_it(tmp_path: Path) -> None:
    clock = [0.0]
    stop = tmp_path / "STOP"
    gate = SafetyGate(
        limits=Limits(max_fruitless=2, max_actions_per_hour=2, cooldown_s=0.0),
        stop_file=stop,
        clock=lambda: clock[0],
    )
    pulse = Command(microscope="stm1", action="pulse", params={"bias_V": 2.5, "width_s": 0.1})
    assert gate.reasons() == []
    gate.commit(pulse, (0.0, 0.0))
    clock[0] = 600.0
    gate.commit(pulse, (100.0, 0.0))
    reasons = gate.reasons()
    assert any(r.startswith("needs_operator since") and "tipd reset" in r for r in reasons)
    assert any("next is allowed in 50 min" in r for r in reasons)
    gate.hold("ada")
    stop.touch()
    reasons = gate.reasons()
    assert reasons[0].startswith("stop file") and "on hold by ada since" in reasons[1]
    gate.release()
    gate.reset_operator()
    stop.unlink()
    clock[0] = 3600.0 + 601.0
    assert gate.reasons() == [] and gate.status()["refusing"] == []


def test_only_an_operator_clears_needs_operator() -> None:
    g, _ = gate(limits=Limits(cooldown_s=0, max_fruitless=2))
    for k in range(2):
        g.commit(cmd("pulse", bias_V=3.0, width_s=0.1), (100.0 * k, 0.0))
    assert g.needs_operator
    for _ in range(10):
        g.good_frame()
    assert g.needs_operator and g.fruitless == 0
    assert not g.check(cmd("pulse", bias_V=3.0, width_s=0.1), (900.0, 0.0)).allowed
    restored, _ = gate()
    restored.restore(g.snapshot())
    restored.good_frame()
    assert restored.needs_operator
    g.reset_operator()
    assert not g.needs_operator


def test_every_refusal_carries_its_code(tmp_path: Path) -> None:
    g, clock = gate(
        limits=Limits(max_actions_per_hour=2, max_fruitless=3), stop_file=tmp_path / "S"
    )
    pulse = cmd("pulse", bias_V=3.0, width_s=0.1)
    assert g.check(cmd("pulse", bias_V=99.0, width_s=0.1), (0, 0)).code == "limit"
    g.commit(pulse, (0.0, 0.0))
    assert g.check(pulse, (100.0, 0.0)).code == "cooldown"
    clock.t += 10
    assert g.check(pulse, (1.0, 0.0)).code == "forbidden"
    g.commit(pulse, (100.0, 0.0))
    clock.t += 10
    assert g.check(pulse, (200.0, 0.0)).code == "budget"
    g.hold()
    assert g.check(pulse, (200.0, 0.0)).code == "hold"
    (tmp_path / "S").touch()
    assert g.check(pulse, (200.0, 0.0)).code == "stop"
    assert g.check(pulse, (200.0, 0.0)).code in CODES


def test_the_way_out_is_the_nearest_free_area_within_a_move() -> None:
    g, _ = gate(limits=Limits(cooldown_s=0, max_move_nm=300.0))
    assert g.way_out((0.0, 0.0), 150.0) == (150.0, 0.0)  # nothing forbidden: one step along +x
    g.commit(cmd("pulse", bias_V=3.0, width_s=0.1), (150.0, 0.0))
    assert g.way_out((0.0, 0.0), 150.0) == (0.0, 150.0)  # +x is taken: the next, anticlockwise
    for spot in ((0.0, 150.0), (-150.0, 0.0), (0.0, -150.0)):
        g.commit(cmd("pulse", bias_V=3.0, width_s=0.1), spot)
    dx, dy = g.way_out((0.0, 0.0), 150.0) or (0.0, 0.0)
    assert math.hypot(dx, dy) == pytest.approx(150.0 * math.sqrt(2))  # the diagonals are next
    crowded, _ = gate(limits=Limits(max_move_nm=100.0))
    assert crowded.way_out((0.0, 0.0), 150.0) is None  # no step fits in a move

"""Every refusal of the gate and every threshold of the policy, at its exact edge, with the
words an operator reads (`make mutation` checks that these tests notice a changed limit)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tipd.policy import DEFAULT_LADDERS, Policy, PolicyConfig, Rung
from tipd.protocol import Command
from tipd.safety import Limits, SafetyGate


class Clock:
    def __init__(self) -> None:
        self.t = 5000.0

    def __call__(self) -> float:
        return self.t


def cmd(action: str, **params: float) -> Command:
    return Command(microscope="stm1", action=action, params=params)  # type: ignore[arg-type]


PULSE = cmd("pulse", bias_V=2.5, width_s=0.1)
CRASH = cmd("crash", depth_nm=1.0, bias_V=0.02)


def refusal(gate: SafetyGate, command: Command, at: tuple[float, float] = (0.0, 0.0)) -> str:
    verdict = gate.check(command, at)
    assert verdict.allowed is False
    return verdict.reason


def allowed(gate: SafetyGate, command: Command, at: tuple[float, float] = (0.0, 0.0)) -> bool:
    verdict = gate.check(command, at)
    assert verdict.allowed is True and verdict.reason == ""
    return True


def test_interlocks_refuse_with_their_own_words(tmp_path: Path) -> None:
    stop = tmp_path / "STOP"
    g = SafetyGate(stop_file=stop, clock=Clock())
    stop.touch()
    assert refusal(g, PULSE) == f"stop file {stop} is present: all actions halted"
    assert refusal(g, cmd("withdraw")) == f"stop file {stop} is present: all actions halted"
    stop.unlink()
    g.hold("ada")
    assert refusal(g, PULSE) == "on hold: all actions halted until released"
    for action in (CRASH, cmd("move", dx_nm=100.0, dy_nm=0.0), cmd("rescan")):
        assert refusal(g, action) == "on hold: all actions halted until released"
    assert allowed(g, cmd("withdraw"))
    g.release()
    g.needs_operator = True
    assert refusal(g, CRASH) == "needs_operator: too many actions without a good frame"
    assert refusal(g, cmd("move", dx_nm=100.0, dy_nm=0.0)).startswith("needs_operator")
    g.reset_operator()
    assert allowed(g, PULSE)


def test_hold_and_reset_keep_who_and_when() -> None:
    g = SafetyGate(limits=Limits(max_fruitless=1, cooldown_s=0.0), clock=Clock())
    before = time.time()
    g.hold("ada")
    assert g.held and g.held_by == "ada" and g.held_since is not None
    assert before <= g.held_since <= time.time()
    since = g.held_since
    g.hold("bob")  # a second hold keeps the first one's time
    assert g.held_by == "bob" and g.held_since == since
    g.release()
    assert (g.held, g.held_by, g.held_since) == (False, "", None)
    g.commit(PULSE, (0.0, 0.0))
    assert g.needs_operator and g.needs_operator_since is not None
    assert before <= g.needs_operator_since <= time.time()
    assert "needs_operator since an earlier run" not in g.reasons()[0]
    g.reset_operator()
    assert (g.needs_operator, g.needs_operator_since, g.fruitless) == (False, None, 0)


@pytest.mark.parametrize(
    ("command", "words"),
    [
        (
            cmd("pulse", bias_V=8.0 + 1e-9, width_s=0.1),
            "limit: pulse bias_V 8.000000001 beyond ±8.0 V",
        ),
        (
            cmd("pulse", bias_V=2.0, width_s=0.0099),
            "limit: pulse width_s 0.0099 outside 0.01–1.0 s",
        ),
        (
            cmd("crash", depth_nm=3.0 + 1e-9, bias_V=0.02),
            "limit: crash depth_nm 3.000000001 beyond 3.0 nm",
        ),
        (cmd("crash", depth_nm=1.0, bias_V=-8.5), "limit: crash bias_V -8.5 beyond ±8.0 V"),
        (cmd("move", dx_nm=600.0, dy_nm=800.1), "limit: move of 1000.1 nm beyond 1000.0 nm"),
    ],
)
def test_limits_refuse_naming_the_limit(command: Command, words: str) -> None:
    assert refusal(SafetyGate(clock=Clock()), command).startswith(words)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_crash_bias_both_signs_both_sides_of_the_limit(sign: float) -> None:
    g = SafetyGate(clock=Clock())
    assert allowed(g, cmd("crash", depth_nm=1.0, bias_V=sign * 8.0))
    assert refusal(g, cmd("crash", depth_nm=1.0, bias_V=sign * (8.0 + 1e-9))).startswith(
        "limit: crash bias_V"
    )
    assert allowed(g, cmd("crash", depth_nm=3.0, bias_V=0.02))  # the depth limit itself


def test_the_hourly_budget_counts_the_last_3600_s_exactly() -> None:
    clock = Clock()
    limits = Limits(max_actions_per_hour=2, cooldown_s=0.0, max_fruitless=99)
    g = SafetyGate(limits=limits, clock=clock)
    g.commit(PULSE, (0.0, 0.0))
    clock.t += 10
    g.commit(PULSE, (100.0, 0.0))
    assert refusal(g, PULSE, (500.0, 0.0)) == "budget: 2 actions in the last hour (at most 2)"
    assert allowed(g, cmd("move", dx_nm=100.0, dy_nm=0.0), (500.0, 0.0))  # moves are free
    clock.t += 3600 - 10 - 1e-6  # the first is 1 µs short of an hour old: still counted
    assert refusal(g, PULSE, (500.0, 0.0)).startswith("budget: 2 actions")
    clock.t += 1e-6  # exactly an hour: no longer counted
    assert allowed(g, PULSE, (500.0, 0.0))
    assert g.status()["actions_last_hour"] == 1


def test_the_fruitless_budget_refuses_at_its_limit_not_before() -> None:
    g = SafetyGate(limits=Limits(max_fruitless=3, cooldown_s=0.0), clock=Clock())
    g.commit(PULSE, (0.0, 0.0))
    g.commit(PULSE, (100.0, 0.0))
    assert g.fruitless == 2 and not g.needs_operator
    assert allowed(g, PULSE, (500.0, 0.0))
    g.fruitless = 3  # the limit reached without needs_operator (as after a reload)
    assert refusal(g, PULSE, (500.0, 0.0)) == "budget: 3 actions without a good frame (at most 3)"
    g.good_frame()
    assert g.fruitless == 0 and allowed(g, PULSE, (500.0, 0.0))


def test_cooldown_counts_from_the_last_pulse_or_crash() -> None:
    clock = Clock()
    g = SafetyGate(limits=Limits(cooldown_s=5.0), clock=clock)
    g.commit(PULSE, (0.0, 0.0))
    clock.t += 2.0
    words = refusal(g, CRASH, (500.0, 0.0))
    assert words == "cooldown: 2.00 s since the last action (at least 5.0 s)"
    assert g.reasons() == ["cooldown: 3.0 s left"]
    clock.t += 3.0
    assert allowed(g, CRASH, (500.0, 0.0))


@pytest.mark.parametrize("action", [PULSE, CRASH])
def test_the_forbidden_radius_holds_for_pulses_and_crashes(action: Command) -> None:
    g = SafetyGate(limits=Limits(forbidden_radius_nm=20.0, cooldown_s=0.0), clock=Clock())
    g.commit(PULSE, (10.0, -30.0))
    words = refusal(g, action, (10.0, -10.0 - 1e-9))
    assert words.startswith("forbidden area: 20.0 nm from an earlier action at (10.0, -30.0) nm")
    assert allowed(g, action, (10.0, -10.0 + 1e-9))


def test_the_forbidden_radius_holds_for_where_a_move_lands() -> None:
    g = SafetyGate(limits=Limits(forbidden_radius_nm=20.0), clock=Clock())
    g.commit(PULSE, (0.0, 50.0))
    onto = cmd("move", dx_nm=0.0, dy_nm=45.0)  # from (0, 0) to 5 nm from the spot
    assert refusal(g, onto, (0.0, 0.0)).startswith("forbidden area: 5.0 nm")
    away = cmd("move", dx_nm=0.0, dy_nm=-45.0)  # the other way: 95 nm from it
    assert allowed(g, away, (0.0, 0.0))
    sideways = cmd("move", dx_nm=45.0, dy_nm=50.0)  # x counts too
    assert allowed(g, sideways, (0.0, 0.0))


# ----------------------------------------------------------------- policy thresholds


def policy(**kw: object) -> Policy:
    return Policy({"good"}, PolicyConfig(**kw))  # type: ignore[arg-type]


def test_a_frame_is_good_below_half_bad_not_at_it() -> None:
    p = policy()
    assert p.good("unknown", 0.5 - 1e-9) and not p.good("unknown", 0.5)
    assert p.good("good", 1.0)  # a desirable state is good whatever bad says


def test_a_fault_is_sure_at_exactly_the_confidence() -> None:
    p = policy()
    assert p.fault("double_tip", 0.9, 0.1) == ("double_tip", 0.9)
    assert p.fault("double_tip", 0.9 - 1e-9, 0.1) is None
    assert p.fault("unknown", 0.95, 0.9) == ("poor", 0.9)  # no ladder: surely bad is poor
    assert p.fault("unknown", 0.95, 0.9 - 1e-9) is None
    assert p.fault("double_tip", 0.5, 0.9) == ("double_tip", 0.9)  # a named state, surely bad
    assert p.fault("good", 1.0, 1.0) is None


def test_three_sure_frames_act_and_the_streak_starts_again() -> None:
    p = policy()
    runs = [p.observe("double_tip", 0.9, f"f{i}", bad=0.9) for i in range(7)]
    assert [len(r) for r in runs] == [0, 0, 2, 0, 0, 2, 0]
    assert [q.params["bias_V"] for q in runs[2] + runs[5] if q.action == "pulse"] == [2.5, -2.5]


def test_weak_evidence_counts_at_exactly_half() -> None:
    p = policy()
    runs = [p.observe("unknown", 0.3, f"w{i}", bad=0.5) for i in range(9)]
    assert [len(r) for r in runs] == [0] * 7 + [2, 0]  # the eighth acts, then starts again
    q = policy()
    assert all(q.observe("unknown", 0.3, f"w{i}", bad=0.5 - 1e-9) == [] for i in range(20))


def test_a_window_counts_at_exactly_the_confidence() -> None:
    p = policy(consecutive=1)
    assert p.observe("double_tip", 0.9 - 1e-9, "w", window=True) == []
    acted = p.observe("double_tip", 0.9, "w", window=True)
    assert [q.action for q in acted] == ["pulse", "move"]
    # after that pulse, windows wait for a whole frame; a whole frame ends the wait
    assert p.observe("double_tip", 1.0, "w2", window=True) == []
    assert p.observe("unknown", 0.1, "whole", bad=0.6) == []
    assert [q.action for q in p.observe("double_tip", 0.95, "w3", window=True)] == ["pulse", "move"]


def test_a_sure_window_of_a_good_state_resets_the_ladder() -> None:
    p = policy(consecutive=1)
    assert p.observe("double_tip", 0.95, "a")[0].params["bias_V"] == 2.5
    assert p.observe("unknown", 0.1, "whole", bad=0.6) == []  # a whole frame ends the wait
    assert p.observe("good", 0.99, "w", window=True) == []
    assert p.observe("double_tip", 0.95, "b")[0].params["bias_V"] == 2.5  # from the bottom


def test_the_follow_up_move_carries_the_reason_of_its_pulse() -> None:
    p = policy(consecutive=1)
    pulse, move = p.observe("double_tip", 0.93, "f7")
    assert (move.state, move.confidence, move.rung, move.frame_id) == ("double_tip", 0.93, 0, "f7")
    assert move.follow_up and not pulse.follow_up
    assert move.params == {"dx_nm": 150.0, "dy_nm": 0.0}
    assert pulse.command("stm1").reason.model_dump() == {  # type: ignore[union-attr]
        "state": "double_tip",
        "confidence": 0.93,
        "frame_id": "f7",
    }


def test_proposals_become_wire_commands_with_their_reason() -> None:
    p = policy(consecutive=1)
    dip = (Rung("crash", {"depth_nm": 0.9, "bias_V": 0.02}),)
    crash = Policy({"good"}, PolicyConfig(consecutive=1, ladders={"blunt": dip}))
    c = crash.observe("blunt", 1.2, "f1")[0].command("stm2")
    assert (c.microscope, c.action) == ("stm2", "crash")
    assert c.params.model_dump() == {"depth_nm": 0.9, "bias_V": 0.02}
    assert c.reason is not None and c.reason.confidence == 1.0  # capped at 1 on the wire
    m = p.observe("step_edge", 0.95, "f2")[0].command("stm1")
    assert m.action == "move" and m.params.model_dump() == {"dx_nm": 150.0, "dy_nm": 0.0}


def test_the_default_ladders_are_the_documented_figures() -> None:
    def rungs(state: str) -> list[tuple[str, dict[str, float]]]:
        return [(r.action, r.params) for r in DEFAULT_LADDERS[state]]

    assert rungs("double_tip") == [
        ("pulse", {"bias_V": 2.5, "width_s": 0.2}),
        ("pulse", {"bias_V": -2.5, "width_s": 0.2}),
        ("pulse", {"bias_V": 4.0, "width_s": 0.2}),
        ("pulse", {"bias_V": -4.0, "width_s": 0.2}),
        ("pulse", {"bias_V": 6.0, "width_s": 0.2}),
        ("crash", {"depth_nm": 0.9, "bias_V": 0.02}),
        ("crash", {"depth_nm": 1.5, "bias_V": 0.02}),
        ("crash", {"depth_nm": 2.5, "bias_V": 0.02}),
    ]
    gentle = ("pulse", {"bias_V": 2.5, "width_s": 0.1})
    assert rungs("tip_change") == [gentle, *rungs("double_tip")[1:]]
    assert (
        rungs("blunt")
        == rungs("rows")
        == [
            ("pulse", {"bias_V": 4.0, "width_s": 0.2}),
            ("pulse", {"bias_V": 6.0, "width_s": 0.2}),
            ("crash", {"depth_nm": 0.9, "bias_V": 0.02}),
            ("crash", {"depth_nm": 1.5, "bias_V": 0.02}),
            ("crash", {"depth_nm": 2.5, "bias_V": 0.02}),
        ]
    )
    for fault in ("step_edge", "impurity", "corruption", "generic_defect"):
        assert rungs(fault) == [("move", {})]
    assert rungs("poor") == rungs("double_tip")


def test_the_top_rung_is_repeated_once_reached() -> None:
    p = policy(consecutive=1, relocate=False)
    ladder = DEFAULT_LADDERS["blunt"]
    got = [p.observe("blunt", 0.95, f"f{i}")[0] for i in range(len(ladder) + 2)]
    assert [(q.action, q.params) for q in got] == [(r.action, r.params) for r in ladder] + [
        (ladder[-1].action, ladder[-1].params)
    ] * 2
    assert [q.rung for q in got] == list(range(len(ladder) + 2))


def test_moves_follow_a_square_spiral_from_the_start() -> None:
    p = policy(move_nm=10.0)
    steps = [p._next_move() for _ in range(9)]
    assert [(s["dx_nm"], s["dy_nm"]) for s in steps] == [
        (10.0, 0.0), (0.0, 10.0), (-10.0, 0.0), (-10.0, 0.0), (0.0, -10.0),
        (0.0, -10.0), (10.0, 0.0), (10.0, 0.0), (10.0, 0.0),
    ]  # fmt: skip


def test_a_refusal_takes_back_exactly_the_moves_it_planned() -> None:
    p = policy(consecutive=1)
    pulse, move = p.observe("double_tip", 0.95, "a")  # a pulse and its planned move
    assert p.moves == 1 and p.await_frame is True
    p.refused(pulse)
    assert p.moves == 0 and p.await_frame is False and p.rungs["double_tip"] == 0
    q = policy(consecutive=1, relocate=False)
    (pulse,) = q.observe("double_tip", 0.95, "a")
    q.refused(pulse)
    assert q.moves == 0  # nothing was planned, nothing taken back
    q.observe("step_edge", 0.95, "b")
    q.observe("step_edge", 0.95, "c")
    assert q.moves == 2
    (move,) = q.observe("step_edge", 0.95, "d")  # blamed on the tip after two moves: a pulse
    assert move.action == "pulse" and move.state == "poor"
    q.refused(move)
    assert q.moves == 2  # no move was planned with it
    r = policy(consecutive=1)
    (step,) = r.observe("step_edge", 0.95, "e")
    r.refused(step)
    assert r.moves == 0
    r.refused(step)  # a second refusal of the same never goes below the start
    assert r.moves == 0


def test_a_good_frame_forgets_the_moves_for_sample_faults() -> None:
    p = policy(consecutive=1)
    p.observe("step_edge", 0.95, "a")
    p.observe("step_edge", 0.95, "b")
    assert p.sample_moves == 2
    p.observe("unknown", 0.2, "c", bad=0.1)  # good: more likely good than bad
    assert p.sample_moves == 0
    assert p.observe("step_edge", 0.95, "d")[0].action == "move"  # a move again, not a pulse


# ----------------------------------------------------------------- durable state


def test_a_snapshot_holds_every_field_in_plain_numbers() -> None:
    clock = Clock()
    g = SafetyGate(limits=Limits(max_fruitless=2, cooldown_s=0.0), clock=clock)
    g.commit(PULSE, (1.5, -2.5))
    clock.t += 100
    g.commit(CRASH, (30.0, 40.0))
    g.hold("ada")
    clock.t += 50
    snap = g.snapshot(wall=1.0e9)
    assert snap == {
        "held": True,
        "held_by": "ada",
        "held_since": g.held_since,
        "needs_operator": True,
        "needs_operator_since": g.needs_operator_since,
        "fruitless": 2,
        "times": [1.0e9 - 150.0, 1.0e9 - 50.0],
        "last": 1.0e9 - 50.0,
        "spots": [[1.5, -2.5], [30.0, 40.0]],
    }
    fresh = SafetyGate(limits=Limits(max_fruitless=2, cooldown_s=0.0), clock=Clock())
    fresh.restore(snap, wall=1.0e9 + 10.0)
    assert fresh.snapshot(wall=1.0e9 + 10.0) == {
        **snap,
        "times": [1.0e9 - 150.0, 1.0e9 - 50.0],
        "last": 1.0e9 - 50.0,
    }
    assert fresh._times[0] == pytest.approx(5000.0 - 160.0)
    assert fresh._last == pytest.approx(5000.0 - 60.0)
    empty = SafetyGate(clock=Clock())
    empty.restore({})
    assert empty.snapshot()["times"] == [] and empty.snapshot()["last"] is None
    assert (empty.held, empty.needs_operator, empty.fruitless) == (False, False, 0)
    assert (empty.held_by, empty.held_since, empty.needs_operator_since) == ("", None, None)


def test_times_older_than_an_hour_are_not_kept() -> None:
    clock = Clock()
    g = SafetyGate(limits=Limits(cooldown_s=0.0, max_fruitless=99), clock=clock)
    g.commit(PULSE, (0.0, 0.0))
    clock.t += 3600.0
    assert g.snapshot(wall=2.0e9)["times"] == []
    assert g.snapshot(wall=2.0e9)["last"] == 2.0e9 - 3600.0


def test_reasons_name_time_and_the_way_out(tmp_path: Path) -> None:
    from tipd.safety import _when

    assert _when(None) == "an earlier run"
    assert _when(0.0) == time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(0.0))
    g = SafetyGate(limits=Limits(max_fruitless=1, cooldown_s=0.0), clock=Clock())
    g.hold("ada")
    g.commit(PULSE, (0.0, 0.0))
    held, needs = g.reasons()
    assert held == f"on hold by ada since {_when(g.held_since)}: `tipd release` ends it"
    assert needs == (
        f"needs_operator since {_when(g.needs_operator_since)}: 1 pulses or crashes without a "
        "good frame; look at the tip, then `tipd reset`"
    )
    g.held_by = ""
    assert g.reasons()[0].startswith("on hold by operator since")
    stop = tmp_path / "STOP"
    g.stop_file = stop
    stop.touch()
    assert g.reasons()[0] == f"stop file {stop} is present: remove it to go on"
    assert g.status()["stopped"] is True


def test_ladder_rungs_are_built_as_documented() -> None:
    from tipd.policy import _crash, _pulse

    assert _pulse(3.0) == Rung("pulse", {"bias_V": 3.0, "width_s": 0.2})
    assert _pulse(-3.0, 0.05) == Rung("pulse", {"bias_V": -3.0, "width_s": 0.05})
    assert _crash(1.2) == Rung("crash", {"depth_nm": 1.2, "bias_V": 0.02})


def test_a_hold_without_a_name_is_the_operators() -> None:
    g = SafetyGate(clock=Clock())
    g.hold()
    assert g.held_by == "operator"


def test_a_snapshot_without_a_wall_time_uses_the_clock_on_the_wall() -> None:
    g = SafetyGate(limits=Limits(cooldown_s=0.0), clock=Clock())
    g.commit(PULSE, (0.0, 0.0))
    before = time.time()
    snap = g.snapshot()
    assert before - 1 <= snap["last"] <= time.time() + 1
    again = SafetyGate(clock=Clock())
    again.restore(snap)
    assert again._last == pytest.approx(5000.0, abs=1.0)


def test_the_budget_reason_forgets_an_action_exactly_an_hour_old() -> None:
    clock = Clock()
    g = SafetyGate(limits=Limits(max_actions_per_hour=1, cooldown_s=0.0), clock=clock)
    g.commit(PULSE, (0.0, 0.0))
    clock.t += 1800.0
    assert g.reasons() == [
        "budget: 1 pulses or crashes in the last hour; the next is allowed in 30 min"
    ]
    clock.t += 1800.0 - 1e-6
    assert g.reasons()[0].endswith("allowed in 0 min")
    clock.t += 1e-6
    assert g.reasons() == []


def test_a_desirable_state_is_good_whatever_its_bad() -> None:
    p = policy(consecutive=1)
    assert p.observe("double_tip", 0.95, "a")[0].params["bias_V"] == 2.5
    assert p.observe("unknown", 0.1, "whole", bad=0.6) == []
    p.observe("good", 0.4, "g", bad=0.6)  # a good state the model is not sure of
    assert p.rungs == {}  # it still ends the climb
    assert p.observe("double_tip", 0.95, "b")[0].params["bias_V"] == 2.5


def test_weak_evidence_climbs_the_ladder_of_the_state_it_names() -> None:
    p = policy()
    for i in range(7):
        assert p.observe("blunt", 0.6, f"b{i}", bad=0.6) == []
    first = p.observe("blunt", 0.6, "b7", bad=0.6)[0]
    assert first.state == "blunt" and first.params == {"bias_V": 4.0, "width_s": 0.2}


def test_a_proposal_without_a_frame_names_none() -> None:
    p = policy(consecutive=1)
    assert p.observe("double_tip", 0.95)[0].frame_id == ""


def test_moves_of_any_length_are_exact() -> None:
    p = policy(move_nm=12.5)
    steps = [p._next_move() for _ in range(3)]
    assert steps == [
        {"dx_nm": 12.5, "dy_nm": 0.0},
        {"dx_nm": 0.0, "dy_nm": 12.5},
        {"dx_nm": -12.5, "dy_nm": 0.0},
    ]


def test_the_budget_reason_rounds_the_minutes_left() -> None:
    clock = Clock()
    g = SafetyGate(limits=Limits(max_actions_per_hour=1, cooldown_s=0.0), clock=clock)
    g.commit(PULSE, (0.0, 0.0))
    clock.t += 3600.0 - 89.5  # 1.49 min left
    assert g.reasons()[0].endswith("allowed in 1 min")

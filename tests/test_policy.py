"""The policy: hysteresis, ladders, fresh areas; and every proposal inside the gate's limits."""

from __future__ import annotations

import math

from tipd.policy import DEFAULT_LADDERS, Policy, PolicyConfig
from tipd.protocol import Command
from tipd.safety import Limits, SafetyGate
from tipd.taxonomy import UNFAMILIAR


def test_acts_only_after_three_confident_frames_in_a_row() -> None:
    p = Policy({"individual_atoms"})
    assert p.observe("double_tip", 0.95) == []
    assert p.observe("double_tip", 0.95) == []
    first, move = p.observe("double_tip", 0.95, "f3")
    assert first.action == "pulse" and first.params["bias_V"] == 2.5
    assert first.frame_id == "f3" and first.rung == 0 and not first.follow_up
    # then away from the conditioned spot at once, to a fresh area
    assert move.action == "move" and move.follow_up
    assert math.hypot(move.params["dx_nm"], move.params["dy_nm"]) == 150.0


def test_unsure_or_good_frames_break_the_streak() -> None:
    p = Policy({"individual_atoms"})
    p.observe("double_tip", 0.95)
    p.observe("double_tip", 0.95)
    assert p.observe("double_tip", 0.89) == []  # below 0.9 and not surely bad: restart
    p.observe("double_tip", 0.95)
    p.observe("double_tip", 0.95)
    assert p.observe("individual_atoms", 0.95) == []
    assert p.observe("double_tip", 0.95) == []
    assert p.observe("unknown", 1.0) == []


def test_a_streak_of_bad_frames_acts_on_its_most_frequent_fault() -> None:
    p = Policy({"individual_atoms"})
    p.observe("double_tip", 0.95)
    p.observe("tip_change", 0.95)
    (pulse, _) = p.observe("double_tip", 0.6, bad=0.93)  # sure it is bad; double passed its
    assert pulse.state == "double_tip" and pulse.confidence == 0.93  # threshold to be named
    p.observe("step_edge", 0.99)
    p.observe("unknown", 0.0, bad=0.95)
    (move,) = p.observe("step_edge", 0.97)
    assert move.state == "step_edge" and move.action == "move" and move.confidence == 0.97


def test_a_frame_surely_bad_for_no_named_reason_is_a_poor_tip() -> None:
    p = Policy({"individual_atoms"})
    assert p.observe("unknown", 0.0, bad=0.95) == []
    assert p.observe("double_tip", 0.5, bad=0.95) == []  # unsure of the cause, sure it is bad
    first, _ = p.observe("unknown", 0.0, "f3", bad=0.92)
    assert first.state == "poor" and first.action == "pulse" and first.confidence == 0.92
    for _ in range(3):  # bad just below the confidence: no streak
        assert p.observe("unknown", 0.0, bad=0.89) == []


def test_ladder_climbs_and_resets_after_a_good_frame() -> None:
    p = Policy({"individual_atoms"}, PolicyConfig(consecutive=1, relocate=False))
    actions = [p.observe("double_tip", 0.99) for _ in range(10)]
    assert all(len(a) == 1 for a in actions)
    assert [a[0].action for a in actions][:8] == [r.action for r in DEFAULT_LADDERS["double_tip"]]
    assert actions[-1][0].action == "crash"  # stays on the top rung
    p.observe("individual_atoms", 0.99)
    (again,) = p.observe("double_tip", 0.99)
    assert again.rung == 0


def test_a_refused_rung_is_tried_again_not_skipped() -> None:
    p = Policy({"individual_atoms"}, PolicyConfig(consecutive=1))
    _first, move = p.observe("double_tip", 0.99)
    p.refused(move)  # a refused follow-up move does not undo the pulse that was sent
    second, _ = p.observe("double_tip", 0.99)
    assert second.rung == 1
    p.refused(second)
    third, _ = p.observe("double_tip", 0.99)
    assert third.rung == 1 and third.params == second.params


def test_sample_faults_move_to_fresh_areas() -> None:
    p = Policy({"good"}, PolicyConfig(consecutive=1, move_nm=150.0, moves_before_tip=99))
    spots = [(0.0, 0.0)]
    for _ in range(12):
        (m,) = p.observe("step_edge", 0.99)
        assert m.action == "move"
        assert math.hypot(m.params["dx_nm"], m.params["dy_nm"]) == 150.0
        x, y = spots[-1]
        spots.append((x + m.params["dx_nm"], y + m.params["dy_nm"]))
    assert min(math.dist(a, b) for i, a in enumerate(spots) for b in spots[i + 1 :]) > 20.0


def test_every_default_rung_passes_the_default_gate() -> None:
    limits = Limits()
    for state, ladder in DEFAULT_LADDERS.items():
        for rung in ladder:
            params = rung.params or {"dx_nm": 150.0, "dy_nm": 0.0}
            gate = SafetyGate(limits=limits)
            c = Command(microscope="stm1", action=rung.action, params=params)  # type: ignore[arg-type]
            assert gate.check(c, (0.0, 0.0)).allowed, (state, rung)


def test_a_sample_fault_that_follows_every_move_is_blamed_on_the_tip() -> None:
    p = Policy({"individual_atoms"}, PolicyConfig(consecutive=1))
    assert [a.action for a in p.observe("corruption", 0.95)] == ["move"]
    assert [a.action for a in p.observe("corruption", 0.95)] == ["move"]
    pulse, _ = p.observe("corruption", 0.95)  # two moves and still there: the tip
    assert pulse.state == "poor" and pulse.action == "pulse"
    p.observe("unknown", 0.0, bad=0.1)  # a good-looking frame: the sample may be at fault again
    assert [a.action for a in p.observe("corruption", 0.95)] == ["move"]


def test_weak_evidence_acts_when_it_persists() -> None:
    p = Policy({"individual_atoms"})
    for _ in range(7):
        assert p.observe("unknown", 0.0, bad=0.6) == []
    pulse, move = p.observe("double_tip", 0.8, bad=0.6)
    assert pulse.state == "poor" and pulse.confidence == 0.6 and move.action == "move"
    for _ in range(7):
        p.observe("unknown", 0.0, bad=0.6)
    assert p.observe("unknown", 0.0, bad=0.4) == []  # more likely good: the streak breaks
    assert all(p.observe("unknown", 0.0, bad=0.6) == [] for _ in range(7))


def test_windows_count_only_when_they_name_a_state_surely() -> None:
    p = Policy({"individual_atoms"})
    for _ in range(20):  # unsure windows: no evidence, and no streak broken either
        assert p.observe("corruption", 0.7, bad=0.99, window=True) == []
    p.observe("double_tip", 0.95, window=True)
    p.observe("unknown", 0.1, bad=0.99, window=True)
    p.observe("double_tip", 0.95, window=True)
    (pulse, _) = p.observe("double_tip", 0.95, window=True)
    assert pulse.state == "double_tip"


def test_after_conditioning_windows_wait_for_a_whole_frame() -> None:
    p = Policy({"individual_atoms"}, PolicyConfig(consecutive=1))
    pulse, _ = p.observe("double_tip", 0.95, window=True)
    assert pulse.action == "pulse"
    for _ in range(5):  # the frame in progress is partly the old tip: no evidence
        assert p.observe("double_tip", 0.99, window=True) == []
    (again, _) = p.observe("double_tip", 0.95)  # a whole frame: evidence again
    assert again.rung == 1
    p.refused(again)
    assert p.observe("double_tip", 0.99, window=True)[0].rung == 1  # nothing was done


def test_refused_proposals_do_not_move_the_spiral_on() -> None:
    """A refused pulse's follow-up move is never sent, and a refused move moves nothing: the
    spots actually visited stay apart however many proposals were refused (the demo once
    walked back onto a pulsed spot and refused every pulse after)."""
    p = Policy({"individual_atoms"}, PolicyConfig(consecutive=1, move_nm=150.0))
    here, spots, refused = (0.0, 0.0), [(0.0, 0.0)], 0
    for k in range(40):
        proposals = p.observe("double_tip", 0.99)
        if k % 3 != 2:  # two of three refused by the gate (cooldown, say): nothing is sent
            p.refused(proposals[0])
            refused += 1
            continue
        pulse, move = proposals
        assert pulse.action in ("pulse", "crash") and move.action == "move"
        if k % 9 == 8:  # the move itself refused: the tip stays
            p.refused(move)
            continue
        here = (here[0] + move.params["dx_nm"], here[1] + move.params["dy_nm"])
        spots.append(here)
    assert refused > 20 and len(spots) > 6
    assert min(math.dist(a, b) for i, a in enumerate(spots) for b in spots[i + 1 :]) > 20.0


def test_unfamiliar_frames_never_act_and_break_a_streak() -> None:
    p = Policy({"good"})
    assert all(p.observe(UNFAMILIAR, 1.0, f"u{i}", bad=1.0) == [] for i in range(20))
    assert p.observe("double_tip", 0.95, "a", bad=0.99) == []
    assert p.observe("double_tip", 0.95, "b", bad=0.99) == []
    assert p.observe(UNFAMILIAR, 1.0, "u", bad=0.5) == []
    assert p.observe("double_tip", 0.95, "c", bad=0.99) == []  # a fresh streak: 1 of 3
    assert p.observe("double_tip", 0.95, "d", bad=0.99) == []
    assert [q.action for q in p.observe("double_tip", 0.95, "e", bad=0.99)] == ["pulse", "move"]
    # weak evidence (bad ≥ 0.5 on 8 frames in a row) is broken by an unfamiliar frame too
    q = Policy({"good"})
    for i in range(7):
        assert q.observe("unknown", 0.3, f"w{i}", bad=0.6) == []
    assert q.observe(UNFAMILIAR, 1.0, "u", bad=0.5) == []
    assert q.observe("unknown", 0.3, "w7", bad=0.6) == []

"""The policy: hysteresis, ladders, fresh areas; and every proposal inside the gate's limits."""

from __future__ import annotations

import math

from tipd.policy import DEFAULT_LADDERS, Policy, PolicyConfig
from tipd.protocol import Command
from tipd.safety import Limits, SafetyGate


def test_acts_only_after_three_confident_frames_in_a_row() -> None:
    p = Policy({"individual_atoms"})
    assert p.observe("double_tip", 0.95) is None
    assert p.observe("double_tip", 0.95) is None
    first = p.observe("double_tip", 0.95, "f3")
    assert first is not None and first.action == "pulse" and first.params["bias_V"] == 2.5
    assert first.frame_id == "f3" and first.rung == 0


def test_low_confidence_or_other_states_break_the_streak() -> None:
    p = Policy({"individual_atoms"})
    p.observe("double_tip", 0.95)
    p.observe("double_tip", 0.95)
    assert p.observe("double_tip", 0.89) is None  # below 0.9: the streak restarts
    p.observe("double_tip", 0.95)
    p.observe("tip_change", 0.95)
    assert p.observe("double_tip", 0.95) is None
    assert p.observe("unknown", 1.0) is None


def test_ladder_climbs_and_resets_after_a_good_frame() -> None:
    p = Policy({"individual_atoms"}, PolicyConfig(consecutive=1))
    actions = [p.observe("double_tip", 0.99) for _ in range(10)]
    assert [a.action for a in actions if a][:8] == [r.action for r in DEFAULT_LADDERS["double_tip"]]
    assert actions[-1] is not None and actions[-1].action == "crash"  # stays on the top rung
    p.observe("individual_atoms", 0.99)
    again = p.observe("double_tip", 0.99)
    assert again is not None and again.rung == 0


def test_sample_faults_move_to_fresh_areas() -> None:
    p = Policy({"good"}, PolicyConfig(consecutive=1, move_nm=150.0))
    spots = [(0.0, 0.0)]
    for _ in range(12):
        m = p.observe("step_edge", 0.99)
        assert m is not None and m.action == "move"
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

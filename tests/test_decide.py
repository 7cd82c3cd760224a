"""The decision step (:mod:`tipd.decide`) with the shipped generic model's real decision rules
(:func:`tipd.ensemble.decide`) on chosen vote vectors, the real policy and the real safety gate on
an injected clock: what it sends, what it refuses, where a refused spot leads, and what only an
operator may clear."""

from __future__ import annotations

import numpy as np
import pytest

from tipd.decide import Rules, Step, history, replied, step
from tipd.ensemble import Decision, decide
from tipd.frames import Frame
from tipd.models import find, load_manifest
from tipd.policy import PolicyConfig
from tipd.protocol import Reply
from tipd.safety import Limits

MANIFEST = load_manifest(find("generic"))
LIVE = Rules(advisory=False)


class Votes:
    """A judge whose nets voted ``voted`` (labels: good, double_tip, blunt, tip_change,
    corruption) on every frame, read by tipd's own decision rules."""

    manifest = MANIFEST

    def __init__(self, *voted: float, familiarity: float | None = None) -> None:
        self.voted = np.array(voted)
        self.familiarity = familiarity

    def classify(self, frames: list[Frame], meanwhile: object = None) -> list[Decision]:
        if callable(meanwhile):
            meanwhile()
        members = np.tile(self.voted, (len(MANIFEST.members), 1))
        return [decide(MANIFEST, self.voted, members, self.familiarity, threshold=0.01)] * len(
            frames
        )


DOUBLE = Votes(0.01, 0.99, 0.0, 0.0, 0.0)
GOOD = Votes(0.99, 0.0, 0.0, 0.0, 0.0)
STRANGE = Votes(0.01, 0.99, 0.0, 0.0, 0.0, familiarity=0.0)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def frame(k: int, at: tuple[float, float] = (0.0, 0.0)) -> Frame:
    """Frame ``k``: new corrugation along the lines every time, the same on every line (no
    line jumps), unlike any frame before (so the sample's memory never takes one for another)
    and too small for the physical tests: the nets' votes decide."""
    rng = np.random.default_rng(k)
    z = np.tile(rng.normal(0, 1e-10, 32), (32, 1)) + rng.normal(0, 1e-13, (32, 32))
    return Frame(z, (20.0, 20.0), microscope="stm1", frame_id=f"f{k}", position_nm=at)


def run(hist_, judge: Votes, n: int, at: tuple[float, float] = (0.0, 0.0), rules: Rules = LIVE,
        clock: Clock | None = None) -> list[Step]:  # fmt: skip
    """``n`` steps of ``hist_`` on new frames (numbered on from the last this history saw)."""
    out = []
    first = MADE.get(id(hist_), 0)
    for k in range(first, first + n):
        if clock is not None:
            clock.t += 10.0
        out.append(step(frame(k, at), hist_, judge, rules))
    MADE[id(hist_)] = first + n
    return out


#: frames made so far for each history of the running test (by id)
MADE: dict[int, int] = {}


@pytest.fixture(autouse=True)
def _fresh_frames() -> None:
    MADE.clear()  # every test sees the same frames, whatever ran before it


def test_three_sure_double_tips_send_a_pulse_and_a_move_committed_at_the_gate() -> None:
    clock = Clock()
    h = history("stm1", {"good"}, clock=clock)
    steps = run(h, DOUBLE, 3, clock=clock)
    assert [s.to_send for s in steps[:2]] == [[], []]
    pulse, move = steps[2].actions
    assert (pulse.outcome, pulse.command.action, move.command.action) == ("send", "pulse", "move")
    assert pulse.command.params.bias_V == 2.5  # type: ignore[union-attr]
    assert h.gate.fruitless == 1 and steps[2].gate_changed


def test_advisory_decides_and_sends_nothing_and_commits_nothing() -> None:
    h = history("stm1", {"good"})
    last = run(h, DOUBLE, 3, rules=Rules(advisory=True))[-1]
    assert [a.outcome for a in last.actions] == ["advisory"]
    assert last.to_send == [] and h.gate.fruitless == 0 and not last.gate_changed


def test_a_restart_on_a_conditioned_spot_moves_away_then_conditions_there() -> None:
    clock = Clock()
    first = history("stm1", {"good"}, clock=clock)
    run(first, DOUBLE, 3, clock=clock)
    kept = first.gate.snapshot()

    again = history("stm1", {"good"}, clock=clock)  # a new daemon on the same spot
    again.gate.restore(kept)
    clock.t += 60
    refused, detour = run(again, DOUBLE, 3, clock=clock)[-1].actions
    assert refused.outcome == "refused" and refused.refusal == "forbidden"
    assert refused.command.action == "pulse"
    assert detour.outcome == "send" and detour.command.action == "move"
    dx, dy = detour.command.params.dx_nm, detour.command.params.dy_nm  # type: ignore[union-attr]
    assert np.hypot(dx, dy) == pytest.approx(150.0)  # one policy step, to the nearest free area
    there = run(again, DOUBLE, 3, at=(dx, dy), clock=clock)[-1]
    assert [a.command.action for a in there.actions] == ["pulse", "move"]
    assert all(a.outcome == "send" for a in there.actions)
    # the refused rung was never climbed: the pulse there is the gentlest one
    assert there.actions[0].command.params.bias_V == 2.5  # type: ignore[union-attr]


def test_no_detour_when_the_refusal_is_not_the_spot() -> None:
    clock = Clock()
    h = history("stm1", {"good"}, limits=Limits(max_bias_V=1.0), clock=clock)
    last = run(h, DOUBLE, 3, clock=clock)[-1]
    assert [(a.outcome, a.refusal) for a in last.actions] == [("refused", "limit")]


def test_no_detour_when_every_area_in_reach_is_forbidden() -> None:
    clock = Clock()
    h = history("stm1", {"good"}, limits=Limits(max_move_nm=100.0), clock=clock)
    run(h, DOUBLE, 3, clock=clock)
    h.policy.config = PolicyConfig(move_nm=150.0)  # no step of 150 nm fits in 100 nm
    last = run(h, DOUBLE, 3, clock=clock)[-1]
    assert [(a.outcome, a.refusal) for a in last.actions] == [("refused", "forbidden")]


def test_a_good_frame_ends_the_fruitless_run_but_never_clears_needs_operator() -> None:
    clock = Clock()
    h = history("stm1", {"good"}, limits=Limits(max_fruitless=1, cooldown_s=0), clock=clock)
    raised = run(h, DOUBLE, 3, clock=clock)[-1]
    assert raised.needs_operator and h.gate.needs_operator
    good = run(h, GOOD, 5, clock=clock)
    assert all(s.good for s in good)
    assert h.gate.needs_operator and h.gate.fruitless == 0  # only an operator clears it
    held = run(h, DOUBLE, 3, at=(500.0, 0.0), clock=clock)[-1]
    assert [(a.outcome, a.refusal) for a in held.actions] == [("refused", "needs_operator")]
    h.gate.reset_operator()
    assert run(h, DOUBLE, 3, at=(500.0, 0.0), clock=clock)[-1].to_send


def test_unfamiliar_frames_never_act_and_make_a_microscope_blind() -> None:
    h = history("stm1", {"good"})
    steps = run(h, STRANGE, 5, rules=Rules(advisory=False, blind_after=3))
    assert all(s.actions == [] for s in steps)
    assert [s.blind for s in steps] == [False, False, True, False, False]
    back = step(frame(9), h, GOOD, LIVE)
    assert back.familiar_after == 5 and h.unfamiliar == 0


def test_windows_are_reported_but_drive_nothing_unless_asked() -> None:
    h = history("stm1", {"good"})
    for k in range(5):
        s = step(frame(k), h, DOUBLE, LIVE, kind="window", first_row=16)
        assert s.actions == [] and s.kind == "window"
    acting = Rules(advisory=False, act_on_windows=True)
    assert any(step(frame(k), h, DOUBLE, acting, kind="window").to_send for k in range(3))


def test_a_failed_reply_takes_the_rung_back() -> None:
    clock = Clock()
    h = history("stm1", {"good"}, clock=clock)
    pulse = run(h, DOUBLE, 3, clock=clock)[-1].actions[0]
    replied(h, pulse, Reply(id=pulse.command.id, status="failed", t_done=1.0))
    again = run(h, DOUBLE, 3, at=(900.0, 0.0), clock=clock)[-1].actions[0]
    assert again.command.params.bias_V == 2.5  # type: ignore[union-attr]


def test_the_frames_physics_beside_the_nets_or_before_them_decides_alike() -> None:
    """``beside=False`` (tipd reprocess's workers: one process a core) runs the frame's tests on
    the caller's thread; the decision is the one the ensemble's own thread gives."""
    import threading

    from tipd.ensemble import Ensemble
    from tipd.synth import generate

    lab = generate("au111", 3, seed=5, pixels=256)
    f = Frame(lab.heights_m, lab.scan_size_nm, microscope="stm1", frame_id="f1")
    decided, ran_on = [], []
    for beside in (True, False):
        ens = Ensemble(find("au111"), prefer_gpu=False, threads=1, beside=beside)
        ens.classify([f], meanwhile=lambda: ran_on.append(threading.get_ident()))
        done = step(f, history("stm1", set(ens.manifest.desirable)), ens, Rules(advisory=True))
        decided.append((done.decision.state, done.decision.bad, done.decision.evidence))
    assert ran_on[0] != threading.get_ident() and ran_on[1] == threading.get_ident()
    assert decided[0] == decided[1] and decided[0][2]  # the physics spoke, alike

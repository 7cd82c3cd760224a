"""From tip states over time to a proposed conditioning action (before the safety gate).

DESIGN.md's defaults: act only after ``consecutive`` frames (default 3) in the same undesirable
state at confidence ≥ ``confidence`` (0.9), as DeepSPM and Scanbot waited for several bad
images; then climb that state's escalation ladder one rung per action, and start again from
the bottom once a good frame is seen:

* double tip: pulses of growing strength and alternating sign, then crashes (dips);
* persistent tip change: a gentle pulse;
* blunt (H:Si rows when atoms are the target, or the generic ``blunt``): a strong pulse, then
  crashes;
* step edge, impurity, corruption, generic defect: the sample is at fault, not the tip, so
  move to a fresh area (along a spiral, so that no area is visited twice);
* ``poor``: no fault class is sure, but the ensemble is sure the frame is not good (``bad`` ≥
  the confidence): the tip images badly in a way the model has no name for (a blunt Au tip,
  loose material), so condition it as a double tip;
* ``unfamiliar``: the model does not know what it is looking at (:mod:`tipd.familiarity`), so
  the frame is no evidence either way: nothing is done, and a streak of evidence starts again
  from the next familiar frame.

Every pulse or crash is followed at once by a move to a fresh area, as DeepSPM and a
microscopist do: the conditioned spot may carry a crater or debris, and the gate forbids
acting on it again.

Pulse figures follow DeepSPM's (±2.5, ±4 V for 200 ms and beyond); dips stay within Scanbot's
light (0.9 nm) to aggressive (1.5 nm) indents before going deeper, always below the gate's
limits. A proposal is only a proposal: the safety gate decides what is sent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tipd.protocol import CONDITIONING, Command, Reason
from tipd.taxonomy import UNFAMILIAR


@dataclass(frozen=True)
class Rung:
    """One step of a ladder: an action and its parameters (V, s, nm)."""

    action: str
    params: dict[str, float] = field(default_factory=dict)


def _pulse(v: float, s: float = 0.2) -> Rung:
    return Rung("pulse", {"bias_V": v, "width_s": s})


def _crash(nm: float) -> Rung:
    return Rung("crash", {"depth_nm": nm, "bias_V": 0.02})


MOVE = Rung("move")
DOUBLE = (
    _pulse(2.5),
    _pulse(-2.5),
    _pulse(4.0),
    _pulse(-4.0),
    _pulse(6.0),
    _crash(0.9),
    _crash(1.5),
    _crash(2.5),
)
BLUNT = (_pulse(4.0), _pulse(6.0), _crash(0.9), _crash(1.5), _crash(2.5))
DEFAULT_LADDERS: dict[str, tuple[Rung, ...]] = {
    "double_tip": DOUBLE,
    "tip_change": (_pulse(2.5, 0.1), *DOUBLE[1:]),
    "blunt": BLUNT,
    "rows": BLUNT,
    "step_edge": (MOVE,),
    "impurity": (MOVE,),
    "corruption": (MOVE,),
    "generic_defect": (MOVE,),
    "poor": DOUBLE,
}


@dataclass(frozen=True)
class PolicyConfig:
    """When to act (see :meth:`Policy.observe`) and how far to move."""

    confidence: float = 0.9  #: a frame is surely bad at this confidence ...
    consecutive: int = 3  #: ... and this many surely bad frames in a row act
    weak_confidence: float = 0.5  #: a frame more likely bad than good ...
    weak_consecutive: int = 8  #: ... and this many of them in a row act too
    moves_before_tip: int = 2  #: moves for a sample fault before blaming the tip instead
    move_nm: float = 150.0  #: length of a move to a fresh area
    relocate: bool = True  #: move to a fresh area right after every pulse or crash
    ladders: dict[str, tuple[Rung, ...]] = field(default_factory=lambda: dict(DEFAULT_LADDERS))


@dataclass(frozen=True)
class Proposal:
    """What the policy would do: ``action`` with ``params`` because of ``state``."""

    state: str
    confidence: float
    action: str
    params: dict[str, float]
    rung: int
    frame_id: str
    follow_up: bool = False  #: a move that follows a pulse or crash to a fresh area
    #: a move around a forbidden spot to the nearest free area (:mod:`tipd.decide`), not a
    #: step of the policy's spiral: refusing it changes nothing here
    detour: bool = False

    def command(self, microscope: str) -> Command:
        """The wire command that carries this proposal out on ``microscope``, with its reason."""
        return Command(
            microscope=microscope,
            action=self.action,  # type: ignore[arg-type]
            params=self.params,  # type: ignore[arg-type]
            reason=Reason(
                state=self.state, confidence=min(1.0, self.confidence), frame_id=self.frame_id
            ),
        )


SAMPLE_FAULTS = frozenset(("step_edge", "impurity", "corruption", "generic_defect"))


class Policy:
    """The policy of one microscope. ``desirable`` names the good states of its model."""

    def __init__(self, desirable: set[str], config: PolicyConfig | None = None) -> None:
        self.desirable = desirable
        self.config = config or PolicyConfig()
        self.faults: list[tuple[str, float]] = []  #: the surely-bad streak: (fault, confidence)
        self.weak: list[tuple[str, float]] = []  #: the more-likely-bad streak
        self.rungs: dict[str, int] = {}
        self.moves = 0
        self.sample_moves = 0  #: moves for sample faults since the last good frame
        #: after a pulse or crash, windows are ignored until a whole frame has been seen
        self.await_frame = False

    def good(self, state: str, bad: float) -> bool:
        """Whether a frame counts as good: a desirable state, or more likely good than bad."""
        return state in self.desirable or bad < self.config.weak_confidence

    def fault(self, state: str, confidence: float, bad: float) -> tuple[str, float] | None:
        """What is surely wrong with one frame, and how sure: the winning ``state`` when it
        has a ladder and is at least ``confidence`` sure; else, when the frame is surely bad
        (``bad`` ≥ ``confidence``), that state if it has a ladder (it passed its precision
        threshold), or ``poor``; None when the frame is good or the evidence unsure."""
        cfg = self.config
        if state in self.desirable:
            return None
        if state in cfg.ladders and confidence >= cfg.confidence:
            return state, confidence
        if bad >= cfg.confidence:
            return (state if state in cfg.ladders else "poor"), bad
        return None

    def observe(
        self,
        state: str,
        confidence: float,
        frame_id: str = "",
        bad: float | None = None,
        window: bool = False,
    ) -> list[Proposal]:
        """One decision: the winning ``state``, its confidence 0–1 and ``bad``, the confidence
        0–1 that the frame is not good (default: ``confidence`` for an undesirable state).
        Returns what to send, in order (often nothing). A ``window`` decision (the newest
        lines of a frame in progress, squeezed into the model's square input) counts only
        when it names a state at ``confidence``: its ``bad`` is not trusted either way.

        DESIGN.md's rule, "act after 3 consecutive frames bad at confidence ≥ 0.9": a streak
        of ``consecutive`` frames each with a :meth:`fault` acts on the fault seen most often
        in it (the latest on a tie). Weaker evidence held longer acts too: ``weak_consecutive``
        frames in a row each more likely bad than good (``bad`` ≥ ``weak_confidence``; with
        8 frames in a row, a model whose good frames look bad one time in ten errs one time in
        10⁸). A sample fault that persists through ``moves_before_tip`` moves is blamed on the
        tip (``poor``). A good frame resets everything; an unsure or ``unfamiliar`` one breaks
        the streaks (and an unfamiliar one never acts)."""
        cfg = self.config
        if window and self.await_frame:
            return []  # the frame in progress was partly scanned before the last action
        if not window:
            self.await_frame = False
        if state == UNFAMILIAR:
            self.faults, self.weak = [], []  # blind: a streak must be seen, not assumed
            return []
        if bad is None or window:
            bad = 0.0 if state in self.desirable else confidence
        if window and state not in self.desirable and confidence < cfg.confidence:
            return []  # neither evidence nor counter-evidence
        if self.good(state, bad):
            self.sample_moves = 0
            self.rungs.clear()
        if state in self.desirable:
            self.faults.clear()
            self.weak.clear()
            return []
        named = state if state in cfg.ladders else "poor"
        sure = self.fault(state, confidence, bad)
        self.faults = [*self.faults, sure] if sure is not None else []
        if not window:
            self.weak = [*self.weak, (named, bad)] if bad >= cfg.weak_confidence else []
        if len(self.faults) >= cfg.consecutive:
            streak = self.faults
        elif len(self.weak) >= cfg.weak_consecutive:
            streak = self.weak
        else:
            return []
        names = [f for f, _ in streak]
        state = max(reversed(names), key=names.count)  # most frequent, latest on a tie
        confidence = min(c for f, c in streak if f == state)
        self.faults, self.weak = [], []  # fresh evidence is needed before the next action
        if state in SAMPLE_FAULTS:
            if self.sample_moves >= cfg.moves_before_tip:
                state = "poor"  # moved away and it is still there: the tip is at fault
            else:
                self.sample_moves += 1
        if state not in cfg.ladders:
            return []
        ladder = cfg.ladders[state]
        rung = self.rungs.get(state, 0)
        step = ladder[min(rung, len(ladder) - 1)]
        self.rungs[state] = rung + 1
        params = dict(step.params)
        if step.action == "move":
            params = self._next_move()
        out = [Proposal(state, confidence, step.action, params, rung, frame_id)]
        if step.action in CONDITIONING:
            self.await_frame = True
            if cfg.relocate:
                move = self._next_move()
                out.append(Proposal(state, confidence, "move", move, rung, frame_id, True))
        return out

    def refused(self, proposal: Proposal) -> None:
        """The gate (or the controller) refused ``proposal``: its rung was not climbed, and
        no move was made: neither ``proposal`` if it is a move, nor the follow-up move planned
        with a refused pulse or crash (the daemon sends nothing after a refusal). The spiral
        of moves takes that step again next time, so it never drifts off the path it planned
        and back onto a spot that was conditioned. A ``detour`` was never the policy's."""
        if proposal.detour:
            return
        if proposal.action in CONDITIONING:
            self.await_frame = False  # nothing was done: no fresh frame is needed
        planned_move = proposal.action == "move" or (
            proposal.action in CONDITIONING and self.config.relocate
        )
        if planned_move and self.moves > 0:
            self.moves -= 1
        if not proposal.follow_up:
            current = self.rungs.get(proposal.state, 0)
            self.rungs[proposal.state] = min(current, proposal.rung)

    def _next_move(self) -> dict[str, float]:
        """The next step of a square spiral around the starting area (legs of 1, 1, 2, 2, 3,
        3, … steps, turning left), so no area is visited twice and every move is one step."""
        k, leg, turn = self.moves, 1, 0
        while k >= leg:  # find the leg that step number ``moves`` falls on
            k -= leg
            turn += 1
            leg += turn % 2 == 0
        self.moves += 1
        angle = turn * math.pi / 2
        step = self.config.move_nm
        return {
            "dx_nm": round(step * math.cos(angle), 9),
            "dy_nm": round(step * math.sin(angle), 9),
        }

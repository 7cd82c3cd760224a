"""One decision step: a frame and its microscope's history in, its state and commands out.

::

    frame ─► evidence ─► state ─► policy ─► safety gate ─► commands to send
              (nets + familiarity, scan lines)

:func:`step` is the whole of it, and the only place tipd decides: the daemon
(:mod:`tipd.service`), the closed-loop benchmark (:mod:`tipd.closedloop`) and ``tipd classify``
all call it. It does no I/O: the caller publishes, journals and sends what it returns, and
tells it of the controller's reply (:func:`replied`). Time comes from the gate's injected
clock (:func:`history`), so the same step runs on a daemon's wall clock and on a simulated one.

What one microscope's decisions remember between frames is its :class:`History`: the policy's
streaks and ladders, the safety gate's budgets and spots, where the tip is, and how many whole
frames in a row the model did not know. :func:`history` is the one place a policy and a gate
are built.

A pulse or crash refused because its spot is forbidden (conditioned before, in this run or an
earlier one) leads away: the step asks the gate for the nearest free area within a move and
sends the move instead, so the next run of bad frames conditions the tip there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Protocol

from tipd import evidence
from tipd.ensemble import Decision
from tipd.frames import Frame
from tipd.models import Manifest
from tipd.physics.memory import SampleMemory, compare
from tipd.policy import Policy, PolicyConfig, Proposal
from tipd.preprocess import line_jumps
from tipd.protocol import CONDITIONING, Command, Reply
from tipd.safety import Limits, SafetyGate
from tipd.scanlines import NONE
from tipd.taxonomy import UNFAMILIAR

Kind = Literal["frame", "window"]
Outcome = Literal["send", "refused", "advisory"]


@dataclass
class History:
    """What the decisions of microscope ``name`` remember between frames: the policy's
    streaks and ladders, the gate's budgets and spots, the sample's memory (each area's
    reference frame), and how many whole frames in a row the model did not know."""

    name: str
    policy: Policy
    gate: SafetyGate
    memory: SampleMemory = field(default_factory=SampleMemory)
    unfamiliar: int = 0  #: whole frames in a row that the model did not know


def history(
    name: str,
    desirable: set[str],
    policy: PolicyConfig | None = None,
    limits: Limits | None = None,
    stop_file: Path | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> History:
    """A fresh history of microscope ``name``: a :class:`Policy` for the good states
    ``desirable`` and a :class:`SafetyGate` with ``limits`` on ``clock`` (monotonic s)."""
    return History(
        name,
        Policy(desirable, policy or PolicyConfig()),
        SafetyGate(limits=limits or Limits(), stop_file=stop_file, clock=clock),
    )


@dataclass(frozen=True)
class Rules:
    """How the step treats what it decided: ``advisory`` decides and sends nothing; windows
    (the newest lines of a frame in progress) drive the policy only with ``act_on_windows``;
    ``blind_after`` unfamiliar whole frames in a row make a microscope blind."""

    advisory: bool = True
    act_on_windows: bool = False
    blind_after: int = 3


@dataclass(frozen=True)
class Action:
    """One proposal of the policy and what became of it: ``send`` (passed the gate and
    committed there: the caller sends ``command``), ``refused`` (by the gate; ``detail``
    says why) or ``advisory`` (passed the gate, not sent)."""

    proposal: Proposal
    command: Command
    outcome: Outcome
    detail: str = ""
    refusal: str = ""  #: the gate's code for a refusal (:data:`tipd.safety.CODES`)


@dataclass
class Step:
    """What one step decided about one frame (or window) of one microscope."""

    decision: Decision  #: the evidence and the state
    kind: Kind
    line_jumps: list[int]  #: frame rows that start a horizontal discontinuity
    good: bool  #: the frame counts as good (the gate's fruitless run ended if it ran)
    actions: list[Action] = field(default_factory=list)
    blind: bool = False  #: this frame made the microscope blind (``blind_after`` reached)
    familiar_after: int = 0  #: the run of unfamiliar frames this frame ended, if any
    gate_changed: bool = False  #: the gate's state changed: keep it
    needs_operator: bool = False  #: this step set the gate's ``needs_operator``

    @property
    def to_send(self) -> list[Command]:
        """The commands the caller must send, in order."""
        return [a.command for a in self.actions if a.outcome == "send"]


class Judge(Protocol):
    """What reads frames: :class:`tipd.ensemble.Ensemble` (its nets, familiarity and the
    frame's scan lines), with the ``manifest`` of its model."""

    manifest: Manifest

    def classify(
        self, frames: list[Frame], meanwhile: Callable[[], object] | None = None
    ) -> list[Decision]: ...


def weigh(frame: Frame, judge: Judge, hist: History, kind: Kind = "frame") -> Decision:
    """Everything said of ``frame``, weighed into one :class:`Decision`: the nets (``judge``),
    and for a whole frame the physics of its own heights and its area's memory
    (:mod:`tipd.evidence`). The frame is then remembered: as its area's reference when the
    area has none, or it looks different now without a fault to show for it."""
    if kind == "window":  # the newest lines of a frame in progress: the nets and lines only
        return judge.classify([frame])[0]
    physics: list[evidence.Physical] = []  # the frame's own tests, done while the nets run

    def tests() -> None:
        physics.append(evidence.examine(frame, lines=NONE))  # the nets' decision has the lines

    nets = judge.classify([frame], meanwhile=tests)[0]
    found = replace(physics[0], lines=nets.lines)
    said = evidence.absolute(found)
    if not found.view.usable:  # too small to read: nor to compare with what its area showed
        return evidence.combine(nets, judge.manifest, said)
    reference = hist.memory.reference(frame)
    now = evidence.seen(frame.frame_id, found, {})
    cmp = compare(now, reference) if reference is not None else None
    if cmp is not None:
        said += evidence.relative(found, cmp)
    explained = evidence.explained_by(found, reference, cmp)
    decision = evidence.combine(nets, judge.manifest, said, explained)
    faults = _own_faults(decision, judge.manifest)
    new_look = cmp is None or not cmp.unchanged
    relative_fault = any(
        e.source == "memory" and e.fault in evidence.FAULTS and e.probability >= 0.5
        for e in decision.evidence
    )
    adopt = reference is None or (new_look and decision.acting_bad < 0.5 and not relative_fault)
    kept = evidence.seen(frame.frame_id, found, faults, bad=decision.acting_bad)
    hist.memory.keep(frame, kept, adopt)
    return decision


def _own_faults(decision: Decision, manifest: Manifest) -> dict[str, float]:
    """Each fault's probability from the frame alone (its physics and the nets' classes): what
    a later frame of its area is judged against."""
    out: dict[str, float] = {}
    for e in decision.evidence:
        if e.certain and e.source != "memory" and e.fault in evidence.FAULTS:
            out[e.fault] = max(out.get(e.fault, 0.0), e.probability)
    if decision.familiar:
        for c in manifest.classes:
            if c not in manifest.desirable:
                out[c] = max(out.get(c, 0.0), decision.classes[c])
    return out


def step(
    frame: Frame,
    hist: History,
    judge: Judge,
    rules: Rules,
    kind: Kind = "frame",
    first_row: int = 0,
) -> Step:
    """Decide ``frame`` of microscope ``hist`` with ``judge`` under ``rules``: the
    evidence, the state, the policy's proposals and the gate's verdicts on them. ``kind``
    ``window``: ``frame`` holds the newest lines of a frame in progress, from frame row
    ``first_row``. Updates ``hist``; the tip is at ``frame.position_nm``."""
    decision = weigh(frame, judge, hist, kind)
    jumps = [first_row + int(r) for r in line_jumps(frame.data)]
    out = Step(decision, kind, jumps, good=False)
    if kind == "frame":
        _count_unfamiliar(out, hist, rules)
    if kind == "window" and not rules.act_on_windows:
        return out  # reported, not acted on
    policy, gate = hist.policy, hist.gate
    out.good = decision.desirable or (
        kind == "frame" and policy.good(decision.state, decision.acting_bad)
    )
    if out.good and gate.fruitless:  # the fruitless run ends (kept only when it changes)
        gate.good_frame()
        out.gate_changed = True
    proposals = policy.observe(
        decision.state,
        decision.confidence,
        frame.frame_id,
        decision.acting_bad,
        window=kind == "window",
    )
    for proposal in proposals:
        action = _through_gate(hist, proposal, frame.position_nm, rules, out)
        out.actions.append(action)
        if action.outcome == "refused":
            away = _lead_away(hist, action, frame.position_nm, rules, out)
            if away is not None:
                out.actions.append(away)
            break  # nothing follows a refusal: a follow-up move makes no sense after it
        if action.outcome == "advisory":
            break  # as if refused by the controller: the follow-up move was not made
    return out


def _count_unfamiliar(out: Step, hist: History, rules: Rules) -> None:
    """Keep ``hist``'s run of unfamiliar whole frames; say when it makes the microscope
    blind, or when a familiar frame ends a blind run."""
    if out.decision.state != UNFAMILIAR:
        if hist.unfamiliar >= rules.blind_after:
            out.familiar_after = hist.unfamiliar
        hist.unfamiliar = 0
        return
    hist.unfamiliar += 1
    out.blind = hist.unfamiliar == rules.blind_after


def _through_gate(
    hist: History,
    proposal: Proposal,
    position_nm: tuple[float, float],
    rules: Rules,
    out: Step,
) -> Action:
    """``proposal`` as a command, checked by the gate; committed there when it is to be sent.
    A refused proposal is taken back from the policy (its rung was not climbed)."""
    command = proposal.command(hist.name)
    verdict = hist.gate.check(command, position_nm)
    if not verdict.allowed:
        hist.policy.refused(proposal)
        return Action(proposal, command, "refused", verdict.reason, verdict.code)
    if rules.advisory:
        return Action(proposal, command, "advisory", "advisory mode: decided, not sent")
    waiting = hist.gate.needs_operator
    hist.gate.commit(command, position_nm)
    out.gate_changed = True
    out.needs_operator = out.needs_operator or (hist.gate.needs_operator and not waiting)
    return Action(proposal, command, "send")


def _lead_away(
    hist: History,
    refused: Action,
    position_nm: tuple[float, float],
    rules: Rules,
    out: Step,
) -> Action | None:
    """After a pulse or crash refused because its spot is forbidden: a move to the nearest
    free area (through the gate like any command), or None when there is none within
    reach or the refusal had another cause."""
    p = refused.proposal
    if p.action not in CONDITIONING or refused.refusal != "forbidden":
        return None
    target = hist.gate.way_out(position_nm, hist.policy.config.move_nm)
    if target is None:
        return None
    params = {"dx_nm": target[0], "dy_nm": target[1]}
    move = Proposal(p.state, p.confidence, "move", params, p.rung, p.frame_id, detour=True)
    return _through_gate(hist, move, position_nm, rules, out)


def replied(hist: History, action: Action, reply: Reply) -> None:
    """The controller's ``reply`` to a sent ``action``: one not done is taken back from the
    policy, as a refusal by the gate is."""
    if reply.status != "done":
        hist.policy.refused(action.proposal)

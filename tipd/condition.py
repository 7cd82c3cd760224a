"""The daemon's condition, named: one word for what it is doing, and why.

======== ===================================================================================
state    meaning
======== ===================================================================================
starting sockets bound, models loaded; not reading frames yet
serving  reading frames, deciding, and (when live) conditioning tips
degraded serving, but a part it relies on fails: the journal cannot be written (rows wait in
         memory), or a microscope's controller does not answer
held     serving, but some microscope gets no command: the stop file, an operator's hold, or
         ``needs_operator`` after pulses and crashes that brought no good frame
blind    serving, but some microscope's frames are unlike anything its model knows: tipd
         does nothing to that tip
stopping draining: no frame is read any more, replies still awaited
======== ===================================================================================

Where several hold, the first of degraded, held, blind is the state, and ``why`` lists them
all. :func:`daemon_state` is the one place the state is computed; health events carry it, and
``tipd status``, ``tipd web`` and its ``/metrics`` show it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from tipd.protocol import DaemonStateName

State = DaemonStateName
STATES: tuple[State, ...] = get_args(State)
Phase = Literal["starting", "serving", "stopping"]


@dataclass(frozen=True)
class Facts:
    """What the state is computed from: the daemon's ``phase``, and per part that can fail or
    halt, the microscopes it concerns (sorted names)."""

    phase: Phase
    journal_failing: bool = False
    silent: list[str] = field(default_factory=list)  #: controllers that did not answer
    stopped: bool = False  #: the stop file is present
    held: list[str] = field(default_factory=list)
    needs_operator: list[str] = field(default_factory=list)
    blind: dict[str, int] = field(default_factory=dict)  #: unfamiliar frames in a row


def daemon_state(facts: Facts) -> tuple[State, list[str]]:
    """The daemon's state and, for every condition that holds, one line saying why."""
    if facts.phase != "serving":
        return facts.phase, []
    degraded, held, blind = [], [], []
    if facts.journal_failing:
        degraded.append("the journal cannot be written: rows wait in memory")
    degraded += [f"{m}: the controller does not answer" for m in facts.silent]
    if facts.stopped:
        held.append("the stop file is present: nothing is sent")
    held += [f"{m}: on hold" for m in facts.held]
    held += [f"{m}: needs an operator (`tipd reset {m}`)" for m in facts.needs_operator]
    blind += [f"{m}: blind, {n} unfamiliar frames in a row" for m, n in facts.blind.items()]
    state: State = "degraded" if degraded else "held" if held else "blind" if blind else "serving"
    return state, degraded + held + blind

"""The microscopes a daemon serves: each one's decision history (:mod:`tipd.decide`), where its
tip is, and the assembly of its line chunks; every safety gate kept in the journal, so that a
restart or a reload goes on from where it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from tipd.decide import History, history
from tipd.evidence import examine, seen
from tipd.frames import Frame, LineAssembler
from tipd.physics.memory import Seen
from tipd.policy import Policy, PolicyConfig
from tipd.safety import Limits, SafetyGate

log = structlog.get_logger("tipd")


class GateStore(Protocol):
    """Where gate states are kept (the journal's ``gates`` table)."""

    def gate_state(self, microscope: str) -> dict[str, Any] | None: ...

    def gate(self, microscope: str, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Rulebook:
    """The figures a microscope's policy and gate are built with: the policy's, the hard
    limits, the stop file, and the good states of the models served."""

    policy: PolicyConfig
    limits: Limits
    stop_file: Path | None
    desirable: frozenset[str]


@dataclass
class Microscope:
    """One microscope: its decision :class:`History`, the line chunks of its frames in
    progress, which rows of them were decided, and where its tip is (sample nm)."""

    hist: History
    assembler: LineAssembler = field(default_factory=LineAssembler)
    classified_rows: dict[str, int] = field(default_factory=dict)
    position_nm: tuple[float, float] = (0.0, 0.0)

    @property
    def name(self) -> str:
        return self.hist.name

    @property
    def gate(self) -> SafetyGate:
        return self.hist.gate

    @property
    def policy(self) -> Policy:
        return self.hist.policy

    @property
    def unfamiliar(self) -> int:
        return self.hist.unfamiliar


class Microscopes:
    """Every microscope seen, by name; each built on first sight with its gate restored."""

    def __init__(
        self,
        store: GateStore,
        rules: Callable[[], Rulebook],
        references: list[Frame] | None = None,
    ) -> None:
        self.store = store
        self.rules = rules  #: the current rulebook (it changes on a reload)
        self.by_name: dict[str, Microscope] = {}
        #: frames an operator gave as showing a good tip: every microscope's references
        self.references = list(references or [])

    def __contains__(self, name: object) -> bool:
        return name in self.by_name

    def __len__(self) -> int:
        return len(self.by_name)

    def __iter__(self) -> Iterator[Microscope]:
        return iter(list(self.by_name.values()))

    def get(self, name: str) -> Microscope:
        """Microscope ``name``; on first sight built from the rulebook, its gate's kept
        state restored."""
        mic = self.by_name.get(name)
        if mic is None:
            r = self.rules()
            mic = Microscope(history(name, set(r.desirable), r.policy, r.limits, r.stop_file))
            kept = self.store.gate_state(name)
            if kept is not None:
                mic.gate.restore(kept)
                log.info("safety state restored", microscope=name, **mic.gate.status())
            for ref in self.references:
                mic.hist.memory.pin(ref, reference(ref))
            self.by_name[name] = mic
        return mic

    def keep(self, mic: Microscope) -> None:
        """Write ``mic``'s gate state to the store, so a restart goes on from it."""
        self.store.gate(mic.name, mic.gate.snapshot())

    def retune(self) -> None:
        """The current rulebook for every microscope already known: the gates' limits and
        stop file, the policies' figures and good states. Budgets, spots, streaks and
        ladders are kept: a reload changes the rules, not what has happened."""
        r = self.rules()
        for mic in self:
            mic.gate.limits = r.limits
            mic.gate.stop_file = r.stop_file
            mic.policy.config = r.policy
            mic.policy.desirable = set(r.desirable)


def reference(frame: Frame) -> Seen:
    """What the memory keeps of ``frame`` as an operator's reference."""
    return seen(frame.frame_id or frame.source or "reference", examine(frame), {}, operator=True)

"""Closed-loop conditioning episodes on the virtual microscope, scored against its hidden truth.

An episode starts from a degraded tip (``double``, ``blunt``, ``contaminated``, ``multiple`` or
``mixed``), scans frame after frame and lets a conditioner decide after each frame; it ends
when the truth log shows a good tip for ``good_run`` frames in a row (recovered) or after
``max_frames`` frames. Time is simulated: each frame takes ``rows × line_time_s`` and each
command the seconds the microscope reports for it.

Conditioners (one per policy compared):

* :class:`NoConditioning`: scans and never acts.
* :class:`ScanbotHeuristic`: no ML, in the style of Scanbot: a frame is bad when it shows a
  horizontal discontinuity (a line whose median height jumps against its neighbours far beyond
  the frame's line-to-line scatter); after ``bad_run`` (5) bad frames in a row a light indent
  (0.9 nm), after the next run an aggressive one (1.5 nm), each followed by a move to a fresh
  area.
* :class:`TipdConditioner`: the daemon's own decision step (:mod:`tipd.decide`) with the
  shipped ensemble, on the simulated clock.

Every command any conditioner sends is also checked against the hard limits on its own
(``violations`` must stay 0) and the microscope's refusals are counted.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Protocol

from tipd.decide import Action, Rules, history, replied, step
from tipd.ensemble import Ensemble
from tipd.frames import Frame
from tipd.policy import PolicyConfig
from tipd.preprocess import line_jumps
from tipd.protocol import Command, Reply
from tipd.safety import Limits, SafetyGate
from tipd.sim.microscope import DEFAULT_SCAN_NM, ScanSettings, VirtualMicroscope

STARTS = ("double", "blunt", "contaminated", "mixed")


class Conditioner(Protocol):
    """What a policy under test does: commands after each frame, then hears their replies."""

    name: str

    def decide(self, frame: Frame, t_s: float) -> list[Command]: ...

    def told(self, command: Command, reply: Reply) -> None: ...


# ------------------------------------------------------------------------ baselines


class NoConditioning:
    """Scan on and hope: the tip only changes on its own."""

    name = "none"

    def decide(self, frame: Frame, t_s: float) -> list[Command]:
        return []

    def told(self, command: Command, reply: Reply) -> None:
        pass


@dataclass
class ScanbotHeuristic:
    """Scanbot-style conditioning without ML (see the module docstring)."""

    microscope: str
    bad_run: int = 5
    indents_nm: tuple[float, ...] = (0.9, 1.5)
    move_nm: float = 150.0
    name: str = "heuristic"
    _bad: int = 0
    _indent: int = 0
    _moves: int = 0

    def decide(self, frame: Frame, t_s: float) -> list[Command]:
        if len(line_jumps(frame.data)) == 0:
            self._bad, self._indent = 0, 0
            return []
        self._bad += 1
        if self._bad < self.bad_run:
            return []
        self._bad = 0
        depth = self.indents_nm[min(self._indent, len(self.indents_nm) - 1)]
        self._indent += 1
        self._moves += 1
        angle = self._moves * 2.399963  # golden angle: fresh areas, never revisited
        return [
            Command(
                microscope=self.microscope,
                action="crash",
                params={"depth_nm": depth, "bias_V": 0.02},  # type: ignore[arg-type]
            ),
            Command(
                microscope=self.microscope,
                action="move",
                params={  # type: ignore[arg-type]
                    "dx_nm": self.move_nm * math.cos(angle),
                    "dy_nm": self.move_nm * math.sin(angle),
                },
            ),
        ]

    def told(self, command: Command, reply: Reply) -> None:
        pass


@dataclass
class TipdConditioner:
    """The daemon's decision step (:func:`tipd.decide.step`, live) on whole frames, on the
    simulated clock."""

    ensemble: Ensemble
    microscope: str
    limits: Limits = field(default_factory=Limits)
    policy_config: PolicyConfig = field(default_factory=PolicyConfig)
    name: str = "tipd"

    def __post_init__(self) -> None:
        self._t = 0.0
        desirable = set(self.ensemble.manifest.desirable)
        self.history = history(
            self.microscope, desirable, self.policy_config, self.limits, clock=lambda: self._t
        )
        self._sent: dict[str, Action] = {}

    def decide(self, frame: Frame, t_s: float) -> list[Command]:
        self._t = t_s
        done = step(frame, self.history, self.ensemble, Rules(advisory=False))
        self._sent.update({a.command.id: a for a in done.actions if a.outcome == "send"})
        return done.to_send

    def told(self, command: Command, reply: Reply) -> None:
        action = self._sent.pop(command.id, None)
        if action is not None:
            replied(self.history, action, reply)


# ------------------------------------------------------------------------ episodes


@dataclass
class Episode:
    """One episode's outcome; times in simulated seconds."""

    policy: str
    start: str
    seed: int
    recovered: bool
    frames: int  #: frames scanned until recovery (or the budget)
    seconds: float
    actions: int
    violations: int  #: commands sent beyond the hard limits (must be 0)
    refused_by_microscope: int


def run_episode(
    conditioner: Conditioner,
    surface: str,
    start: str,
    seed: int,
    max_frames: int = 60,
    good_run: int = 3,
    settings: ScanSettings | None = None,
    limits: Limits | None = None,
) -> Episode:
    """Run ``conditioner`` on a fresh virtual microscope whose tip starts as ``start``."""
    settings = settings or ScanSettings(
        pixels=128, scan_size_nm=DEFAULT_SCAN_NM[surface], line_time_s=0.5
    )
    limits = limits or Limits()
    check = SafetyGate(limits=limits)
    mic = VirtualMicroscope(surface, seed=seed, settings=settings, start_tip=start)
    t = 0.0
    run = actions = violations = refused = 0
    for n in range(1, max_frames + 1):
        mic.start_frame()
        mic.scan_lines(settings.pixels)
        t += settings.pixels * settings.line_time_s
        frame, truth = mic.finish_frame(t_acquired=t)
        run = run + 1 if truth["good"] else 0
        if run >= good_run:
            return Episode(conditioner.name, start, seed, True, n, t, actions, violations, refused)
        for command in conditioner.decide(frame, t):
            actions += 1
            violations += bool(check.limit_violation(command))
            done = mic.execute(command)
            t += done.seconds
            refused += done.reply.status == "rejected"
            conditioner.told(command, done.reply)
    return Episode(
        conditioner.name, start, seed, False, max_frames, t, actions, violations, refused
    )


@dataclass
class Summary:
    """Per policy: recovery frames and minutes (median, p90; None where fewer than half or a
    tenth of the episodes recovered), actions per episode, and the totals."""

    policy: str
    episodes: int
    recovered: int
    frames_median: float | None
    frames_p90: float | None
    minutes_median: float | None
    minutes_p90: float | None
    actions_mean: float
    violations: int
    refused_by_microscope: int


def _quantile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile with never-recovered episodes counted as +∞ (None when infinite)."""
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return None if not ordered or math.isinf(ordered[k]) else ordered[k]


def summarise(episodes: list[Episode]) -> Summary:
    """One policy's episodes → :class:`Summary`."""
    frames = [float(e.frames) if e.recovered else math.inf for e in episodes]
    minutes = [e.seconds / 60 if e.recovered else math.inf for e in episodes]
    return Summary(
        policy=episodes[0].policy,
        episodes=len(episodes),
        recovered=sum(e.recovered for e in episodes),
        frames_median=_quantile(frames, 0.5),
        frames_p90=_quantile(frames, 0.9),
        minutes_median=_quantile(minutes, 0.5),
        minutes_p90=_quantile(minutes, 0.9),
        actions_mean=statistics.fmean(e.actions for e in episodes),
        violations=sum(e.violations for e in episodes),
        refused_by_microscope=sum(e.refused_by_microscope for e in episodes),
    )

"""The one gate every command passes before it reaches a controller.

Defaults are DESIGN.md's "tipd defaults", drawn from the tools before us (DeepSPM's server
limits, Scanbot's indents): pulses |V| ≤ 8 V for 10 ms–1 s, crashes ≤ 3 nm, moves ≤ 1000 nm, at
most 20 conditioning actions an hour and 6 in a row without a good frame (then
``needs_operator``: nothing more until an operator resets), a 20 nm forbidden radius around every
pulse or crash, a cooldown between conditioning actions, and a stop file and a ``hold`` that halt
everything at once. The budgets count pulses and crashes, the actions that can harm a tip or a
sample; a move only changes where the next frame is scanned (bounded by ``max_move_nm`` and the
forbidden radius), so the policy can move away from a conditioned spot at once (a deliberate
change from DESIGN.md, which counted every action).

A stop file halts every command (an operator has taken over); ``hold`` and
``needs_operator`` halt all but ``withdraw``, which only retracts the tip. The gate refuses,
it never clips: a command outside a limit is not what the policy meant, and
a smaller one is not safer by construction. One :class:`SafetyGate` per microscope; checks are
pure (:meth:`SafetyGate.check`), and only :meth:`SafetyGate.commit` changes the budgets, once a
command has really been sent. :meth:`SafetyGate.snapshot` and :meth:`SafetyGate.restore` carry
the whole state across a restart (the daemon keeps it in its journal).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tipd.protocol import CONDITIONING, Command, CrashParams, MoveParams, PulseParams


@dataclass(frozen=True)
class Limits:
    """Hard limits (V, s, nm) and budgets of one microscope."""

    max_bias_V: float = 8.0
    min_pulse_s: float = 0.010
    max_pulse_s: float = 1.0
    max_crash_nm: float = 3.0
    max_move_nm: float = 1000.0
    max_actions_per_hour: int = 20  #: pulses and crashes in any hour
    max_fruitless: int = 6  #: pulses/crashes in a row without a good frame → needs_operator
    forbidden_radius_nm: float = 20.0
    cooldown_s: float = 5.0  #: between pulses/crashes


#: what a refusal is for (:attr:`Verdict.code`), in the order :meth:`SafetyGate.check` tries them
CODES = (
    "stop",
    "hold",
    "needs_operator",
    "limit",
    "budget",
    "fruitless",
    "cooldown",
    "forbidden",
)


@dataclass(frozen=True)
class Verdict:
    """The gate's answer: ``allowed``, and if not, ``reason`` (which limit, what value) and
    ``code``, one of :data:`CODES`."""

    allowed: bool
    reason: str = ""
    code: str = ""


@dataclass
class SafetyGate:
    """Limits, budgets and interlocks of one microscope. ``clock`` returns seconds (monotonic)."""

    limits: Limits = field(default_factory=Limits)
    stop_file: Path | None = None
    clock: Callable[[], float] = time.monotonic
    held: bool = False
    needs_operator: bool = False
    fruitless: int = 0
    held_by: str = ""  #: who put the gate on hold
    held_since: float | None = None  #: unix s
    needs_operator_since: float | None = None  #: unix s
    _times: deque[float] = field(default_factory=deque)
    _spots: list[tuple[float, float]] = field(default_factory=list)
    _last: float | None = None

    # ------------------------------------------------------------------ checks

    def check(self, command: Command, position_nm: tuple[float, float]) -> Verdict:
        """Whether ``command`` may be sent now, with the tip at ``position_nm`` (sample nm)."""
        if self.stop_file is not None and self.stop_file.exists():
            return Verdict(
                False, f"stop file {self.stop_file} is present: all actions halted", "stop"
            )
        if command.action == "withdraw":  # retracting the tip is always allowed
            return Verdict(True)
        if self.held:
            return Verdict(False, "on hold: all actions halted until released", "hold")
        if self.needs_operator:
            return Verdict(
                False, "needs_operator: too many actions without a good frame", "needs_operator"
            )
        limit = self.limit_violation(command)
        if limit:
            return Verdict(False, limit, "limit")
        now = self.clock()
        recent = sum(1 for t in self._times if now - t < 3600.0)
        conditioning = command.action in CONDITIONING
        if conditioning and recent >= self.limits.max_actions_per_hour:
            return Verdict(
                False,
                f"budget: {recent} actions in the last hour "
                f"(at most {self.limits.max_actions_per_hour})",
                "budget",
            )
        if conditioning and self.fruitless >= self.limits.max_fruitless:
            return Verdict(
                False,
                f"budget: {self.fruitless} actions without a good frame "
                f"(at most {self.limits.max_fruitless})",
                "fruitless",
            )
        if conditioning and self._last is not None and now - self._last < self.limits.cooldown_s:
            return Verdict(
                False,
                f"cooldown: {now - self._last:.2f} s since the last action "
                f"(at least {self.limits.cooldown_s} s)",
                "cooldown",
            )
        target = position_nm
        if isinstance(command.params, MoveParams):
            target = (position_nm[0] + command.params.dx_nm, position_nm[1] + command.params.dy_nm)
        if command.action in ("pulse", "crash", "move"):
            spot = self._nearest_spot(target)
            if spot is not None:
                d = math.dist(spot, target)
                return Verdict(
                    False,
                    f"forbidden area: {d:.1f} nm from an earlier action at "
                    f"({spot[0]:.1f}, {spot[1]:.1f}) nm (keep "
                    f"{self.limits.forbidden_radius_nm} nm away)",
                    "forbidden",
                )
        return Verdict(True)

    def _nearest_spot(self, target: tuple[float, float]) -> tuple[float, float] | None:
        """The first conditioned spot closer to ``target`` (nm) than the forbidden radius."""
        for spot in self._spots:
            if math.dist(spot, target) < self.limits.forbidden_radius_nm:
                return spot
        return None

    def way_out(
        self, position_nm: tuple[float, float], step_nm: float
    ) -> tuple[float, float] | None:
        """The shortest move ``(dx, dy)`` (nm) from ``position_nm`` to an area outside every
        forbidden radius: the nearest point of a square grid of ``step_nm`` around it (ties:
        the first anticlockwise from +x), within ``max_move_nm``; None when every such point
        is forbidden, or no step fits in a move."""
        reach = int(self.limits.max_move_nm // step_nm) if step_nm > 0 else 0
        points = [
            (i * step_nm, j * step_nm)
            for i in range(-reach, reach + 1)
            for j in range(-reach, reach + 1)
            if (i, j) != (0, 0) and math.hypot(i, j) * step_nm <= self.limits.max_move_nm
        ]
        points.sort(key=lambda p: (round(math.hypot(*p), 6), math.atan2(p[1], p[0]) % math.tau))
        for dx, dy in points:
            if self._nearest_spot((position_nm[0] + dx, position_nm[1] + dy)) is None:
                return dx, dy
        return None

    def limit_violation(self, command: Command) -> str:
        """Which hard limit ``command`` exceeds ('limit: …'), or '' when within all of them."""
        lim = self.limits
        p = command.params
        if isinstance(p, PulseParams):
            if not abs(p.bias_V) <= lim.max_bias_V:
                return f"limit: pulse bias_V {p.bias_V} beyond ±{lim.max_bias_V} V"
            if not lim.min_pulse_s <= p.width_s <= lim.max_pulse_s:
                span = f"{lim.min_pulse_s}–{lim.max_pulse_s} s"
                return f"limit: pulse width_s {p.width_s} outside {span}"
        elif isinstance(p, CrashParams):
            if not 0 < p.depth_nm <= lim.max_crash_nm:
                return f"limit: crash depth_nm {p.depth_nm} beyond {lim.max_crash_nm} nm"
            if not abs(p.bias_V) <= lim.max_bias_V:
                return f"limit: crash bias_V {p.bias_V} beyond ±{lim.max_bias_V} V"
        elif isinstance(p, MoveParams):
            d = math.hypot(p.dx_nm, p.dy_nm)
            if not d <= lim.max_move_nm:
                return f"limit: move of {d:.1f} nm beyond {lim.max_move_nm} nm"
        return ""

    # ------------------------------------------------------------------ state

    def commit(self, command: Command, position_nm: tuple[float, float]) -> None:
        """Record a command that was sent: budgets, cooldown, forbidden spots, fruitless run.

        ``needs_operator`` is set once the run of actions without a good frame reaches the
        limit, so the next conditioning needs a person.
        """
        if command.action not in CONDITIONING:
            return
        now = self.clock()
        self._times.append(now)
        while self._times and now - self._times[0] >= 3600.0:
            self._times.popleft()
        self._last = now
        self._spots.append(position_nm)
        self.fruitless += 1
        if self.fruitless >= self.limits.max_fruitless and not self.needs_operator:
            self.needs_operator = True
            self.needs_operator_since = time.time()

    def good_frame(self) -> None:
        """A frame showed a good tip: the run of fruitless actions ends."""
        self.fruitless = 0

    def hold(self, who: str = "operator") -> None:
        """Halt every command but withdraw until :meth:`release`; ``who`` is kept."""
        if not self.held:
            self.held_since = time.time()
        self.held, self.held_by = True, who

    def release(self) -> None:
        self.held, self.held_by, self.held_since = False, "", None

    def reset_operator(self) -> None:
        """An operator looked: clear ``needs_operator`` and the fruitless run."""
        self.needs_operator = False
        self.needs_operator_since = None
        self.fruitless = 0

    def reasons(self) -> list[str]:
        """Why the gate would refuse a pulse now, each with since when and what clears it
        (empty when it would let one through, limits and spots aside)."""
        out = []
        if self.stop_file is not None and self.stop_file.exists():
            out.append(f"stop file {self.stop_file} is present: remove it to go on")
        if self.held:
            out.append(
                f"on hold by {self.held_by or 'operator'} since {_when(self.held_since)}: "
                "`tipd release` ends it"
            )
        if self.needs_operator:
            out.append(
                f"needs_operator since {_when(self.needs_operator_since)}: {self.fruitless} "
                "pulses or crashes without a good frame; look at the tip, then `tipd reset`"
            )
        now = self.clock()
        recent = sorted(t for t in self._times if now - t < 3600.0)
        if len(recent) >= self.limits.max_actions_per_hour:
            free = recent[len(recent) - self.limits.max_actions_per_hour] + 3600.0 - now
            out.append(
                f"budget: {len(recent)} pulses or crashes in the last hour; the next is "
                f"allowed in {free / 60:.0f} min"
            )
        if self._last is not None and now - self._last < self.limits.cooldown_s:
            out.append(f"cooldown: {self.limits.cooldown_s - (now - self._last):.1f} s left")
        return out

    def snapshot(self, wall: float | None = None) -> dict[str, Any]:
        """The gate's state as plain JSON-able data: ``held``, ``needs_operator``,
        ``fruitless``, the unix times (s) of the conditioning actions of the last hour
        (``times``) and of the last one (``last``), and every conditioned spot (``spots``,
        nm). Times are unix seconds, since the monotonic clock does not survive a restart;
        ``wall`` is now in unix seconds (default: the system clock)."""
        now, wall_now = self.clock(), time.time() if wall is None else wall

        def unix(t: float) -> float:
            return wall_now - (now - t)

        return {
            "held": self.held,
            "held_by": self.held_by,
            "held_since": self.held_since,
            "needs_operator": self.needs_operator,
            "needs_operator_since": self.needs_operator_since,
            "fruitless": self.fruitless,
            "times": [unix(t) for t in self._times if now - t < 3600.0],
            "last": None if self._last is None else unix(self._last),
            "spots": [[float(x), float(y)] for x, y in self._spots],
        }

    def restore(self, state: dict[str, Any], wall: float | None = None) -> None:
        """Take back a :meth:`snapshot` (after a restart): the budgets, cooldown, spots,
        fruitless run, hold and ``needs_operator`` go on where they were."""
        now, wall_now = self.clock(), time.time() if wall is None else wall

        def monotonic(t: float) -> float:
            return now - (wall_now - float(t))

        self.held = bool(state.get("held", False))
        self.held_by = str(state.get("held_by", ""))
        self.held_since = state.get("held_since")
        self.needs_operator = bool(state.get("needs_operator", False))
        self.needs_operator_since = state.get("needs_operator_since")
        self.fruitless = int(state.get("fruitless", 0))
        self._times = deque(monotonic(t) for t in state.get("times", []))
        last = state.get("last")
        self._last = None if last is None else monotonic(last)
        self._spots = [(float(x), float(y)) for x, y in state.get("spots", [])]

    def status(self) -> dict[str, object]:
        now = self.clock()
        return {
            "held": self.held,
            "needs_operator": self.needs_operator,
            "fruitless": self.fruitless,
            "actions_last_hour": sum(1 for t in self._times if now - t < 3600.0),
            "stopped": bool(self.stop_file and self.stop_file.exists()),
            "refusing": self.reasons(),
        }


def _when(t: float | None) -> str:
    """A unix time as local ISO 8601 (seconds), or 'an earlier run' when not known."""
    if t is None:
        return "an earlier run"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t))

"""How many error reports a flood of bad messages may cost: a budget per kind and second.

The first ``per_second`` errors of one key (microscope, kind) in a one-second window are
reported in full (log line, journal row, ``error`` event); the rest are only counted, and one
summary per key says how many were held back once its window has passed. Keys are bounded:
beyond ``max_keys`` (message topics are chosen by the sender) all new keys share one.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the key every key beyond ``max_keys`` shares
OVERFLOW = ("*", "*")


@dataclass
class _Window:
    start: float  #: s (monotonic)
    admitted: int = 0
    held: int = 0


class ErrorBudget:
    """Admit at most ``per_second`` reports per key and second (see the module)."""

    def __init__(self, per_second: int = 20, max_keys: int = 256) -> None:
        self.per_second = per_second
        self.max_keys = max_keys
        self._windows: dict[tuple[str, str], _Window] = {}

    def admit(self, key: tuple[str, str], now: float) -> bool:
        """Whether a report of ``key`` at ``now`` (s) goes out in full; if not, it is held
        back and counted towards the key's summary (:meth:`due`)."""
        if key not in self._windows and len(self._windows) >= self.max_keys:
            key = OVERFLOW
        w = self._windows.get(key)
        if w is None or (now - w.start >= 1.0 and w.held == 0):
            w = self._windows[key] = _Window(now)
        if w.admitted < self.per_second:
            w.admitted += 1
            return True
        w.held += 1
        return False

    def due(self, now: float) -> list[tuple[tuple[str, str], int]]:
        """The keys whose window has passed with reports held back, and how many: each is
        returned once, and its window starts afresh. Quiet keys are forgotten."""
        out = []
        for key, w in list(self._windows.items()):
            if now - w.start < 1.0:
                continue
            if w.held:
                out.append((key, w.held))
            del self._windows[key]
        return out

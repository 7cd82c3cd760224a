"""The daemon's health reports: its counters, its named state (:mod:`tipd.condition`), the
``health`` event (periodic, or at once when a microscope's state calls for it) with systemd's
status and watchdog, summaries of the error reports held back, and journal and archive
retention.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from typing import Protocol

import structlog

from tipd.archive import Archive
from tipd.condition import Facts, Phase, State, daemon_state
from tipd.config import Settings
from tipd.curve import Curve
from tipd.events import EventPublisher
from tipd.journal import Journal
from tipd.microscopes import Microscopes
from tipd.modelset import ModelSet
from tipd.protocol import ErrorEvent, HealthEvent
from tipd.ratelimit import ErrorBudget
from tipd.systemd import sd_notify

log = structlog.get_logger("tipd")


class Serving(Protocol):
    """What health reports read of a serving daemon (:class:`tipd.service.Daemon`)."""

    settings: Settings
    models: ModelSet
    counters: Counter[str]
    curve: Curve | None
    journal: Journal
    archive: Archive | None
    mics: Microscopes
    error_budget: ErrorBudget
    events: EventPublisher
    started: float  #: monotonic s
    backlog: int  #: messages waiting behind the last one received
    phase: Phase
    silent: set[str]  #: microscopes whose controller did not answer


def event_microscope(microscope: str) -> str:
    """The events' name of a microscope: ``*`` for a message whose microscope is not known."""
    return "*" if microscope == "?" else microscope


class HealthReports:
    """What a serving daemon says of its own health."""

    def __init__(self, daemon: Serving) -> None:
        self.daemon = daemon
        self.pruned = 0.0  #: unix time the journal was last pruned

    def counters(self) -> dict[str, int]:
        """The counters, with the peers CURVE refused per endpoint (``curve_refused_frames``…)
        the journal's failed writes, pending and dropped rows (``journal_…``) and the archive's
        frames, bytes and frames dropped to stay within its bounds (``archive_…``)."""
        refused = self.daemon.curve.refused if self.daemon.curve is not None else {}
        journal = {
            "journal_failures": self.daemon.journal.failures,
            "journal_pending": len(self.daemon.journal.pending),
            "journal_dropped": self.daemon.journal.dropped,
        }
        archive = (
            {}
            if self.daemon.archive is None
            else {
                "archive_frames": len(self.daemon.archive.kept),
                "archive_bytes": self.daemon.archive.bytes,
                "archive_dropped": self.daemon.archive.dropped,
            }
        )
        return {
            **self.daemon.counters,
            **{f"curve_refused_{d}": n for d, n in refused.items()},
            **journal,
            **archive,
        }

    def state(self) -> tuple[State, list[str]]:
        """The daemon's named state and why (:func:`tipd.condition.daemon_state`)."""
        d = self.daemon
        mics = list(d.mics)
        stop_file = d.settings.safety.stop_file
        return daemon_state(
            Facts(
                phase=d.phase,
                journal_failing=bool(d.journal.pending),
                silent=sorted(d.silent),
                stopped=bool(stop_file and stop_file.exists()),
                held=sorted(m.name for m in mics if m.gate.held),
                needs_operator=sorted(m.name for m in mics if m.gate.needs_operator),
                blind=self.blind(),
            )
        )

    def event(self, microscope: str) -> HealthEvent:
        """The health event now: the periodic one (``microscope`` ``*``), or one that a
        microscope's state raised at once."""
        d = self.daemon
        mics = list(d.mics)
        stop_file = d.settings.safety.stop_file
        state, why = self.state()
        return HealthEvent(
            microscope=microscope,
            uptime_s=time.monotonic() - d.started,
            provider=d.models.default.provider,
            queue_depth=d.backlog,
            counters=self.counters(),
            blind=self.blind(),
            needs_operator=sorted(m.name for m in mics if m.gate.needs_operator),
            held=sorted(m.name for m in mics if m.gate.held),
            stopped=bool(stop_file and stop_file.exists()),
            advisory=d.settings.advisory,
            state=state,
            why=[w[:512] for w in why],
        )

    def blind(self) -> dict[str, int]:
        """Microscopes whose last ``blind_after`` or more whole frames were unfamiliar: how
        many in a row."""
        n = self.daemon.settings.blind_after
        return {m.name: m.unfamiliar for m in self.daemon.mics if m.unfamiliar >= n}

    async def summarise_errors(self) -> None:
        """One ``error`` event per key whose reports were held back in its last window."""
        for (microscope, what), held in self.daemon.error_budget.due(time.monotonic()):
            detail = f"{held} more '{what}' errors in one second, counted but not reported"
            log.warning("errors held back", microscope=microscope, what=what, count=held)
            await self.daemon.events.publish(
                ErrorEvent(
                    microscope=event_microscope(microscope),
                    what=what if what != "*" else "flood",
                    detail=detail,
                )
            )

    async def run(self) -> None:
        """Every ``health_s``: a health event and systemd's status (and watchdog); every
        second: summaries of held-back errors; every hour: journal retention."""
        watchdog = os.environ.get("WATCHDOG_USEC")
        next_health = time.monotonic()
        while True:
            await self.summarise_errors()
            self.prune()
            if time.monotonic() >= next_health:
                next_health = time.monotonic() + self.daemon.settings.health_s
                await self.daemon.events.publish(self.event("*"))
                frames, errors = self.daemon.counters["frames"], self.daemon.counters["errors"]
                state, _ = self.state()
                sd_notify(f"STATUS={state}: frames {frames}, errors {errors}")
            if watchdog:
                sd_notify("WATCHDOG=1")
            period = min(self.daemon.settings.health_s, 1.0)
            if watchdog:
                period = min(period, int(watchdog) / 2e6)
            await asyncio.sleep(period)

    def prune(self) -> None:
        """Once an hour, drop frame rows older than ``retention_days`` (commands are kept) and
        archived frames older than the archive's ``max_days``."""
        now = time.time()
        if now - self.pruned < 3600:
            return
        self.pruned = now
        self.daemon.journal.prune(now - self.daemon.settings.retention_days * 86400)
        if self.daemon.archive is not None:
            self.daemon.archive.prune(now)

"""``tipd run``: the daemon. Frames in, decisions and commands out.

One asyncio loop (zmq.asyncio). Every message on the frame socket is read by
:mod:`tipd.intake` (validated; line chunks assembled into windows of their newest lines); each
frame or window is decided by :func:`tipd.decide.step`; the decision becomes a ``state`` event
and a journal row (:mod:`tipd.record`), and whole frames go to the archive; what the step
decided to send goes out through :mod:`tipd.dispatch`, in the background, so a slow or absent
controller never stalls frames. Operator requests (:mod:`tipd.operator_desk`) and health
reports (:mod:`tipd.health`) run beside it.

Bad input (garbage, NaN frames, unknown microscopes or surfaces, models that fail their
checks) gets a log line, an ``error`` event, a journal row and a counter, and the daemon goes on.
SIGTERM drains and exits; SIGHUP reloads settings and models, keeping the old ones when the new
ones fail their checks. systemd: READY, STATUS and WATCHDOG through ``$NOTIFY_SOCKET``. The
daemon's state is named (:mod:`tipd.condition`) and carried by every health event.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from collections import Counter
from functools import partial
from pathlib import Path

import structlog
import zmq
import zmq.asyncio

from tipd import curve, ports
from tipd.archive import Archive
from tipd.condition import Phase
from tipd.config import Settings, load
from tipd.controller import ControllerClient
from tipd.curve import CurveError
from tipd.decide import Rules, Step, step
from tipd.dispatch import Dispatcher
from tipd.events import EventPublisher
from tipd.frames import Frame
from tipd.health import HealthReports, event_microscope
from tipd.intake import Decoded, Intake, Rejected, Skipped, Windows, Work, decode
from tipd.journal import Journal
from tipd.microscopes import Microscope, Microscopes, Rulebook
from tipd.models import ModelError
from tipd.modelset import ModelSet
from tipd.operator_desk import OperatorDesk
from tipd.policy import PolicyConfig
from tipd.protocol import ErrorEvent, ProtocolError
from tipd.ratelimit import ErrorBudget
from tipd.record import archive_verdict, evidence_list, journal_scores, state_event
from tipd.safety import Limits
from tipd.systemd import sd_notify

log = structlog.get_logger("tipd")


class Daemon:
    """The service object: all state lives here."""

    def __init__(
        self,
        settings: Settings,
        config_path: Path | None = None,
        references: list[Frame] | None = None,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self.started = time.monotonic()
        self.phase: Phase = "starting"
        self.counters: Counter[str] = Counter()
        self.models = ModelSet.load(settings.model, settings.models, settings.threads)
        self.ctx = zmq.asyncio.Context()
        sec = settings.security
        self.curve = curve.from_paths(sec.secret_key, sec.allowed_keys, sec.controller_key)
        curve.required(
            {
                "frames": settings.endpoints.frames,
                "events": settings.endpoints.events,
                "operator": settings.endpoints.operator,
                **({"preview": settings.endpoints.preview} if settings.mirror_frames else {}),
            },
            self.curve,
            "security.secret_key and security.allowed_keys",
        )
        self.journal = Journal(settings.journal)
        self.archive = open_archive(settings, self.counters)
        self.mics = Microscopes(self.journal, self.rulebook, references)
        self.intake = Intake(self.mics, lambda: self.models, self.counters)
        self.stopping = asyncio.Event()
        self.reload_requested = False
        self.backlog = 0  #: messages that were waiting behind the last one received
        self.error_budget = ErrorBudget(settings.error_events_per_s)
        self.silent: set[str] = set()  #: microscopes whose controller did not answer
        self.reports = HealthReports(self)

    def rulebook(self) -> Rulebook:
        """The figures every microscope's policy and gate follow now."""
        s = self.settings
        return Rulebook(
            PolicyConfig(**s.policy.model_dump()),
            Limits(**s.safety.model_dump(exclude={"stop_file"})),
            s.safety.stop_file,
            frozenset(self.models.desirable()),
        )

    def rules(self) -> Rules:
        s = self.settings
        return Rules(s.advisory, s.act_on_windows, s.blind_after)

    # ---------------------------------------------------------------- loop

    async def run(self) -> int:
        s = self.settings
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RCVHWM, s.queue_messages)
        self.sub.setsockopt(zmq.MAXMSGSIZE, int(s.max_message_mb * 1e6))
        if self.curve is not None:
            self.curve.server(self.sub, "frames")
        ports.bind(self.sub, s.endpoints.frames, "frames")
        for topic in (b"frame.", b"lines."):
            self.sub.setsockopt(zmq.SUBSCRIBE, topic)
        self.events = EventPublisher(self.ctx, s.endpoints.events, self.curve)
        self.preview = (
            EventPublisher(self.ctx, s.endpoints.preview, self.curve, "preview")
            if s.mirror_frames
            else None
        )
        self.operator = self.ctx.socket(zmq.ROUTER)
        self.operator.setsockopt(zmq.LINGER, 0)
        if self.curve is not None:
            self.curve.server(self.operator, "operator")
        ports.bind(self.operator, s.endpoints.operator, "operator")
        self.controller = ControllerClient(
            self.ctx,
            s.endpoints.control,
            s.controller.timeout_s,
            s.controller.retries,
            self.curve if self.curve is not None and self.curve.server_key else None,
        )
        self.controller.start()
        self.dispatcher = Dispatcher(self.journal, self.events, self.counters, self.silent)
        self.desk = OperatorDesk(
            self.mics, self.journal, self.events, self.counters, lambda: self.settings,
            self.reports.state, partial(archived_frame, self.journal),
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._request_reload)
        await self.events.publish(self.reports.event("*"))  # starting
        self.phase = "serving"
        health = loop.create_task(self.reports.run())
        poller = zmq.asyncio.Poller()
        poller.register(self.sub, zmq.POLLIN)
        poller.register(self.operator, zmq.POLLIN)
        log.info(
            "tipd running",
            frames=s.endpoints.frames,
            events=s.endpoints.events,
            control=s.endpoints.control,
            operator=s.endpoints.operator,
            advisory=s.advisory,
            journal=str(s.journal),
        )
        sd_notify("READY=1\nSTATUS=serving")
        try:
            while not self.stopping.is_set():
                if self.reload_requested:
                    self._reload()
                ready = dict(await poller.poll(200))
                if self.operator in ready:
                    await self.desk.answer_waiting(self.operator)
                if self.sub in ready:
                    await self._read_waiting()
        finally:
            self.phase = "stopping"
            sd_notify("STOPPING=1")
            health.cancel()
            await self.events.publish(self.reports.event("*"))
            await self.dispatcher.drain(self.settings.controller.timeout_s)
            self.controller.close()
            self.events.close()
            if self.preview is not None:
                self.preview.close()
            self.operator.close()
            self.sub.close()
            if self.curve is not None:
                self.curve.stop()
            self.journal.close()
            log.info("tipd stopped", counters=dict(self.counters))
        return 0

    async def _read_waiting(self) -> None:
        """Read every message waiting (up to 256) and handle each; under load only the newest
        valid message of each microscope is decided."""
        t0 = time.perf_counter()
        batch = [await self.sub.recv_multipart()]
        while len(batch) < 256 and await self.sub.poll(0):
            batch.append(await self.sub.recv_multipart())
        self.backlog = len(batch) - 1
        decoded = [decode(parts) for parts in batch]
        newest = {
            d[1].microscope: k for k, d in enumerate(decoded) if not isinstance(d, ProtocolError)
        }
        for k, (parts, d) in enumerate(zip(batch, decoded, strict=True)):
            mine = isinstance(d, ProtocolError) or newest.get(d[1].microscope) == k
            try:  # one message must never stop the daemon, whatever it holds
                await self.handle(parts, t0, mine, d)
            except Exception as exc:
                await self.internal_error(d, exc)

    def _request_reload(self) -> None:
        self.reload_requested = True

    def _reload(self) -> None:
        self.reload_requested = False
        try:
            settings = load(self.config_path)
            models = ModelSet.load(settings.model, settings.models, settings.threads)
        except (ModelError, ValueError, OSError) as exc:  # ConfigError is a ValueError
            self.counters["reload_failed"] += 1
            log.error("reload failed; keeping the old settings and models", error=str(exc))
            return
        self.settings, self.models = settings, models
        self.mics.retune()
        self.counters["reloads"] += 1
        log.info(
            "reloaded",
            microscopes=sorted(m.name for m in self.mics),
            limits=settings.safety.model_dump(mode="json"),
            advisory=settings.advisory,
        )

    # ---------------------------------------------------------------- frames

    async def handle(self, parts: list[bytes], t0: float, newest: bool, decoded: Decoded) -> None:
        """One message from the frame socket, read by :class:`tipd.intake.Intake`."""
        s = self.settings
        taken = self.intake.take(
            parts, decoded, newest, s.microscopes, s.max_microscopes,
            Windows(s.window_lines, s.window_every),
        )  # fmt: skip
        if taken.mic is not None and self.preview is not None:
            await self.preview.mirror(parts)
        for item in taken.items:
            if isinstance(item, Rejected):
                await self.error(item.microscope, item.what, item.detail, item.frame_id)
            elif isinstance(item, Skipped):
                h = item.header
                self.journal.frame(
                    item.mic.name, h.frame_id, h.seq, "frame", h.shape[0], "skipped",
                    detail="a newer frame was waiting",
                )  # fmt: skip
            else:
                await self.decide(item, t0)

    async def decide(self, work: Work, t0: float) -> None:
        """Decide a frame or window (:func:`tipd.decide.step`), publish and journal the
        decision, archive a whole frame, and carry out what the step decided."""
        mic, header = work.mic, work.header
        ens = self.models.for_surface(header.surface)
        done = step(work.frame, mic.hist, ens, self.rules(), work.kind, work.first_row)
        latency = (time.perf_counter() - t0) * 1e3
        self.counters["decisions"] += 1
        d = done.decision
        archived = None
        if work.kind == "frame":
            archived = await self._archive(mic, work.frame, archive_verdict(d, ens.manifest.name))
        self.journal.frame(
            mic.name, header.frame_id, header.seq, work.kind, work.rows_seen, "classified",
            d.state, journal_scores(d), latency, familiarity=d.familiarity, archive=archived,
            evidence=evidence_list(d),
        )  # fmt: skip
        await self.events.publish(
            state_event(mic.name, done, header, work.rows_seen, latency, work.first_row)
        )
        await self._say_changes(mic, done)
        await self.dispatcher.carry_out(mic.hist, done.actions, self.controller)

    async def _say_changes(self, mic: Microscope, done: Step) -> None:
        """Keep the gate when ``done`` changed it; say at once (log and health event) when a
        microscope turned blind or needs an operator."""
        if done.decision.state == "unfamiliar" and done.kind == "frame":
            self.counters["unfamiliar"] += 1
        if done.gate_changed:
            self.mics.keep(mic)
        if done.familiar_after:
            log.info("frames familiar again", microscope=mic.name, after=done.familiar_after)
        if done.blind:
            log.warning(
                "blind: the model does not know these frames; no action will be taken",
                microscope=mic.name,
                frames=mic.unfamiliar,
                familiarity=done.decision.familiarity,
            )
        if done.needs_operator:
            log.warning("needs operator: no good frame after the last actions", microscope=mic.name)
        if done.blind or done.needs_operator:
            await self.events.publish(self.reports.event(mic.name))

    async def _archive(
        self, mic: Microscope, frame: Frame, verdict: dict[str, object]
    ) -> str | None:
        """Keep a whole ``frame`` of ``mic`` with its verdict; its path, or None (off, or the
        write failed: reported as an ``archive`` error and counted, and the daemon goes on)."""
        if self.archive is None:
            return None
        try:
            path = self.archive.keep(frame, verdict)
        except OSError as exc:
            self.counters["archive_failures"] += 1
            detail = f"frame not archived: {frame.frame_id}: {exc}"
            await self.error(mic.name, "archive", detail, frame.frame_id)
            return None
        self.counters["archived"] += 1
        return str(path)

    async def error(
        self, microscope: str, what: str, detail: str, frame_id: str | None = None
    ) -> None:
        """Report a rejected message (log, journal, ``error`` event) and count it; beyond
        ``error_events_per_s`` of one kind from one microscope, count it only (a summary
        follows, see :mod:`tipd.ratelimit`)."""
        self.counters["errors"] += 1
        self.counters[f"error_{what}"] += 1
        if not self.error_budget.admit((microscope, what), time.monotonic()):
            self.counters["errors_held_back"] += 1
            return
        log.warning("rejected", microscope=microscope, what=what, detail=detail, frame_id=frame_id)
        self.journal.frame(
            microscope, frame_id, None, "error", None, "rejected", detail=f"{what}: {detail}"
        )
        mic = event_microscope(microscope)
        await self.events.publish(
            ErrorEvent(microscope=mic, what=what, detail=detail[:4000], frame_id=frame_id)
        )

    async def internal_error(self, decoded: Decoded, exc: Exception) -> None:
        """A message whose handling failed in tipd itself: logged with its traceback,
        counted, journaled and published as an ``error`` event of kind ``internal``."""
        header = None if isinstance(decoded, ProtocolError) else decoded[1]
        microscope = header.microscope if header is not None else "?"
        log.exception("message handling failed", microscope=microscope)
        try:
            frame_id = header.frame_id if header is not None else None
            await self.error(microscope, "internal", f"{type(exc).__name__}: {exc}", frame_id)
        except Exception:  # the error path itself failed (events socket): the log has it
            log.exception("reporting the failure failed too")


def archived_frame(journal: Journal, microscope: str, frame_id: str) -> Frame | None:
    """Whole frame ``frame_id`` of ``microscope`` from the archive, if it was kept."""
    from tipd.readers import ReaderError, read_any

    path = journal.archived(microscope, frame_id)
    if path is None:
        return None
    try:
        frame = read_any(path)
    except ReaderError:
        return None
    return frame.replace(microscope=microscope, frame_id=frame_id)


def open_archive(settings: Settings, counters: Counter[str]) -> Archive | None:
    """The frame archive the settings ask for; None when off, or when its folder cannot be
    used (logged and counted in ``counters``: tipd serves on without it)."""
    a = settings.archive
    if not a.enabled:
        return None
    try:
        return Archive(a.folder, a.max_mb, a.max_days)
    except OSError as exc:
        counters["archive_failures"] += 1
        log.error(
            "frame archive unusable; serving without it", folder=str(a.folder), error=str(exc)
        )
        return None


def run(
    settings: Settings, config_path: Path | None = None, references: list[Frame] | None = None
) -> int:
    """Build the daemon and serve until SIGTERM; model problems at start are fatal (exit 2).
    ``references``: frames showing a good tip (``tipd run --reference``)."""
    try:
        daemon = Daemon(settings, config_path, references)
    except ModelError as exc:
        log.error("cannot start: model check failed", error=str(exc))
        return 2
    except CurveError as exc:
        log.error("cannot start: CURVE", error=str(exc))
        return 2
    except (OSError, sqlite3.Error) as exc:
        log.error("cannot start: journal", path=str(settings.journal), error=str(exc))
        return 2
    try:
        return asyncio.run(daemon.run())
    except ports.BindError as exc:
        log.error("cannot start: endpoint", error=str(exc))
        return 2
    except zmq.ZMQError as exc:
        log.error("cannot start: endpoint", error=str(exc), **settings.endpoints.model_dump())
        return 2

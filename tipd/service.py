"""``tipd run``: the daemon. Frames in, decisions and commands out.

One asyncio loop (zmq.asyncio). Every message on the frame socket is validated; whole frames
are classified, and line chunks are assembled and their newest ``window_lines`` rows are
classified every ``window_every`` lines, so a tip change or a double tip is caught mid-frame.
Each decision becomes a ``state`` event and a journal row; the policy turns persistent
undesirable states into proposals; the safety gate decides what may be sent; the controller
client sends it in the background, so a slow or absent controller never stalls frames.

Bad input (garbage, NaN frames, unknown microscopes or surfaces, models that fail their
checks) gets a log line, an ``error`` event, a journal row and a counter, and the daemon goes on.
SIGTERM drains and exits; SIGHUP reloads settings and models, keeping the old ones when the new
ones fail their checks. systemd: READY, STATUS and WATCHDOG through ``$NOTIFY_SOCKET``.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import zmq
import zmq.asyncio

from tipd import curve
from tipd.archive import Archive
from tipd.config import Settings, load
from tipd.controller import ControllerClient
from tipd.curve import CurveError
from tipd.ensemble import Decision
from tipd.events import EventPublisher
from tipd.frames import Frame, LineAssembler
from tipd.health import HealthReports, event_microscope
from tipd.journal import Journal
from tipd.models import ModelError
from tipd.modelset import ModelSet
from tipd.operator_desk import OperatorDesk
from tipd.policy import Policy, PolicyConfig, Proposal
from tipd.preprocess import line_jumps
from tipd.protocol import (
    ActionEvent,
    Command,
    ErrorEvent,
    FrameHeader,
    ProtocolError,
    Reply,
    StateEvent,
    check_finite_array,
    decode_frame,
)
from tipd.ratelimit import ErrorBudget
from tipd.safety import Limits, SafetyGate
from tipd.systemd import sd_notify
from tipd.taxonomy import UNFAMILIAR

log = structlog.get_logger("tipd")


@dataclass
class Microscope:
    """Per-microscope state: assembly, policy, safety budget, last position."""

    name: str
    policy: Policy
    gate: SafetyGate
    assembler: LineAssembler = field(default_factory=LineAssembler)
    classified_rows: dict[str, int] = field(default_factory=dict)
    position_nm: tuple[float, float] = (0.0, 0.0)
    unfamiliar: int = 0  #: whole frames in a row that the model did not know


class Daemon:
    """The service object: all state lives here."""

    def __init__(self, settings: Settings, config_path: Path | None = None) -> None:
        self.settings = settings
        self.config_path = config_path
        self.started = time.monotonic()
        self.counters: Counter[str] = Counter()
        self.mics: dict[str, Microscope] = {}
        self.load_models(settings)
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
        self.archive = self._open_archive(settings)
        self.stopping = asyncio.Event()
        self.reload_requested = False
        self.tasks: set[asyncio.Task[Any]] = set()
        self.unknown_surfaces: set[str] = set()
        self.backlog = 0  #: messages that were waiting behind the last one received
        self.error_budget = ErrorBudget(settings.error_events_per_s)
        self.reports = HealthReports(self)  #: counters, health events, retention
        self.desk = OperatorDesk(self)  #: operator requests

    def _open_archive(self, settings: Settings) -> Archive | None:
        """The frame archive the settings ask for; None when off, or when its folder cannot
        be used (logged and counted: tipd serves on without it)."""
        a = settings.archive
        if not a.enabled:
            return None
        try:
            return Archive(a.folder, a.max_mb, a.max_days)
        except OSError as exc:
            self.counters["archive_failures"] += 1
            log.error(
                "frame archive unusable; serving without it", folder=str(a.folder), error=str(exc)
            )
            return None

    async def _archive(self, mic: str, frame: Frame, decision: Decision, model: str) -> str | None:
        """Keep a whole ``frame`` of ``mic`` with its verdict; its path, or None (off, or the
        write failed: reported as an ``archive`` error and counted, and the daemon goes on)."""
        if self.archive is None:
            return None
        verdict = {
            "model": model,
            "state": decision.state,
            "confidence": decision.confidence,
            "bad": decision.bad,
            "tip_change": decision.tip_change,
            "familiarity": decision.familiarity,
            "classes": decision.classes,
        }
        try:
            path = self.archive.keep(frame, verdict)
        except OSError as exc:
            self.counters["archive_failures"] += 1
            detail = f"frame not archived: {frame.frame_id}: {exc}"
            await self.error(mic, "archive", detail, frame.frame_id)
            return None
        self.counters["archived"] += 1
        return str(path)

    # ---------------------------------------------------------------- models

    def load_models(self, settings: Settings) -> None:
        """The models ``settings`` name (:meth:`ModelSet.load`); raises :class:`ModelError`
        (the caller keeps the old models) if any fails its checks."""
        self.models = ModelSet.load(settings.model, settings.models, settings.threads)

    def microscope(self, name: str) -> Microscope:
        mic = self.mics.get(name)
        if mic is None:
            s = self.settings
            mic = Microscope(
                name,
                Policy(self.models.desirable(), PolicyConfig(**s.policy.model_dump())),
                SafetyGate(limits=_limits(s), stop_file=s.safety.stop_file),
            )
            kept = self.journal.gate_state(name)
            if kept is not None:
                mic.gate.restore(kept)
                log.info("safety state restored", microscope=name, **mic.gate.status())
            self.mics[name] = mic
        return mic

    def keep_gate(self, mic: Microscope) -> None:
        """Write ``mic``'s safety-gate state to the journal, so a restart goes on from it."""
        self.journal.gate(mic.name, mic.gate.snapshot())

    def _apply(self, settings: Settings) -> None:
        """New settings for every microscope already known: the gates' limits and stop file,
        the policies' settings and good states. Budgets, spots, streaks and ladders are
        kept: a reload changes the rules, not what has happened."""
        for mic in self.mics.values():
            mic.gate.limits = _limits(settings)
            mic.gate.stop_file = settings.safety.stop_file
            mic.policy.config = PolicyConfig(**settings.policy.model_dump())
            mic.policy.desirable = self.models.desirable()

    # ---------------------------------------------------------------- loop

    async def run(self) -> int:
        s = self.settings
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RCVHWM, s.queue_messages)
        self.sub.setsockopt(zmq.MAXMSGSIZE, int(s.max_message_mb * 1e6))
        if self.curve is not None:
            self.curve.server(self.sub, "frames")
        self.sub.bind(s.endpoints.frames)
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
        self.operator.bind(s.endpoints.operator)
        self.controller = ControllerClient(
            self.ctx,
            s.endpoints.control,
            s.controller.timeout_s,
            s.controller.retries,
            self.curve if self.curve is not None and self.curve.server_key else None,
        )
        self.controller.start()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._request_reload)
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
                    await self.desk.answer_waiting()
                if self.sub not in ready:
                    continue
                t0 = time.perf_counter()
                batch = [await self.sub.recv_multipart()]
                while len(batch) < 256 and await self.sub.poll(0):  # whatever else is waiting
                    batch.append(await self.sub.recv_multipart())
                self.backlog = len(batch) - 1
                decoded = [_decode(parts) for parts in batch]
                # under load only the newest valid message of each microscope is classified
                newest = {
                    d[1].microscope: k
                    for k, d in enumerate(decoded)
                    if not isinstance(d, ProtocolError)
                }
                for k, (parts, d) in enumerate(zip(batch, decoded, strict=True)):
                    mine = isinstance(d, ProtocolError) or newest.get(d[1].microscope) == k
                    try:  # one message must never stop the daemon, whatever it holds
                        await self.handle(parts, t0, mine, d)
                    except Exception as exc:
                        await self.internal_error(parts, d, exc)
        finally:
            sd_notify("STOPPING=1")
            health.cancel()
            if self.tasks:
                await asyncio.wait(self.tasks, timeout=self.settings.controller.timeout_s)
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

    def _request_reload(self) -> None:
        self.reload_requested = True

    def _reload(self) -> None:
        self.reload_requested = False
        try:
            settings = load(self.config_path)
            self.load_models(settings)
        except (ModelError, ValueError, OSError) as exc:  # ConfigError is a ValueError
            self.counters["reload_failed"] += 1
            log.error("reload failed; keeping the old settings and models", error=str(exc))
            return
        self.settings = settings
        self._apply(settings)
        self.counters["reloads"] += 1
        log.info(
            "reloaded",
            microscopes=sorted(self.mics),
            limits=settings.safety.model_dump(mode="json"),
            advisory=settings.advisory,
        )

    # ---------------------------------------------------------------- frames

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

    async def internal_error(
        self,
        parts: list[bytes],
        decoded: tuple[str, FrameHeader, np.ndarray] | ProtocolError,
        exc: Exception,
    ) -> None:
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

    async def handle(
        self,
        parts: list[bytes],
        t0: float,
        newest: bool = True,
        decoded: tuple[str, FrameHeader, np.ndarray] | ProtocolError | None = None,
    ) -> None:
        """One message from the frame socket (``decoded``: :func:`_decode` of it, if done
        already). Messages that are not the ``newest`` of their microscope in a backlog are
        validated and assembled but not classified: whole frames are journaled as skipped."""
        self.counters["messages"] += 1
        if decoded is None:
            decoded = _decode(parts)
        if isinstance(decoded, ProtocolError):
            microscope = "?"
            if parts and isinstance(parts[0], bytes) and b"." in parts[0]:
                candidate = parts[0].split(b".", 1)[1].decode("ascii", "replace")
                if candidate.replace("-", "").replace("_", "").isalnum() and len(candidate) <= 64:
                    microscope = candidate
            await self.error(microscope, "protocol", str(decoded))
            return
        kind, header, data = decoded
        allowed = self.settings.microscopes
        if allowed and header.microscope not in allowed:
            await self.error(
                header.microscope,
                "microscope",
                f"unknown microscope {header.microscope!r}; configured: {allowed}",
                header.frame_id,
            )
            return
        if header.microscope not in self.mics and len(self.mics) >= self.settings.max_microscopes:
            await self.error(
                header.microscope,
                "microscope",
                f"already serving {len(self.mics)} microscopes (max_microscopes); "
                f"list the ids to serve in `microscopes`",
                header.frame_id,
            )
            return
        mic = self.microscope(header.microscope)
        mic.position_nm = (float(header.position_nm[0]), float(header.position_nm[1]))
        if self.preview is not None:
            await self.preview.mirror(parts)
        if header.surface is not None and not self.models.knows(header.surface):
            key = f"{header.microscope}:{header.surface}"
            if key not in self.unknown_surfaces:
                self.unknown_surfaces.add(key)
                default = self.models.default.manifest.name
                await self.error(
                    header.microscope,
                    "surface",
                    f"no model for surface {header.surface!r}; classified with the "
                    f"default model {default!r}",
                    header.frame_id,
                )
        if kind == "frame":
            self.counters["frames"] += 1
            if not newest:
                self.counters["skipped"] += 1
                self.journal.frame(
                    mic.name,
                    header.frame_id,
                    header.seq,
                    "frame",
                    header.shape[0],
                    "skipped",
                    detail="a newer frame was waiting",
                )
                return
            frame = Frame.from_header(header, data)
            await self.decide(mic, frame, header, header.shape[0], "frame", t0)
            return
        self.counters["chunks"] += 1
        try:
            partial = mic.assembler.add(header, data)
        except ProtocolError as exc:
            await self.error(header.microscope, "protocol", str(exc), header.frame_id)
            return
        if not newest:
            return
        seen = partial.rows_seen
        last = mic.classified_rows.get(header.frame_id, 0)
        s = self.settings
        if seen >= min(s.window_lines, header.shape[0]) and seen - last >= s.window_every:
            mic.classified_rows[header.frame_id] = seen
            if len(mic.classified_rows) > 8:
                mic.classified_rows.pop(next(iter(mic.classified_rows)))
            stop = partial.last_row + 1
            window = partial.frame.data[max(0, stop - s.window_lines) : stop]
            if np.isfinite(window).any():
                first = max(0, stop - s.window_lines)
                await self.decide(
                    mic, partial.frame.replace(data=window), header, seen, "window", t0, first
                )

    async def decide(
        self,
        mic: Microscope,
        frame: Frame,
        header: FrameHeader,
        rows_seen: int,
        kind: str,
        t0: float,
        first_row: int = 0,
    ) -> None:
        """Classify ``frame`` (a whole frame, or a window starting at ``first_row``), publish
        and journal the decision with the line jumps it shows, and let the policy act."""
        ens = self.models.for_surface(header.surface)
        decision: Decision = ens.classify([frame])[0]
        jumps = [first_row + int(r) for r in line_jumps(frame.data)]
        latency = (time.perf_counter() - t0) * 1e3
        self.counters["decisions"] += 1
        lines = decision.lines
        archived = None
        if kind == "frame":
            archived = await self._archive(mic.name, frame, decision, ens.manifest.name)
        self.journal.frame(
            mic.name,
            header.frame_id,
            header.seq,
            kind,
            rows_seen,
            "classified",
            decision.state,
            {
                **decision.classes,
                "bad": decision.bad,
                "tip_change_lines": lines.probability,
            },
            latency,
            familiarity=decision.familiarity,
            archive=archived,
        )
        await self.events.publish(
            StateEvent(
                microscope=mic.name,
                frame_id=header.frame_id,
                seq=header.seq,
                rows_seen=rows_seen,
                members=decision.members,
                voted=decision.classes,
                state=decision.state,
                desirable=decision.desirable,
                latency_ms=latency,
                line_jumps=jumps,
                confidence=min(1.0, max(0.0, decision.confidence)),
                familiarity=decision.familiarity,
                lines_tip_change=lines.probability,
                lines_row=None if lines.row is None else first_row + lines.row,
                bad=decision.bad,
                tip_change=decision.tip_change,
                kind="window" if kind == "window" else "frame",
            )
        )
        if kind == "frame":
            await self._count_unfamiliar(mic, decision)
        if kind == "window" and not self.settings.act_on_windows:
            return  # reported above, not acted on (see Settings.act_on_windows)
        good = decision.desirable or (
            kind == "frame" and mic.policy.good(decision.state, decision.bad)
        )
        if good and mic.gate.fruitless:  # the fruitless run ends (kept only when it changes)
            mic.gate.good_frame()
            self.keep_gate(mic)
        for proposal in mic.policy.observe(
            decision.state,
            decision.confidence,
            header.frame_id,
            decision.bad,
            window=kind == "window",
        ):
            command = proposal.command(mic.name)
            if not await self.act(mic, command, proposal):
                break  # a follow-up move makes no sense after a refused pulse

    async def _count_unfamiliar(self, mic: Microscope, decision: Decision) -> None:
        """Keep ``mic``'s run of unfamiliar whole frames; when it reaches ``blind_after``, say
        at once (log and health event) that tipd is blind on that microscope."""
        if decision.state != UNFAMILIAR:
            if mic.unfamiliar >= self.settings.blind_after:
                log.info("frames familiar again", microscope=mic.name, after=mic.unfamiliar)
            mic.unfamiliar = 0
            return
        mic.unfamiliar += 1
        self.counters["unfamiliar"] += 1
        if mic.unfamiliar == self.settings.blind_after:
            log.warning(
                "blind: the model does not know these frames; no action will be taken",
                microscope=mic.name,
                frames=mic.unfamiliar,
                familiarity=decision.familiarity,
            )
            await self.events.publish(self.reports.event(mic.name))

    # ---------------------------------------------------------------- actions

    async def act(
        self, mic: Microscope, command: Command, proposal: Proposal | None = None
    ) -> bool:
        """Pass ``command`` through the gate, then send it (in the background) or record why
        not; True when sent. The policy is told when its ``proposal`` is refused here or by
        the controller, so its ladder does not climb past a rung that was never executed."""
        frame_id = command.reason.frame_id if command.reason else ""
        params = command.params.model_dump()
        reason = command.reason.model_dump() if command.reason else None
        verdict = mic.gate.check(command, mic.position_nm)
        refusal = None
        if not verdict.allowed:
            refusal, status = f"refused by the safety gate: {verdict.reason}", "refused"
            self.counters["refused"] += 1
        elif self.settings.advisory:
            refusal, status = "advisory mode: decided, not sent", "advisory"
            self.counters["advisory"] += 1
        if refusal is not None:
            log.info("action not sent", microscope=mic.name, action=command.action, why=refusal)
            self.journal.command(
                command.id, mic.name, frame_id, command.action, params, reason, status, refusal
            )
            await self.events.publish(
                ActionEvent(
                    microscope=mic.name,
                    command=command,
                    reply=Reply(
                        id=command.id, status="rejected", detail=refusal, t_done=time.time()
                    ),
                )
            )
            if proposal is not None and status == "refused":
                mic.policy.refused(proposal)
            return False
        waiting = mic.gate.needs_operator
        mic.gate.commit(command, mic.position_nm)
        self.keep_gate(mic)
        if mic.gate.needs_operator and not waiting:  # say it at once, not at the next tick
            log.warning("needs operator: no good frame after the last actions", microscope=mic.name)
            await self.events.publish(self.reports.event(mic.name))
        self.counters["commands"] += 1
        self.journal.command(command.id, mic.name, frame_id, command.action, params, reason, "sent")
        await self.events.publish(ActionEvent(microscope=mic.name, command=command))
        log.info(
            "command sent",
            microscope=mic.name,
            action=command.action,
            params=params,
            state=reason["state"] if reason else None,
        )
        task = asyncio.get_running_loop().create_task(self._await_reply(mic, command, proposal))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return True

    async def _await_reply(
        self, mic: Microscope, command: Command, proposal: Proposal | None
    ) -> None:
        reply, tries = await self.controller.execute(command)
        if reply.status != "done" and proposal is not None:
            mic.policy.refused(proposal)
        self.counters[f"reply_{reply.status}"] += 1
        self.journal.reply(command.id, reply.status, reply.detail)
        await self.events.publish(ActionEvent(microscope=mic.name, command=command, reply=reply))
        log.info(
            "reply",
            microscope=mic.name,
            id=command.id,
            status=reply.status,
            detail=reply.detail,
            tries=tries,
        )


def _decode(parts: list[bytes]) -> tuple[str, FrameHeader, np.ndarray] | ProtocolError:
    """A frame message decoded and checked, or the :class:`ProtocolError` saying why not."""
    try:
        kind, header, data = decode_frame(parts)
        check_finite_array(data)
    except ProtocolError as exc:
        return exc
    return kind, header, data


def _limits(settings: Settings) -> Limits:
    return Limits(**settings.safety.model_dump(exclude={"stop_file"}))


def run(settings: Settings, config_path: Path | None = None) -> int:
    """Build the daemon and serve until SIGTERM; model problems at start are fatal (exit 2)."""
    try:
        daemon = Daemon(settings, config_path)
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
    except zmq.ZMQError as exc:
        log.error("cannot start: endpoint", error=str(exc), **settings.endpoints.model_dump())
        return 2

"""The daemon's side of operator commands (``tipd hold | release | reset | status``, and the
Stop and Release of ``tipd web``): requests on the operator endpoint, carried out on the
safety gates, kept, journaled and published. The client side is :mod:`tipd.operator`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import structlog
import zmq.asyncio

from tipd.condition import State
from tipd.config import Settings
from tipd.events import EventPublisher
from tipd.frames import Frame
from tipd.journal import Journal
from tipd.microscopes import Microscope, Microscopes, reference
from tipd.protocol import (
    OperatorEvent,
    OperatorReply,
    OperatorRequest,
    ProtocolError,
    decode_operator_request,
    encode_operator,
)

log = structlog.get_logger("tipd")


class OperatorDesk:
    """Operator requests to a running daemon: its microscopes, journal and events, and its
    current settings and state (both change while it runs)."""

    def __init__(
        self,
        mics: Microscopes,
        journal: Journal,
        events: EventPublisher,
        counters: Counter[str],
        settings: Callable[[], Settings],
        state: Callable[[], tuple[State, list[str]]],
        archived: Callable[[str, str], Frame | None] = lambda mic, frame_id: None,
    ) -> None:
        self.archived = archived  #: a microscope's frame by id from the archive, if kept
        self.mics = mics
        self.journal = journal
        self.events = events
        self.counters = counters
        self.settings = settings
        self.state = state

    async def answer_waiting(self, sock: zmq.asyncio.Socket) -> None:
        """Answer every operator request waiting on ``sock`` (each under its own guard)."""
        while await sock.poll(0):
            identity, *parts = await sock.recv_multipart()
            envelope = [identity]
            if parts and parts[0] == b"":
                envelope, parts = [identity, b""], parts[1:]
            try:
                reply = await self.operate(decode_operator_request(parts))
            except ProtocolError as exc:
                self.counters["operator_bad"] += 1
                reply = OperatorReply(ok=False, detail=str(exc))
            except Exception as exc:  # never let an operator's request stop the daemon
                log.exception("operator request failed")
                reply = OperatorReply(ok=False, detail=f"{type(exc).__name__}: {exc}")
            await sock.send_multipart([*envelope, *encode_operator(reply)])

    def mark_good(self, mic: Microscope, frame_id: str | None) -> str | None:
        """Make frame ``frame_id`` of ``mic`` (None: its latest) its area's reference: from
        memory, else from the archive. The frame's id, or None when it is in neither."""
        marked = mic.hist.memory.mark_good(frame_id)
        if marked is not None:
            return marked.frame_id
        if frame_id is None:
            return None
        frame = self.archived(mic.name, frame_id)
        if frame is None:
            return None
        mic.hist.memory.pin(frame, reference(frame))
        return frame_id

    def gate_status(self, mic: Microscope) -> dict[str, Any]:
        return {**mic.gate.status(), "advisory": self.settings().advisory}

    async def operate(self, request: OperatorRequest) -> OperatorReply:
        """Carry out one operator request (see :mod:`tipd.operator`)."""
        name = request.microscope
        advisory = self.settings().advisory
        if request.op == "status":
            mics = [m for m in self.mics if name is None or m.name == name]
            detail = "advisory: decides, sends nothing" if advisory else "live"
            if name is not None and not mics:
                detail = f"{detail}; no frame from {name!r} yet"
            state, why = self.state()
            return OperatorReply(
                ok=True,
                detail=detail,
                gates={m.name: self.gate_status(m) for m in mics},
                state=state,
                why=[w[:512] for w in why],
            )
        if name is None:
            return OperatorReply(ok=False, detail=f"{request.op}: which microscope?")
        allowed = self.settings().microscopes
        if allowed and name not in allowed:
            detail = f"unknown microscope {name!r}; configured: {allowed}"
            return OperatorReply(ok=False, detail=detail)
        mic = self.mics.get(name)
        if request.op == "hold":
            mic.gate.hold(request.who)
            detail = f"{name} on hold: every command but withdraw halted"
        elif request.op == "release":
            mic.gate.release()
            detail = f"{name} released"
        elif request.op == "reference":
            marked = self.mark_good(mic, request.frame_id)
            if marked is None:
                which = request.frame_id or "a latest frame"
                return OperatorReply(
                    ok=False, detail=f"{name}: no frame {which!r} in memory or the archive"
                )
            detail = f"{name}: frame {marked!r} is the reference of its area (a good tip)"
        else:
            fruitless = mic.gate.fruitless
            mic.gate.reset_operator()
            mic.policy.rungs.clear()  # the next action starts from the gentlest rung
            detail = f"{name} reset: needs_operator cleared ({fruitless} in a row before)"
        self.mics.keep(mic)
        self.counters[f"operator_{request.op}"] += 1
        self.journal.operator(name, request.op, request.who, detail)
        log.warning("operator", op=request.op, who=request.who, microscope=name)
        await self.events.publish(
            OperatorEvent(microscope=name, op=request.op, who=request.who, detail=detail)
        )
        return OperatorReply(ok=True, detail=detail, gates={name: self.gate_status(mic)})

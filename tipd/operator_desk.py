"""The daemon's side of operator commands (``tipd hold | release | reset | status``, and the
Stop and Release of ``tipd web``): requests on the operator endpoint, carried out on the
safety gates, kept, journaled and published. The client side is :mod:`tipd.operator`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from tipd.protocol import (
    OperatorEvent,
    OperatorReply,
    OperatorRequest,
    ProtocolError,
    decode_operator_request,
    encode_operator,
)

if TYPE_CHECKING:
    from tipd.service import Daemon, Microscope

log = structlog.get_logger("tipd")


class OperatorDesk:
    """Operator requests to a running :class:`tipd.service.Daemon`."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    async def answer_waiting(self) -> None:
        """Answer every operator request waiting (each under its own guard)."""
        while await self.daemon.operator.poll(0):
            identity, *parts = await self.daemon.operator.recv_multipart()
            envelope = [identity]
            if parts and parts[0] == b"":
                envelope, parts = [identity, b""], parts[1:]
            try:
                reply = await self.operate(decode_operator_request(parts))
            except ProtocolError as exc:
                self.daemon.counters["operator_bad"] += 1
                reply = OperatorReply(ok=False, detail=str(exc))
            except Exception as exc:  # never let an operator's request stop the daemon
                log.exception("operator request failed")
                reply = OperatorReply(ok=False, detail=f"{type(exc).__name__}: {exc}")
            await self.daemon.operator.send_multipart([*envelope, *encode_operator(reply)])

    def gate_status(self, mic: Microscope) -> dict[str, Any]:
        return {**mic.gate.status(), "advisory": self.daemon.settings.advisory}

    async def operate(self, request: OperatorRequest) -> OperatorReply:
        """Carry out one operator request (see :mod:`tipd.operator`)."""
        name = request.microscope
        if request.op == "status":
            mics = [self.daemon.mics[name]] if name in self.daemon.mics else []
            if name is None:
                mics = list(self.daemon.mics.values())
            detail = "advisory: decides, sends nothing" if self.daemon.settings.advisory else "live"
            if name is not None and not mics:
                detail = f"{detail}; no frame from {name!r} yet"
            return OperatorReply(
                ok=True, detail=detail, gates={m.name: self.gate_status(m) for m in mics}
            )
        if name is None:
            return OperatorReply(ok=False, detail=f"{request.op}: which microscope?")
        allowed = self.daemon.settings.microscopes
        if allowed and name not in allowed:
            detail = f"unknown microscope {name!r}; configured: {allowed}"
            return OperatorReply(ok=False, detail=detail)
        mic = self.daemon.microscope(name)
        if request.op == "hold":
            mic.gate.hold(request.who)
            detail = f"{name} on hold: every command but withdraw halted"
        elif request.op == "release":
            mic.gate.release()
            detail = f"{name} released"
        else:
            fruitless = mic.gate.fruitless
            mic.gate.reset_operator()
            mic.policy.rungs.clear()  # the next action starts from the gentlest rung
            detail = f"{name} reset: needs_operator cleared ({fruitless} in a row before)"
        self.daemon.keep_gate(mic)
        self.daemon.counters[f"operator_{request.op}"] += 1
        self.daemon.journal.operator(name, request.op, request.who, detail)
        log.warning("operator", op=request.op, who=request.who, microscope=name)
        await self.daemon.events.publish(
            OperatorEvent(microscope=name, op=request.op, who=request.who, detail=detail)
        )
        return OperatorReply(ok=True, detail=detail, gates={name: self.gate_status(mic)})

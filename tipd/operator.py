"""Operator commands to a running daemon: ``tipd hold | release | reset | status``.

The daemon binds a ROUTER on ``endpoints.operator`` (loopback by default; CURVE with the same
keys as the other endpoints when it binds beyond loopback). A request is one
:class:`tipd.protocol.OperatorRequest`; the answer one :class:`tipd.protocol.OperatorReply`.
Every hold, release and reset is journaled with who and when, published as an ``operator``
event and kept in the gate's state, so it survives a restart like the rest of the gate.
"""

from __future__ import annotations

import getpass
from typing import Any

import zmq

from tipd.curve import Curve
from tipd.protocol import OperatorReply, OperatorRequest, decode_operator_reply, encode_operator


class NoAnswerError(Exception):
    """The daemon did not answer in time (not running, or another endpoint)."""


def ask(
    endpoint: str,
    request: OperatorRequest,
    timeout_s: float = 5.0,
    curve: Curve | None = None,
) -> OperatorReply:
    """Send ``request`` to the daemon at ``endpoint`` and return its reply; :class:`NoAnswerError`
    after ``timeout_s`` seconds, :class:`tipd.protocol.ProtocolError` for a reply that is not
    one."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if curve is not None:
        curve.client(sock)
    try:
        sock.connect(endpoint)
        sock.send_multipart([b"", *encode_operator(request)])
        if not sock.poll(int(timeout_s * 1000)):
            raise NoAnswerError(
                f"no answer from tipd at {endpoint} in {timeout_s:g} s: is it running?"
            )
        parts = sock.recv_multipart()
        return decode_operator_reply(parts[1:] if parts and parts[0] == b"" else parts)
    finally:
        sock.close()


def who() -> str:
    """The user name operator commands are journaled under by default."""
    try:
        return getpass.getuser()[:64] or "operator"
    except (KeyError, OSError):
        return "operator"


def describe(reply: OperatorReply) -> list[str]:
    """Lines for a person: the daemon's state and why (on a status reply), the reply's
    detail, then one line per microscope and each reason its gate refuses."""
    lines = [f"tipd: {reply.state}"] if reply.state else []
    lines += [f"  {w}" for w in reply.why]
    lines += [reply.detail] if reply.detail else []
    for name, status in sorted(reply.gates.items()):
        lines.append(f"{name}: {_state(status)}")
        lines += [f"  refusing: {r}" for r in status.get("refusing", [])]
    return lines


def _state(status: dict[str, Any]) -> str:
    words = []
    if status.get("stopped"):
        words.append("STOPPED (stop file)")
    if status.get("held"):
        words.append("ON HOLD")
    if status.get("needs_operator"):
        words.append("NEEDS OPERATOR")
    if not words:
        words.append("may act" if not status.get("advisory") else "advisory: decides only")
    actions = status.get("actions_last_hour", 0)
    fruitless = status.get("fruitless", 0)
    return f"{', '.join(words)}; {actions} pulses/crashes in the last hour, {fruitless} in a row"

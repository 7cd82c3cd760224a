"""The events PUB socket (state, action, error, health), and ``tipd events`` to tail it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import zmq
import zmq.asyncio

from tipd import ports
from tipd.curve import Curve
from tipd.protocol import (
    EVENT_KINDS,
    ProtocolError,
    StateEvent,
    _Event,
    decode_event,
    encode_event,
)


class EventPublisher:
    """Publishes typed events on a bound PUB socket; never blocks (drops when no reader)."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        endpoint: str,
        curve: Curve | None = None,
        name: str = "events",
    ) -> None:
        self.socket = ctx.socket(zmq.PUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SNDHWM, 10000)
        if curve is not None:
            curve.server(self.socket, name)
        ports.bind(self.socket, endpoint, name)
        self.sent = 0

    async def publish(self, event: _Event) -> None:
        await self.socket.send_multipart(encode_event(event))
        self.sent += 1

    async def mirror(self, parts: list[bytes]) -> None:
        """Publish a frame or lines message as received (``[topic, header, payload]``, topics
        ``frame.<mic>`` and ``lines.<mic>``), on the preview socket, for dashboards that draw
        the scan as it comes (``tipd web``)."""
        await self.socket.send_multipart(parts, copy=False)

    def close(self) -> None:
        self.socket.close()


def tail(
    endpoint: str,
    topics: list[str],
    seconds: float | None = None,
    curve: Curve | None = None,
    on_quiet: Callable[[], None] | None = None,
    quiet_s: float = 12.0,
    frames_only: bool = False,
) -> Iterator[str]:
    """Readable lines for each event on ``endpoint`` (a tipd events socket); ``curve`` with
    tipd's public key as server key when tipd's events need CURVE. ``on_quiet`` is called
    once if nothing at all arrives in the first ``quiet_s`` seconds; ``frames_only`` leaves out
    the decisions on rolling windows mid-frame."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    if curve is not None:
        curve.client(sub)
    sub.connect(endpoint)
    for t in topics or list(EVENT_KINDS):
        sub.setsockopt(zmq.SUBSCRIBE, t.encode())
    start = time.monotonic()
    end = None if seconds is None else start + seconds
    heard = False
    try:
        while end is None or time.monotonic() < end:
            if not sub.poll(200):
                if not heard and on_quiet is not None and time.monotonic() - start > quiet_s:
                    on_quiet()
                    heard = True  # said once
                continue
            heard = True
            parts = sub.recv_multipart()
            try:
                event = decode_event(parts)
            except ProtocolError as exc:
                yield f"(undecodable event: {exc})"
                continue
            if frames_only and isinstance(event, StateEvent) and event.kind == "window":
                continue
            yield describe(parts[0].decode(), event)
    finally:
        sub.close()


def describe(topic: str, event: _Event) -> str:
    """One line for a person."""
    stamp = time.strftime("%H:%M:%S", time.localtime(event.t))
    body = event.model_dump()
    kind = topic.split(".")[0]
    if kind == "state":
        known = body.get("familiarity")
        seen = "" if known is None else f", familiarity {known:.2f}"
        if body.get("lines_row") is not None and body.get("lines_tip_change", 0.0) >= 0.5:
            seen += f", lines jump at row {body['lines_row']} (p {body['lines_tip_change']:.2f})"
        what = "frame" if body["kind"] == "frame" else f"window to row {body['rows_seen']}"
        said = [e for e in body.get("evidence", []) if e["certain"] and e["fault"] != "none"]
        if said:
            top = max(said, key=lambda e: e["probability"])
            seen += f"; {top['source']}: {top['reason']}"
        return (
            f"{stamp} {event.microscope} {what} {body['frame_id']}: {body['state']} "
            f"{body['confidence']:.2f} ({'good' if body['desirable'] else 'not good'}, "
            f"bad {body['bad']:.2f}{seen}) {body['latency_ms']:.0f} ms"
        )
    if kind == "action":
        c = body["command"]
        reply = body.get("reply")
        params = " ".join(f"{k}={v:g}" for k, v in c["params"].items())
        tail_ = f" -> {reply['status']}: {reply['detail']}" if reply else " sent"
        return f"{stamp} {event.microscope} {c['action']} {params}{tail_}"
    if kind == "error":
        return f"{stamp} {event.microscope} error ({body['what']}): {body['detail']}"
    if kind == "operator":
        return f"{stamp} {event.microscope} {body['op']} by {body['who']}: {body['detail']}"
    if kind == "health":
        said = [f"up {body['uptime_s']:.0f} s", body["provider"], f"queue {body['queue_depth']}"]
        said += [f"{m} BLIND ({n} unfamiliar frames)" for m, n in body.get("blind", {}).items()]
        said += [f"{m} NEEDS OPERATOR" for m in body.get("needs_operator", [])]
        said += [f"{m} on hold" for m in body.get("held", [])]
        said += ["STOP FILE present"] if body.get("stopped") else []
        if body.get("state"):
            said.insert(0, str(body["state"]))
        return f"{stamp} health {event.microscope}: " + ", ".join(said)
    return f"{stamp} {topic:<14} " + json.dumps(
        {k: v for k, v in body.items() if k not in ("v", "t")}
    )

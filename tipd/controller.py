"""DEALER client of a controller's ROUTER: send a command, await its reply, resend on timeout.

A resent command keeps its id, and the controller executes an id once, so a controller that
restarts mid-command or a reply lost on the way never makes the tip see a command twice. Sending
never blocks the daemon: with ``ZMQ_IMMEDIATE`` a controller that is down makes the send fail
fast (the command is recorded as failed), and replies are matched to commands by id.
"""

from __future__ import annotations

import asyncio
import time

import zmq
import zmq.asyncio

from tipd.curve import Curve
from tipd.protocol import Command, ProtocolError, Reply, decode_reply, encode_command


class ControllerClient:
    """One DEALER connected to ``endpoint``; :meth:`execute` is safe to call concurrently."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        endpoint: str,
        timeout_s: float = 5.0,
        retries: int = 2,
        curve: Curve | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.retries = retries
        self.socket = ctx.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.IMMEDIATE, 1)
        self.socket.setsockopt(zmq.SNDHWM, 100)
        if curve is not None:
            curve.client(self.socket)
        self.socket.connect(endpoint)
        self._waiting: dict[str, asyncio.Future[Reply]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.bad_replies = 0

    def start(self) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        while True:
            parts = await self.socket.recv_multipart()
            try:
                reply = decode_reply(parts)
            except ProtocolError:
                self.bad_replies += 1
                continue
            future = self._waiting.get(reply.id)
            if future is not None and not future.done():
                future.set_result(reply)

    async def execute(self, command: Command) -> tuple[Reply, int]:
        """Send ``command`` (and resend it, same id, after each timeout): ``(reply, tries)``.
        A controller that never answers gives a ``failed`` reply written by us."""
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[command.id] = future
        try:
            for attempt in range(1, self.retries + 2):
                try:
                    await self.socket.send_multipart(encode_command(command), flags=zmq.NOBLOCK)
                except zmq.Again:
                    await asyncio.sleep(min(self.timeout_s, 0.5))  # nobody connected yet
                    continue
                try:
                    return await asyncio.wait_for(asyncio.shield(future), self.timeout_s), attempt
                except TimeoutError:
                    continue
            detail = (
                f"no reply from {self.endpoint} after {self.retries + 1} tries of "
                f"{self.timeout_s:g} s"
            )
            return Reply(
                id=command.id, status="failed", detail=detail, t_done=time.time()
            ), self.retries + 1
        finally:
            self._waiting.pop(command.id, None)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        self.socket.close()

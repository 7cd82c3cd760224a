"""Carrying out what a decision step decided: every command journaled and published, those to
send sent in the background, their replies journaled, published and told to the step.

A command the gate refused or that advisory mode kept back is an ``action`` event with a
``rejected`` reply saying why (``refused by the safety gate: …`` or ``advisory mode: …``) and
a journal row of that status. A command to send is journaled as ``sent`` and published at
once; the controller client then sends it without holding up frames, and its reply (or the
``failed`` reply of a controller that never answered) follows. A controller that does not
answer is *silent* until it answers again (:mod:`tipd.condition`: degraded).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any, Protocol

import structlog

from tipd.decide import Action, History, replied
from tipd.events import EventPublisher
from tipd.journal import Journal
from tipd.protocol import ActionEvent, Command, Reply

log = structlog.get_logger("tipd")


class Controller(Protocol):
    """What executes commands: :class:`tipd.controller.ControllerClient` and its kin."""

    async def execute(self, command: Command) -> tuple[Reply, int]: ...


class Dispatcher:
    """Sends the actions of decision steps (see the module)."""

    def __init__(
        self,
        journal: Journal,
        events: EventPublisher,
        counters: Counter[str],
        silent: set[str],
    ) -> None:
        self.journal = journal
        self.events = events
        self.counters = counters
        self.silent = silent  #: microscopes whose controller did not answer (kept up to date)
        self.tasks: set[asyncio.Task[Any]] = set()  #: replies awaited

    async def carry_out(self, hist: History, actions: list[Action], controller: Controller) -> None:
        """Journal and publish each of ``actions`` of microscope ``hist``; send those to
        send through ``controller``, in the background."""
        for action in actions:
            command = action.command
            frame_id = command.reason.frame_id if command.reason else ""
            params = command.params.model_dump()
            reason = command.reason.model_dump() if command.reason else None
            if action.outcome != "send":
                why = action.detail
                if action.outcome == "refused":
                    why = f"refused by the safety gate: {why}"
                self.counters[action.outcome] += 1
                log.info("action not sent", microscope=hist.name, action=command.action, why=why)
                self.journal.command(
                    command.id, hist.name, frame_id, command.action, params, reason,
                    action.outcome, why,
                )  # fmt: skip
                reply = Reply(id=command.id, status="rejected", detail=why, t_done=time.time())
                await self.events.publish(
                    ActionEvent(microscope=hist.name, command=command, reply=reply)
                )
                continue
            self.counters["commands"] += 1
            self.journal.command(
                command.id, hist.name, frame_id, command.action, params, reason, "sent"
            )
            await self.events.publish(ActionEvent(microscope=hist.name, command=command))
            state = reason["state"] if reason else None
            log.info(
                "command sent", microscope=hist.name, action=command.action, params=params,
                state=state,
            )  # fmt: skip
            task = asyncio.get_running_loop().create_task(self._await(hist, action, controller))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _await(self, hist: History, action: Action, controller: Controller) -> None:
        command = action.command
        reply, tries = await controller.execute(command)
        replied(hist, action, reply)
        if reply.status == "failed" and reply.detail.startswith("no reply"):
            self.silent.add(hist.name)
        else:
            self.silent.discard(hist.name)
        self.counters[f"reply_{reply.status}"] += 1
        self.journal.reply(command.id, reply.status, reply.detail)
        await self.events.publish(ActionEvent(microscope=hist.name, command=command, reply=reply))
        log.info(
            "reply", microscope=hist.name, id=command.id, status=reply.status,
            detail=reply.detail, tries=tries,
        )  # fmt: skip

    async def drain(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the replies still awaited."""
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=timeout_s)

"""Executing a command id once: the memory a controller (the virtual microscope, a bridge) keeps
so that a resent command is answered again, not executed again.

With a ``path`` the memory survives the controller's own crash. It is a JSON-lines file written
ahead of every action: :meth:`RepliesById.begin` records the id (flushed and fsynced) before the
controller acts, :meth:`RepliesById.remember` records the reply before it is sent. A controller
killed between the two finds the id begun but unanswered when it starts again: it does not know
whether the action happened, so it never repeats it and answers a resend ``failed`` with
:data:`INTERRUPTED`. A torn last line (a kill mid-write) is ignored.
"""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import IO

from tipd.protocol import Reply

#: the reply to an id whose execution a crash interrupted
INTERRUPTED = (
    "interrupted: the controller stopped while carrying this command out; it may have taken "
    "effect and is not repeated"
)


class RepliesById:
    """The reply to each executed command id, the oldest forgotten beyond ``limit`` ids; kept
    in ``path`` too when given (see the module's docstring)."""

    def __init__(self, limit: int = 10000, path: Path | None = None) -> None:
        self.limit = limit
        self.path = path
        self._replies: OrderedDict[str, Reply] = OrderedDict()
        self._file: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                self._load(path)
            self._file = path.open("a")

    def _load(self, path: Path) -> None:
        begun: dict[str, float] = {}
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
                if record.get("begin"):
                    begun[str(record["id"])] = float(record["t"])
                else:
                    reply = Reply.model_validate(record["reply"])
                    begun.pop(reply.id, None)
                    self._keep(reply)
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a kill mid-write
        for command_id, t in begun.items():
            self._keep(Reply(id=command_id, status="failed", detail=INTERRUPTED, t_done=t))

    def _append(self, record: dict[str, object]) -> None:
        if self._file is None:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def _keep(self, reply: Reply) -> None:
        self._replies[reply.id] = reply
        while len(self._replies) > self.limit:
            self._replies.popitem(last=False)

    def get(self, command_id: str) -> Reply | None:
        """The first reply to ``command_id``, or None when it was never executed."""
        return self._replies.get(command_id)

    def begin(self, command_id: str) -> None:
        """Record that ``command_id`` is about to be carried out (call before acting)."""
        self._append({"begin": True, "id": command_id, "t": time.time()})

    def remember(self, reply: Reply) -> None:
        """Record the reply to an executed id (call before sending it)."""
        self._append({"reply": reply.model_dump(mode="json")})
        self._keep(reply)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __len__(self) -> int:
        return len(self._replies)

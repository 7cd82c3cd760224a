"""Executing a command id once: the memory a controller (the virtual microscope, a bridge) keeps
so that a resent command is answered again, not executed again."""

from __future__ import annotations

from collections import OrderedDict

from tipd.protocol import Reply


class RepliesById:
    """The reply to each executed command id, the oldest forgotten beyond ``limit`` ids."""

    def __init__(self, limit: int = 10000) -> None:
        self.limit = limit
        self._replies: OrderedDict[str, Reply] = OrderedDict()

    def get(self, command_id: str) -> Reply | None:
        """The first reply to ``command_id``, or None when it was never executed."""
        return self._replies.get(command_id)

    def remember(self, reply: Reply) -> None:
        self._replies[reply.id] = reply
        while len(self._replies) > self.limit:
            self._replies.popitem(last=False)

    def __len__(self) -> int:
        return len(self._replies)

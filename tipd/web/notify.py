"""Webhook notifications: a plain JSON POST (``{"text": ...}``) that Slack, Mattermost and
Zulip (its Slack-compatible integration) incoming webhooks accept, when

* a microscope **needs an operator** (too many actions without a good frame),
* tipd is **blind** on a microscope (``blind_after`` unfamiliar frames in a row),
* the **stop file** is present (nothing is sent), or
* the **controller stops answering** (a command failed for want of a reply).

Each is said once when it begins, and again only after it has ended and begun anew (a silent
controller: at most once per ``repeat_s``).
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Alerts:
    """Which conditions are on now, so each is said once (see the module docstring)."""

    repeat_s: float = 600.0
    needs_operator: set[str] = field(default_factory=set)
    blind: set[str] = field(default_factory=set)
    stopped: bool = False
    silent: dict[str, float] = field(default_factory=dict)  #: microscope → when last said

    def on_event(self, kind: str, body: dict[str, Any]) -> list[str]:
        """The messages one event (``kind``, ``body``: its JSON fields) calls for."""
        out: list[str] = []
        if kind == "health":
            waiting = set(body.get("needs_operator", []))
            for mic in sorted(waiting - self.needs_operator):
                out.append(
                    f"tipd: {mic} needs an operator. Its tip got no better after the last "
                    f"pulses and crashes; nothing more is sent until `tipd reset {mic}`."
                )
            blind = dict(body.get("blind", {}))
            for mic in sorted(set(blind) - self.blind):
                out.append(
                    f"tipd is blind on {mic}: {blind[mic]} frames in a row unlike anything "
                    "its model was trained on. It does nothing to the tip there."
                )
            stopped = bool(body.get("stopped"))
            if stopped and not self.stopped:
                out.append("tipd: the stop file is present; nothing is sent to any microscope.")
            if body.get("microscope") == "*":  # the periodic health event says it all
                self.needs_operator, self.blind, self.stopped = waiting, set(blind), stopped
            else:
                self.needs_operator |= waiting
                self.blind |= set(blind)
        elif kind == "action":
            reply = body.get("reply") or {}
            mic = str(body.get("microscope"))
            if reply.get("status") == "failed" and "no reply" in str(reply.get("detail")):
                t = float(reply.get("t_done", 0.0))
                if t - self.silent.get(mic, -1e18) >= self.repeat_s:
                    self.silent[mic] = t
                    out.append(
                        f"tipd: the controller of {mic} does not answer ({reply['detail']})."
                    )
        return out


def post(url: str, text: str, timeout_s: float = 5.0) -> None:
    """POST ``{"text": text}`` as JSON to ``url``; raises :class:`OSError` (and
    :class:`urllib.error.URLError`) when it does not go through."""
    request = urllib.request.Request(
        url,
        data=json.dumps({"text": text}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as reply:
        reply.read()

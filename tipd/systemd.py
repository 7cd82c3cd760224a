"""systemd's notify protocol (``Type=notify``): READY, STATUS, WATCHDOG, STOPPING."""

from __future__ import annotations

import os
import socket


def sd_notify(message: str) -> None:
    """Tell systemd ``message`` (e.g. ``READY=1``) on ``$NOTIFY_SOCKET``; a no-op outside
    systemd."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.connect(path)
            s.send(message.encode())
        except OSError:
            pass

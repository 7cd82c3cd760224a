"""Binding endpoints, and saying who holds a port that is taken.

ZeroMQ says only "Address already in use". :func:`bind` says which of tipd's endpoints it was
and, on Linux, which process holds the port (from ``/proc/net/tcp*`` and the processes'
open sockets), so a second ``tipd run`` or a stale demo can be found and stopped.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import Any

import zmq

_TCP = re.compile(r"^tcp://(?P<host>\[[^\]]*\]|[^:]+):(?P<port>\d+)$")
#: the state column of a listening socket in /proc/net/tcp
_LISTEN = "0A"


class BindError(OSError):
    """An endpoint could not be bound; the text names it and, where known, who holds it."""


def bind(sock: zmq.Socket[Any], endpoint: str, name: str) -> None:
    """``sock.bind(endpoint)``; a :class:`BindError` naming ``name``, the endpoint and the
    process holding the port when it is taken."""
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        holder = port_holder(endpoint)
        by = f" by {holder}" if holder else ""
        raise BindError(
            f"the {name} endpoint {endpoint} is in use{by}; stop it, or give tipd another "
            f"endpoint (TIPD_ENDPOINTS__{name.upper()}=…)"
        ) from None


def port_holder(endpoint: str, proc: Path = Path("/proc")) -> str | None:
    """``pid N (command line)`` of the process listening on ``endpoint``'s TCP port, or None
    (not TCP, not Linux, or the process is not ours to see)."""
    match = _TCP.match(endpoint)
    if match is None:
        return None
    port = int(match.group("port"))
    inodes = listening_inodes(port, proc)
    if not inodes:
        return None
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            fds = list((pid_dir / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return f"pid {pid_dir.name} ({_command_line(pid_dir)})"
    return None


def listening_inodes(port: int, proc: Path = Path("/proc")) -> set[str]:
    """Socket inodes listening on TCP ``port`` (IPv4 and IPv6), from ``/proc/net/tcp*``."""
    out = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                out.add(fields[9])
    return out


def _command_line(pid_dir: Path) -> str:
    try:
        raw = (pid_dir / "cmdline").read_bytes()
    except OSError:
        return "?"
    words = [w.decode(errors="replace") for w in raw.split(b"\0") if w]
    text = " ".join(Path(words[0]).name if i == 0 else w for i, w in enumerate(words))
    return " ".join(text.split())[:200]

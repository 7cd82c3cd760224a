"""A taken endpoint is named with the process that holds it."""

from __future__ import annotations

import os
import socket

import pytest
import zmq

from tests.conftest import free_port
from tipd.ports import BindError, bind, port_holder


def test_a_taken_port_names_its_holder() -> None:
    port = free_port()
    with socket.socket() as held:
        held.bind(("127.0.0.1", port))
        held.listen()
        holder = port_holder(f"tcp://127.0.0.1:{port}")
        assert holder is not None and holder.startswith(f"pid {os.getpid()} (")
        sock = zmq.Context.instance().socket(zmq.SUB)
        try:
            with pytest.raises(
                BindError,
                match=rf"frames endpoint tcp://127.0.0.1:{port} is in use by pid {os.getpid()}",
            ):
                bind(sock, f"tcp://127.0.0.1:{port}", "frames")
        finally:
            sock.close(0)
    assert port_holder(f"tcp://127.0.0.1:{port}") is None  # let go: nobody holds it
    assert port_holder("ipc:///tmp/x") is None  # not TCP: nothing to say

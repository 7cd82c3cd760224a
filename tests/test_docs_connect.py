"""The examples in docs/connect.md work as written: a frame published by the first reaches a
real frame socket whole, and the controller sketch answers a real command once per id."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import zmq

from tests.conftest import ROOT, free_port
from tipd.protocol import Command, PulseParams, Reply

BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "connect.md").read_text(), re.S)


def test_the_frame_example_publishes_a_frame_tipd_accepts(tipd_exe: list[str]) -> None:
    port = free_port()
    watch = subprocess.Popen(
        [*tipd_exe, "watch", "--frames", f"tcp://127.0.0.1:{port}", "--n", "1", "--timeout", "60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)  # the watcher binds first, as tipd does
    code = BLOCKS[0].replace("5550", str(port))
    code += "\ntime.sleep(1)\n"  # let the frame leave before the socket closes
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    out, _ = watch.communicate(timeout=90)
    assert watch.returncode == 0 and "\n1 frames, " in out, out
    assert "0 rejected messages" in out


def test_the_controller_example_answers_each_id_once() -> None:
    port = free_port()
    code = "import json, time\nimport zmq\n" + BLOCKS[1].replace("5551", str(port))
    controller = subprocess.Popen([sys.executable, "-c", code])
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    try:
        dealer.connect(f"tcp://127.0.0.1:{port}")
        command = Command(
            microscope="stm1", action="pulse", params=PulseParams(bias_V=2.5, width_s=0.1)
        )
        replies = []
        for _ in range(2):  # the same id twice: the same reply
            dealer.send(command.model_dump_json().encode())
            assert dealer.poll(30_000), "no reply"
            replies.append(Reply.model_validate(json.loads(dealer.recv())))
        assert replies[0] == replies[1]
        assert replies[0].id == command.id and replies[0].status == "done"
    finally:
        dealer.close()
        controller.kill()
        controller.wait()

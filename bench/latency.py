"""Daemon latency, throughput and streaming detection, over real sockets.

    .venv/bin/python bench/latency.py [--model au111] [--seconds 60]

1. Latency: 512×512 frames published one at a time (10 per second) → the ``state`` event for
   each received; p50 / p99 in ms. Targets: p50 ≤ 10 ms, p99 ≤ 25 ms on 2 CPU cores.
2. Sustained: 50 frames per second for ``--seconds``; frames answered, and the daemon's resident
   memory at the start and end (flat means no growth). The frame archive is on (as by default)
   with a cap of ``--archive-mb``, so a long run reaches it and drops the oldest frames.
3. Streaming: 512-line synthetic frames with a tip change at a known line, sent in 16-line
   chunks; lines from the change to the first window whose state event reports it: a line
   jump at the change line (±2), or the window decided ``tip_change`` (or tip-change confidence
   ≥ 0.5). Target: median ≤ 16 lines.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

from tipd.frames import Frame
from tipd.protocol import decode_event, encode_frame
from tipd.synth import Labelled, generate
from tipd.taxonomy import taxonomy


def port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def tip_change_frames(surface: str, n: int) -> list[Labelled]:
    """``n`` synthetic 512² frames of ``surface`` with a tip change. Where ``tip_change`` is a
    class they are drawn as that class; on H:Si, where it is a separate flag, the first
    frames that have one."""
    if "tip_change" in taxonomy(surface).classes:
        return [
            generate(surface, 6 * k + 2, seed=11, pixels=512, cls="tip_change", mixed=0)
            for k in range(n)
        ]
    frames: list[Labelled] = []
    index = 0
    while len(frames) < n:
        f = generate(surface, index, seed=11, pixels=512, mixed=0)
        if "change_row" in f.params:
            frames.append(f)
        index += 1
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="au111", help="surface model the frames name")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--frames", type=int, default=200, help="frames for the latency part")
    parser.add_argument(
        "--archive-mb",
        type=float,
        default=300.0,
        help="the frame archive's cap (on, as by default; 512² frames are 1 MB each)",
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    ports = [port() for _ in range(3)]
    frames_ep, control_ep, events_ep = (f"tcp://127.0.0.1:{p}" for p in ports)
    (tmp / "tipd.toml").write_text(f"""
journal = "{tmp / "journal.sqlite"}"
advisory = true
window_lines = 64
window_every = 16
[endpoints]
frames = "{frames_ep}"
control = "{control_ep}"
events = "{events_ep}"
operator = "tcp://127.0.0.1:{port()}"
preview = "tcp://127.0.0.1:{port()}"
[archive]
folder = "{tmp / "archive"}"
max_mb = {args.archive_mb}
""")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tipd.cli", "run", "--config", str(tmp / "tipd.toml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(events_ep)
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 100000)
    pub.connect(frames_ep)
    try:
        while True:  # wait for the daemon's first health event
            if sub.poll(200) and sub.recv_multipart()[0] == b"health":
                break
            if proc.poll() is not None:
                sys.exit("tipd run exited; is the model shipped?")
        time.sleep(0.5)
        rng = np.random.default_rng(0)
        z = rng.normal(0, 2e-11, (512, 512)) + generate(args.model, 0, seed=5, pixels=512).heights_m
        base = Frame(data=z, scan_size_nm=(30.0, 30.0), microscope="stm1", surface=args.model)

        def send(fid: str) -> float:
            msg = encode_frame(base.replace(frame_id=fid).header(), z)
            t = time.perf_counter()
            pub.send_multipart(msg)
            return t

        inside: list[float] = []  #: the daemon's own latency_ms: message in, decision out

        def states(until: float) -> dict[str, float]:
            got = {}
            while time.perf_counter() < until:
                if sub.poll(5):
                    parts = sub.recv_multipart()
                    if parts[0].startswith(b"state."):
                        body = json.loads(parts[1])
                        got[body["frame_id"]] = time.perf_counter()
                        inside.append(body["latency_ms"])
            return got

        lat = []
        for k in range(args.frames):
            t = send(f"lat{k}")
            got = states(t + 0.1)
            if f"lat{k}" in got:
                lat.append((got[f"lat{k}"] - t) * 1e3)
        lat_a = np.array(lat)
        print(
            f"latency, 512x512 frames (model {args.model}, {len(lat)}/{args.frames} answered): "
            f"p50 {np.percentile(lat_a, 50):.1f} ms, p99 {np.percentile(lat_a, 99):.1f} ms "
            f"(the daemon's own, message in to decision: p50 {np.percentile(inside, 50):.1f}, "
            f"p99 {np.percentile(inside, 99):.1f} ms)"
        )

        rss0 = rss_mb(proc.pid)
        sent: dict[str, float] = {}
        answered: dict[str, float] = {}
        t0 = time.perf_counter()
        n = int(args.seconds * 50)
        for k in range(n):
            target = t0 + k / 50
            answered.update(states(target))
            sent[f"s{k}"] = send(f"s{k}")
        answered.update(states(time.perf_counter() + 1.0))
        rss1 = rss_mb(proc.pid)
        done = [answered[f] - sent[f] for f in sent if f in answered]
        print(
            f"sustained 50 frames/s for {args.seconds:.0f} s: {len(done)}/{n} answered, "
            f"p50 {np.median(done) * 1e3:.1f} ms, p99 {np.percentile(done, 99) * 1e3:.1f} ms; "
            f"daemon RSS {rss0:.0f} MB -> {rss1:.0f} MB"
        )
        kept = list((tmp / "archive").rglob("*.npy"))
        size = sum(p.stat().st_size for p in kept) / 1e6
        print(f"archive: {len(kept)} frames, {size:.0f} MB kept (cap {args.archive_mb:.0f} MB)")

        delays = []
        for k, f in enumerate(tip_change_frames(args.model, 10)):
            row = int(f.params["change_row"])
            frame = Frame(
                data=f.heights_m.astype(np.float64),
                scan_size_nm=f.scan_size_nm,
                microscope="stm1",
                frame_id=f"tc{k}",
                surface=args.model,
            )
            detected = None
            for first in range(0, 512, 16):
                pub.send_multipart(
                    encode_frame(frame.header(first, 16), frame.data[first : first + 16])
                )
                end = time.perf_counter() + 0.2
                while time.perf_counter() < end and detected is None:
                    if not sub.poll(5):
                        continue
                    parts = sub.recv_multipart()
                    if not parts[0].startswith(b"state."):
                        continue
                    ev = decode_event(parts).model_dump()
                    if ev["frame_id"] != f"tc{k}" or ev["rows_seen"] <= row:
                        continue
                    jump = any(row - 1 <= r <= row + 2 for r in ev["line_jumps"])
                    if (
                        jump
                        or ev["state"] == "tip_change"
                        or ev["voted"].get("tip_change", 0) >= 0.5
                    ):
                        detected = ev["rows_seen"] - row
                if detected is not None:
                    break
            delays.append(detected)
        found = [d for d in delays if d is not None]
        med = f"{np.median(found):.0f}" if found else "n/a"
        print(
            f"streaming: tip changes detected in {len(found)}/{len(delays)} 512-line frames; "
            f"median {med} lines after the change line"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        pub.close()
        sub.close()
    print(f"machine: {os.cpu_count()} CPUs visible; ONNX Runtime CPU provider")


if __name__ == "__main__":
    main()

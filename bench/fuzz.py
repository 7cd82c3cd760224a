"""Hostile messages against a running ``tipd run``: it must stay up, account for every one, and
decide every valid frame sent between them.

    .venv/bin/python bench/fuzz.py [--messages 10000] [--soak 100000]

1. Fuzz: ``--messages`` hostile messages of every kind below, in random order, with a valid
   64 × 64 frame after every 50 (each valid frame waits for its ``state`` event, so none is
   skipped as stale). Then: is the daemon alive, how many errors did it count per kind (its
   health event), how many valid frames did it decide, how many error events and journal rows
   did the flood cost (rate-limited: the rest are counted), the daemon's peak memory.
2. Soak: ``--soak`` more hostile messages as fast as they go, in four rounds, each ended by a
   valid frame that must be decided; resident memory after each round (flat from round to
   round: no growth per message; the peak is bounded by the receive queue, ``queue_messages``
   × the message size).

Kinds: garbage bytes, garbage JSON, wrong part count, wrong payload length, NaN data, infinite
data, zero and huge shapes, NaN metadata, seq 2^63 and 10^30, no ``v``, ``v: true``, numbers
as strings, a one-line chunk of a 4096 × 4096 frame from a new microscope id each time, and
frames from more microscope ids than the daemon serves. The daemon runs with an empty
allow-list (any id) and ``max_microscopes = 16``, so the per-microscope bounds are what holds
memory.
"""

from __future__ import annotations

import argparse
import json
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zmq

from tipd.frames import Frame
from tipd.protocol import encode_frame

GOOD = Frame(
    data=np.random.default_rng(0).normal(0, 1e-10, (64, 64)),
    scan_size_nm=(10.0, 10.0),
    microscope="stm1",
    frame_id="good",
)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _header(**changes: object) -> bytes:
    h = json.loads(encode_frame(GOOD.header(), GOOD.data)[1])
    h.update(changes)
    for k in [k for k, v in changes.items() if v is _DROP]:
        del h[k]
    return json.dumps(h).encode()


_DROP = object()
PAYLOAD = GOOD.data.astype("<f4").tobytes()


def hostile_kinds(rng: np.random.Generator) -> dict[str, Callable[[int], list[bytes]]]:
    """Every kind of hostile message, each a function of a running number."""
    big = Frame(data=np.zeros((1, 4096)), scan_size_nm=(100.0, 100.0), frame_id="big")

    def new_id_chunk(k: int) -> list[bytes]:
        h = json.loads(encode_frame(big.header(), big.data)[1])
        h.update(microscope=f"m{k}", shape=[4096, 4096], pixel_count=[4096, 4096], n_rows=1)
        return [f"lines.m{k}".encode(), json.dumps(h).encode(), bytes(4096 * 4)]

    def many_ids(k: int) -> list[bytes]:
        return [f"frame.x{k % 40}".encode(), _header(microscope=f"x{k % 40}"), PAYLOAD]

    return {
        "garbage bytes": lambda k: [bytes(rng.integers(0, 256, 40, dtype=np.uint8))],
        "garbage JSON": lambda k: [b"frame.stm1", b"{\xff not json", b"\x00"],
        "wrong part count": lambda k: [b"frame.stm1", _header()],
        "payload length": lambda k: [b"frame.stm1", _header(), b"\0" * 100],
        "NaN data": lambda k: encode_frame(GOOD.header(), np.full((64, 64), np.nan)),
        "infinite data": lambda k: encode_frame(GOOD.header(), np.full((64, 64), np.inf)),
        "zero shape": lambda k: [b"frame.stm1", _header(shape=[0, 64], n_rows=0), b""],
        "huge shape": lambda k: [
            b"frame.stm1",
            _header(shape=[100000, 100000], n_rows=100000, pixel_count=[100000, 100000]),
            b"",
        ],
        "NaN metadata": lambda k: [b"frame.stm1", _header(bias_V=float("nan")), PAYLOAD],
        "seq 2^63": lambda k: [b"frame.stm1", _header(seq=2**63), PAYLOAD],
        "seq 10^30": lambda k: [b"frame.stm1", _header(seq=10**30), PAYLOAD],
        "no v": lambda k: [b"frame.stm1", _header(v=_DROP), PAYLOAD],
        "v true": lambda k: [b"frame.stm1", _header(v=True), PAYLOAD],
        "number as string": lambda k: [b"frame.stm1", _header(bias_V="1.5"), PAYLOAD],
        "one line of 4096², new id": new_id_chunk,
        "frames from 40 ids": many_ids,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=10000, help="hostile messages (fuzz)")
    ap.add_argument("--soak", type=int, default=100000, help="hostile messages (soak)")
    ap.add_argument("--every", type=int, default=50, help="a valid frame after this many")
    ap.add_argument("--kinds", nargs="+", help="only these kinds (default: all)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    frames_ep, control_ep, events_ep = (f"tcp://127.0.0.1:{_port()}" for _ in range(3))
    (tmp / "tipd.toml").write_text(f"""
journal = "{tmp / "journal.sqlite"}"
advisory = true
microscopes = []
max_microscopes = 16
health_s = 0.5
[endpoints]
frames = "{frames_ep}"
control = "{control_ep}"
events = "{events_ep}"
operator = "tcp://127.0.0.1:{_port()}"
preview = "tcp://127.0.0.1:{_port()}"
[archive]
folder = "{tmp / "archive"}"
""")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tipd.cli", "run", "--config", str(tmp / "tipd.toml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.connect(events_ep)
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.connect(frames_ep)
    events: Counter[str] = Counter()
    health: dict[str, int] = {}

    def drain(seconds: float, until_state: str | None = None) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if not sub.poll(10):
                continue
            topic, body = sub.recv_multipart()
            kind = topic.split(b".")[0].decode()
            events[kind] += 1
            if kind == "health":
                health.update(json.loads(body)["counters"])
            if until_state and kind == "state" and json.loads(body)["frame_id"] == until_state:
                return True
        return False

    try:
        while not drain(0.2) and not health:
            if proc.poll() is not None:
                sys.exit("tipd run exited at start")
        rng = np.random.default_rng(1)
        kinds = hostile_kinds(rng)
        names = args.kinds or list(kinds)
        sent: Counter[str] = Counter()
        decided = 0
        valid = 0
        rss0 = _rss_mb(proc.pid)
        t0 = time.monotonic()
        for k in range(args.messages):
            name = names[int(rng.integers(len(names)))]
            pub.send_multipart(kinds[name](k))
            sent[name] += 1
            if (k + 1) % args.every == 0:
                fid = f"v{k}"
                pub.send_multipart(encode_frame(GOOD.replace(frame_id=fid).header(), GOOD.data))
                valid += 1
                decided += drain(10.0, until_state=fid)
        fuzz_s = time.monotonic() - t0
        drain(2.0)
        alive = proc.poll() is None
        peak = _peak_mb(proc.pid) if alive else float("nan")
        print(f"fuzz: {args.messages} hostile messages in {fuzz_s:.0f} s, daemon alive: {alive}")
        print("\n| kind | sent |\n|---|---|")
        for name in names:
            print(f"| {name} | {sent[name]} |")
        errors = {k: v for k, v in health.items() if k.startswith("error")}
        print("\n| figure | value |\n|---|---|")
        print(f"| valid frames decided | {decided} of {valid} |")
        print(f"| errors counted (health) | {health.get('errors', 0)} |")
        print(
            f"| of which reported in full / held back | "
            f"{health.get('errors', 0) - health.get('errors_held_back', 0)} / "
            f"{health.get('errors_held_back', 0)} |"
        )
        print(f"| error events received | {events['error']} |")
        print(f"| counters by kind | {json.dumps(errors)} |")
        db = sqlite3.connect(f"file:{tmp / 'journal.sqlite'}?mode=ro", uri=True)
        rows = db.execute("SELECT COUNT(*) FROM frames WHERE status = 'rejected'").fetchone()[0]
        db.close()
        print(f"| journal rows for rejected messages | {rows} |")
        print(
            f"| daemon RSS before / after / peak | {rss0:.0f} / {_rss_mb(proc.pid):.0f} / "
            f"{peak:.0f} MB |"
        )
        if args.soak and alive:
            # in four rounds, each followed by a valid frame that must be decided (the backlog
            # is gone): resident memory after each round. Flat from round to round means no
            # growth per message; the first round also fills the receive queue once.
            rounds = []
            t1 = time.monotonic()
            # frames from served ids are real work, not hostile: the soak leaves them out
            names = [n for n in names if n != "frames from 40 ids"] or names
            for r in range(4):
                for k in range(args.soak // 4):
                    name = names[int(rng.integers(len(names)))]
                    pub.send_multipart(kinds[name](args.messages + r * args.soak + k))
                    if k % 1000 == 0:
                        drain(0.0)
                fid = f"soak{r}"
                pub.send_multipart(encode_frame(GOOD.replace(frame_id=fid).header(), GOOD.data))
                ok = drain(120.0, until_state=fid)
                rounds.append(f"{_rss_mb(proc.pid):.0f}" + ("" if ok else " (frame not decided)"))
            print(
                f"\nsoak: {args.soak} hostile messages in {time.monotonic() - t1:.0f} s; RSS "
                f"{rss0:.0f} MB at start, after each quarter {' / '.join(rounds)} MB, peak "
                f"{_peak_mb(proc.pid):.0f} MB; alive: {proc.poll() is None}"
            )
    finally:
        proc.terminate()
        proc.wait(20)
        pub.close()
        sub.close()


if __name__ == "__main__":
    main()

"""Kill -9 the daemon and the virtual microscope mid-stream, again and again: does any limit of
the safety gate break across the restarts, and is any command executed twice?

    .venv/bin/python bench/kills.py [--kills 20] [--sim-kills 3]

``tipd run --live`` (Au(111) model) against ``tipd sim`` (a double tip that degrades and
changes by itself about once a 500 lines), with
tight limits so they matter: a 20 nm forbidden radius, at most 6 pulses or crashes without a
good frame, 20 an hour, 1 s cooldown, and one surely bad frame is enough to act. The daemon
is killed with SIGKILL ``--kills`` times at random moments (3–8 s after its start, of which
~3 s loading models) and started again on the same journal; the sim is
killed ``--sim-kills`` times among them and started again on the same truth log and executed
file. Then, from the sim's truth log (what was really executed) and the journal:

* ids executed more than once;
* pulses or crashes executed within the forbidden radius of an earlier one (positions from
  the truth log);
* more than the hourly budget in any hour;
* more pulses or crashes in a row than ``max_fruitless`` without a good frame decided between
  them (good: the model's desirable state, from the journal), unless an operator reset.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LIMITS = {"forbidden_radius_nm": 20.0, "max_fruitless": 6, "max_actions_per_hour": 20}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20, help="SIGKILLs of the daemon")
    ap.add_argument("--sim-kills", type=int, default=3, help="SIGKILLs of the sim among them")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    tmp = Path(tempfile.mkdtemp())
    frames, control, events, operator = (f"tcp://127.0.0.1:{_port()}" for _ in range(4))
    (tmp / "tipd.toml").write_text(f"""
journal = "{tmp / "journal.sqlite"}"
advisory = false
microscopes = ["stm1"]
[archive]
folder = "{tmp / "archive"}"
[endpoints]
frames = "{frames}"
control = "{control}"
events = "{events}"
operator = "{operator}"
preview = "tcp://127.0.0.1:{_port()}"
[safety]
forbidden_radius_nm = {LIMITS["forbidden_radius_nm"]}
max_fruitless = {LIMITS["max_fruitless"]}
max_actions_per_hour = {LIMITS["max_actions_per_hour"]}
cooldown_s = 1.0
[policy]
consecutive = 1
[controller]
timeout_s = 1.0
retries = 3
""")
    truth = tmp / "truth.jsonl"
    daemon_cmd = [sys.executable, "-m", "tipd.cli", "run", "--config", str(tmp / "tipd.toml")]
    sim_cmd = [
        sys.executable, "-m", "tipd.cli", "sim", "--surface", "au111", "--pixels", "96",
        "--line-time", "0.003", "--chunk-lines", "16", "--start-tip", "double",
        "--frames", frames, "--control", control, "--truth", str(truth),
        "--action-time-scale", "0.2", "--change-per-line", "0.002",
    ]  # fmt: skip
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    daemon = subprocess.Popen(daemon_cmd, **quiet)  # type: ignore[call-overload]
    time.sleep(3.0)
    sim = subprocess.Popen(sim_cmd, **quiet)  # type: ignore[call-overload]
    sim_kills_at = set(rng.choice(args.kills, size=min(args.sim_kills, args.kills), replace=False))
    t0 = time.monotonic()
    try:
        for k in range(args.kills):
            time.sleep(float(rng.uniform(3.0, 8.0)))
            daemon.send_signal(signal.SIGKILL)
            daemon.wait()
            if k in sim_kills_at:
                sim.send_signal(signal.SIGKILL)
                sim.wait()
                sim = subprocess.Popen(sim_cmd, **quiet)  # type: ignore[call-overload]
            daemon = subprocess.Popen(daemon_cmd, **quiet)  # type: ignore[call-overload]
        time.sleep(6.0)
    finally:
        for p in (daemon, sim):
            p.send_signal(signal.SIGTERM)
            p.wait(20)
    seconds = time.monotonic() - t0
    executed = [
        r for r in map(json.loads, truth.read_text().splitlines()) if r["record"] == "command"
    ]
    ids = [r["id"] for r in executed]
    twice = len(ids) - len(set(ids))
    done = [r for r in executed if r["status"] == "done"]
    conditioning = [r for r in done if r["action"] in ("pulse", "crash")]
    radius = 0
    for i, r in enumerate(conditioning):
        for earlier in conditioning[:i]:
            d = math.dist(r["position_nm"], earlier["position_nm"])
            if d < LIMITS["forbidden_radius_nm"]:
                radius += 1
                break
    times = sorted(r["t"] for r in conditioning)
    budget = sum(
        1
        for i in range(len(times))
        if sum(1 for t in times[: i + 1] if times[i] - t < 3600) > LIMITS["max_actions_per_hour"]
    )
    db = sqlite3.connect(f"file:{tmp / 'journal.sqlite'}?mode=ro", uri=True)
    good = [
        t
        for (t,) in db.execute(
            "SELECT t FROM frames WHERE kind = 'frame' AND state = 'individual_atoms'"
        )
    ]
    db.close()
    run, longest = 0, 0
    events_ = sorted([(t, "good") for t in good] + [(t, "act") for t in times])
    for _, what in events_:
        run = 0 if what == "good" else run + 1
        longest = max(longest, run)
    print(
        f"{args.kills} SIGKILLs of the daemon and {len(sim_kills_at)} of the sim in "
        f"{seconds:.0f} s; limits {json.dumps(LIMITS)}\n"
    )
    print("| figure | value |\n|---|---|")
    done_n = f"{len(executed)} ({len(conditioning)} pulses/crashes done)"
    print(f"| commands executed (sim truth) | {done_n} |")
    print(f"| ids executed twice | {twice} |")
    print(f"| pulses/crashes within the forbidden radius of an earlier one | {radius} |")
    print(f"| times the hourly budget was exceeded | {budget} |")
    print(
        f"| longest run of pulses/crashes without a good frame | {longest} "
        f"(limit {LIMITS['max_fruitless']}) |"
    )


if __name__ == "__main__":
    main()

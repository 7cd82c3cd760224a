"""The story of a demo run in words: the virtual tip over time, what tipd decided and did,
and how long it took to a good tip.

    python scripts/demo_summary.py TRUTH.jsonl START_UNIX_TIME [JOURNAL]

TRUTH is the virtual microscope's truth log; JOURNAL defaults to tipd's (the settings').
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from itertools import groupby
from pathlib import Path

from tipd.config import load
from tipd.journal import query, states

truth_path, start = Path(sys.argv[1]), float(sys.argv[2])
journal = Path(sys.argv[3]) if len(sys.argv) > 3 else load().journal
if not journal.is_file():
    sys.exit(f"no journal at {journal}: did tipd start? see demo-out/tipd.log")
truth = [json.loads(x) for x in truth_path.read_text().splitlines()] if truth_path.exists() else []
frames = [t for t in truth if t["record"] == "frame" and t["complete"]]
decided = {
    r["frame_id"]: r
    for r in query(journal, "frames", last=1_000_000, since=start)
    if r["kind"] == "frame" and r["status"] == "classified"
}
commands = query(journal, "commands", last=1_000_000, since=start)
minutes = ((frames[-1]["t"] - start) / 60) if frames else 0.0

print(f"The virtual microscope scanned {len(frames)} frames in {minutes:.1f} min.")
runs = [f"{kind} ×{len(list(g))}" for kind, g in groupby(t["kind"] for t in frames)]
print(f"Its tip, frame by frame: {' → '.join(runs) or 'no frames'}.")

good_states = set(states("good"))
said = Counter(r["state"] for r in decided.values())
print(
    f"tipd decided {len(decided)} whole frames: "
    + ", ".join(f"{state} {n}" for state, n in said.most_common())
    + "."
)
pairs = [
    (t["good"], decided[t["frame_id"]]["state"] in good_states)
    for t in frames
    if t["frame_id"] in decided
]
agree = sum(a == b for a, b in pairs)
print(f"Good tip or not, tipd agreed with the microscope's truth on {agree} of {len(pairs)}.")

done = Counter(c["action"] for c in commands if c["status"] == "done")
other = Counter(f"{c['action']} {c['status']}" for c in commands if c["status"] != "done")
acts = ", ".join(f"{n} {a}{'es' if a == 'crash' else 's'}" for a, n in done.items()) or "none"
print(f"Actions carried out: {acts}" + (f"; also {dict(other)}" if other else "") + ".")

first_good = next((t for t in frames if t["good"]), None)
if first_good is None:
    print("The tip was not good in any frame of this run; run the demo longer.")
elif first_good is frames[0]:
    print("The tip was good from the first frame.")
else:
    n = sum(1 for t in frames if t["good"] and t["t"] >= first_good["t"])
    print(
        f"First good tip: frame {first_good['seq']}, {(first_good['t'] - start) / 60:.1f} min "
        f"after the start; good in {n} of the {len(frames) - frames.index(first_good)} frames "
        "from then on."
    )

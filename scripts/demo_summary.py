"""Summary of a demo run: what the daemon decided and did, and what the microscope's tip was."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from tipd.journal import query

out = Path(sys.argv[1])
journal = out / "journal.sqlite"
if not journal.is_file():
    sys.exit("no journal: did tipd start? see demo-out/tipd.log")
frames = query(journal, "frames", last=100000)
commands = query(journal, "commands", last=100000)
truth_path = out / "sim-truth.jsonl"
truth = [json.loads(x) for x in truth_path.read_text().splitlines()] if truth_path.exists() else []
print(f"decisions: {len(frames)} ({Counter(f['kind'] for f in frames)})")
print(f"states decided: {dict(Counter(f['state'] for f in frames if f['state']))}")
print(f"commands: {dict(Counter((c['action'], c['status']) for c in commands))}")
tips = [t["kind"] for t in truth if t["record"] == "frame"]
print(f"true tip per frame (virtual microscope): {tips}")

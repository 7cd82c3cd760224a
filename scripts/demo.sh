#!/usr/bin/env bash
# make demo: the virtual microscope on the default endpoints, watched as the daemon would watch
# it; writes a contact sheet of what it scanned to demo-out/.
set -euo pipefail
out=${DEMO_OUT:-demo-out}
frames=${DEMO_FRAMES:-6}
mkdir -p "$out"
.venv/bin/tipd sim --truth "$out/sim-truth.jsonl" &
sim=$!
trap 'kill "$sim" 2>/dev/null || true; wait "$sim" 2>/dev/null || true' EXIT
echo "virtual microscope running (pid $sim); watching $frames frames of 256 lines (~5 s each)"
.venv/bin/tipd watch --n "$frames" --sheet "$out/contact-sheet.png"
echo "truth of each frame (never seen by a subscriber): $out/sim-truth.jsonl"

#!/usr/bin/env bash
# make demo: the virtual microscope and the tipd daemon on the default endpoints, with the
# daemon's state and action events shown live, until Ctrl-C (or DEMO_SECONDS); then a summary
# from the journal and the microscope's truth log. Everything lands in demo-out/.
set -euo pipefail
out=${DEMO_OUT:-demo-out}
surface=${DEMO_SURFACE:-au111}
mkdir -p "$out"
rm -f "$out/journal.sqlite"* "$out/sim-truth.jsonl" "$out/sim-truth.executed.jsonl"
tipd=.venv/bin/tipd
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  echo
  echo "== summary (journal $out/journal.sqlite, truth $out/sim-truth.jsonl) =="
  .venv/bin/python scripts/demo_summary.py "$out"
}
trap cleanup EXIT
trap 'exit 0' INT TERM
# live: the virtual microscope is the one instrument tipd may command without a trial run
$tipd run --live --journal "$out/journal.sqlite" > "$out/tipd.log" 2>&1 &
pids+=($!)
sleep 2
$tipd sim --surface "$surface" --start-tip double --line-time "${DEMO_LINE_TIME:-0.01}" \
  --truth "$out/sim-truth.jsonl" > "$out/sim.log" 2>&1 &
pids+=($!)
echo "virtual microscope ($surface, starting with a double tip) and tipd running; Ctrl-C to stop"
if [ -n "${DEMO_SECONDS:-}" ]; then
  $tipd events --topic state. --topic action. --seconds "$DEMO_SECONDS"
else
  $tipd events --topic state. --topic action.
fi

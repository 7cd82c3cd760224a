#!/usr/bin/env bash
# make demo: the virtual microscope and the tipd daemon on the default endpoints, with tipd's
# decisions on whole frames and its actions shown live (and in a browser, through tipd web),
# until Ctrl-C (or DEMO_SECONDS); then the run's story in words. Each run is a fresh virtual
# sample, so it gets a fresh state folder (journal, archive, labels) in demo-out/state/: the
# safety gate's spots and budgets of an earlier run belong to another sample. The logs and the
# microscope's truth log land in demo-out/ too.
set -euo pipefail
out=${DEMO_OUT:-demo-out}
surface=${DEMO_SURFACE:-au111}
mkdir -p "$out"
rm -f "$out/sim-truth.jsonl" "$out/sim-truth.executed.jsonl"
state=$PWD/$out/state
rm -rf "$state"
mkdir -p "$state"
export TIPD_JOURNAL=$state/journal.sqlite TIPD_ARCHIVE__FOLDER=$state/archive
export TIPD_WEB__LABELS=$state/labels
bin=$PWD/.venv/bin
tipd=$bin/tipd
start=$(date +%s.%N)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  echo
  echo "== what happened =="
  "$bin/python" scripts/demo_summary.py "$out/sim-truth.jsonl" "$start" || true
  echo
  echo "tipd is in $bin. To use it:  source .venv/bin/activate  (or: export PATH=\"$bin:\$PATH\")"
  echo "this run's journal:  tipd journal --journal $TIPD_JOURNAL --last 20   (--commands)"
}
trap cleanup EXIT
trap 'exit 0' INT TERM
# live: the virtual microscope is the one instrument tipd may command without a trial run
$tipd run --live > "$out/tipd.log" 2>&1 &
daemon=$!
pids+=("$daemon")
# serving once its log says so; if it exits first, its own error ends the demo
until grep -q "tipd running" "$out/tipd.log"; do
  if ! kill -0 "$daemon" 2>/dev/null; then
    wait "$daemon" || true
    trap - EXIT
    echo "tipd run could not start (demo-out/tipd.log):" >&2
    grep -E "cannot start|error" "$out/tipd.log" | tail -3 >&2 || tail -3 "$out/tipd.log" >&2
    exit 2
  fi
  sleep 0.5
done
$tipd sim --surface "$surface" --start-tip double --line-time "${DEMO_LINE_TIME:-0.01}" \
  --truth "$out/sim-truth.jsonl" > "$out/sim.log" 2>&1 &
pids+=($!)
web=127.0.0.1:${DEMO_WEB_PORT:-8080}
$tipd web --listen "$web" --model "$surface" > "$out/web.log" 2>&1 &
pids+=($!)
echo "virtual microscope ($surface, starting with a double tip) and tipd (live) running;" \
  "Ctrl-C to stop"
echo "watch it in a browser: http://$web/ (tipd web; labelling at /label)"
echo "each line: a whole frame tipd classified, or an action it took on the tip"
if [ -n "${DEMO_SECONDS:-}" ]; then
  $tipd events --topic state. --topic action. --frames-only --seconds "$DEMO_SECONDS"
else
  $tipd events --topic state. --topic action. --frames-only
fi

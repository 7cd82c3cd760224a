#!/usr/bin/env bash
# make demo: the virtual microscope and the tipd daemon on the default endpoints, with tipd's
# decisions on whole frames and its actions shown live (and in a browser, through tipd web),
# until Ctrl-C (or DEMO_SECONDS); then the run's story in words. tipd journals to its usual place (`tipd journal` finds it); the
# logs and the microscope's truth log land in demo-out/.
set -euo pipefail
out=${DEMO_OUT:-demo-out}
surface=${DEMO_SURFACE:-au111}
mkdir -p "$out"
rm -f "$out/sim-truth.jsonl" "$out/sim-truth.executed.jsonl"
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
  echo "then e.g.  tipd journal --last 20   tipd journal --commands   tipd classify FILE.sxm"
}
trap cleanup EXIT
trap 'exit 0' INT TERM
# live: the virtual microscope is the one instrument tipd may command without a trial run
$tipd run --live > "$out/tipd.log" 2>&1 &
pids+=($!)
sleep 2
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

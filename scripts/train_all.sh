#!/usr/bin/env bash
# Train all four shipped surfaces at once, one `tipd train` process each, into models/ and
# reports/ (or $TRAIN_OUT/models and $TRAIN_OUT/reports). Extra arguments go to every run. On a
# GPU machine `tipd train`'s defaults are the GPU budget the shipped models record
# (tipd.train.pipeline.default_budget), so on one with 16 cores:
#
#   scripts/train_all.sh --workers 4      # 7 minutes for all four on one NVIDIA H200
#
# Where --member-seconds is given, H:Si gets HSI_FRACTION (default 0.64, as 160 s against 250 s
# on the CPU) of it: it trains four full candidates and the tip-change net.
# Logs: <out>/train-<surface>.log. Exits non-zero when any run fails (the others finish).
set -uo pipefail
py=${PYTHON:-.venv/bin/python}
out=${TRAIN_OUT:-.}
mkdir -p "$out/models" "$out/reports"
args=("$@")
hsi_args=("$@")
for i in "${!args[@]}"; do
  if [ "${args[$i]}" = "--member-seconds" ]; then
    hsi_args[$((i + 1))]=$(awk -v s="${args[$((i + 1))]}" -v f="${HSI_FRACTION:-0.64}" \
      'BEGIN { printf "%.0f", s * f }')
  fi
done
declare -A pid
for s in au111 cu111 generic hsi100; do
  a=("${args[@]}")
  [ "$s" = hsi100 ] && a=("${hsi_args[@]}")
  "$py" -m tipd.cli train --surface "$s" --out "$out/models/$s" --reports "$out/reports" \
    "${a[@]}" >"$out/train-$s.log" 2>&1 &
  pid[$s]=$!
done
status=0
for s in "${!pid[@]}"; do
  if wait "${pid[$s]}"; then
    echo "$s: $(tail -1 "$out/train-$s.log")"
  else
    echo "$s failed; last lines of $out/train-$s.log:" >&2
    tail -20 "$out/train-$s.log" >&2
    status=1
  fi
done
exit $status

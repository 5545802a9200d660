#!/bin/bash
# The whole engine (replayed streams, the packaged model) under several settings, back to back in one run on
# this checkout: for each stream count, each setting in turn. A setting is one argument holding
# space-separated overrides ("-" = the defaults).
# Usage: bench/engine_settings.sh "STREAMS..." SETTING...
#   e.g. bench/engine_settings.sh "500 600" - "stream.dsp_thread=false" "stream.gil_switch_ms=0.5"
# Results: bench/results/engine_pipeline/set_<setting>_N[_$SUFFIX].json (SUFFIX from the environment; the setting's characters other than letters,
# digits, '.', '=' and '-' replaced by '_'); `python bench/engine_table.py FILES...` makes the table.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/bench/results/engine_pipeline"
COUNTS=$1; shift
mkdir -p "$OUT"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for n in $COUNTS; do
  for setting in "$@"; do
    sets=()
    if [ "$setting" != "-" ]; then
      for kv in $setting; do sets+=(--set "$kv"); done
    fi
    tag=$(printf '%s' "$setting" | tr -c 'A-Za-z0-9.=-' '_'); [ "$setting" = "-" ] && tag=defaults
    echo "== $n streams, $setting (load $(cut -d' ' -f1 /proc/loadavg))"
    "$ROOT/.venv/bin/pedstream" bench engine "${sets[@]}" --source replay --streams "$n" --seconds 20 \
      --json "$OUT/set_${tag}_$n${SUFFIX:+_$SUFFIX}.json"
  done
done

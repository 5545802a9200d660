#!/bin/bash
# A/B of the MQTT path's CPU cost (publisher, mosquitto, the engine's MQTT source; no DSP), interleaved in
# one run: base = a commit from before (default c8be923, unpacked into a temporary folder and run with
# PYTHONPATH), new = this checkout with one message per stream and chunk, bundle = this checkout with
# bundles of 64 KiB. Usage: bench/mqtt_ab.sh [BASE_COMMIT] [STREAMS...]   (default: c8be923 100 300)
# Results: bench/results/mqtt/ab_{base,new,bundle}_N.json; one JSON line per run on stdout.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE=${1:-c8be923}; shift || true
COUNTS=${*:-100 300}
PY="$ROOT/.venv/bin/python"
OUT="$ROOT/bench/results/mqtt"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT" "$TMP/base"
git -C "$ROOT" archive "$BASE" | tar -x -C "$TMP/base"
cp "$ROOT/pedstream/bench/mqttcost.py" "$TMP/base/pedstream/bench/"  # the same measurement for both
cd "$TMP"
for n in $COUNTS; do
  PYTHONPATH="$TMP/base" nice -n 5 "$PY" -m pedstream.bench.mqttcost --streams "$n" --seconds 15 \
    --json "$OUT/ab_base_$n.json" 2>"$TMP/base_err.txt" | sed "s/^/base   /"
  echo "base   aiomqtt 'Message queue is full' lines (silent drops before): $(grep -c 'Message queue is full' "$TMP/base_err.txt" || true)"
  PYTHONPATH="$ROOT" nice -n 5 "$PY" -m pedstream.bench.mqttcost --streams "$n" --seconds 15 \
    --json "$OUT/ab_new_$n.json" | sed "s/^/new    /"
  PYTHONPATH="$ROOT" nice -n 5 "$PY" -m pedstream.bench.mqttcost --streams "$n" --seconds 15 \
    --publisher-arg=--bundle-bytes=65536 --json "$OUT/ab_bundle_$n.json" | sed "s/^/bundle /"
done

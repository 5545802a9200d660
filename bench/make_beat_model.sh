#!/usr/bin/env bash
# Rebuild the gradient-boosting beat model models/mitdb-beats/ (model.onnx + manifest.json) from the 22
# MIT-BIH DS1 records (real ECG; features of pedstream.dsp.beat_features at the beats the live engine
# classifies, found by feeding each record through pedstream.Monitor with the current model once and
# cached under ~/.cache/pedstream: the positions do not depend on the model's weights).
# The variant (features, class weights, class-prior shift) is the one chosen by the record-wise CV at the
# engine's beats (bench/results/beat_cv/engine_positions/cv.md); the few-shot settings come from
# bench/beat_adapt.py --out bench/results/beat_cv/engine_positions.
# About 2 minutes on one core (the feature tables are cached under ~/.cache/pedstream).  NOT FOR CLINICAL USE.
#   bash bench/make_beat_model.sh [DATA]     (DATA default: ../shared/data/mitdb)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${1:-../shared/data/mitdb}
OUT=models/mitdb-beats
rm -rf "$OUT.tmp" && mkdir -p "$OUT.tmp"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} nice -n 10 "$PY" -m pedstream.train.beat_export --data "$DATA" \
  --out "$OUT.tmp/model.onnx" --manifest "$OUT.tmp/manifest.json" \
  --cv bench/results/beat_cv/engine_positions/cv.json --adapt-settings bench/results/beat_cv/engine_positions/adapt.json
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
echo "wrote $OUT"

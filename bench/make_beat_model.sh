#!/usr/bin/env bash
# Rebuild the gradient-boosting beat model models/mitdb-beats/ (model.onnx + manifest.json) from the 22
# MIT-BIH DS1 records (real ECG; reference beat positions; features of pedstream.dsp.beat_features).
# The variant (features, class weights, class-prior shift) is the one chosen by the record-wise CV of
# bench/beat_cv.py (bench/results/beat_cv/cv.md); the few-shot settings come from bench/beat_adapt.py.
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

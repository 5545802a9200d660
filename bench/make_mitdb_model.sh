#!/usr/bin/env bash
# Rebuild the shipped AAMI beat classifier models/mitdb-aami/ (run folder + model.onnx + report) from the
# 22 MIT-BIH DS1 records (real ECG; the 4 paced records are excluded by configs/mitdb-aami.toml).
# About 5 minutes on 2 CPU cores.  NOT FOR CLINICAL USE.
#   bash bench/make_mitdb_model.sh [DATA]     (DATA default: ../shared/data/mitdb)
# The recipe (loss included) is configs/mitdb-aami.toml, chosen by record-wise cross-validation inside
# DS1 (bench/results/mitdb_cv/summary.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PED=${PED:-.venv/bin/pedstream}
DATA=${1:-../shared/data/mitdb}
OUT=models/mitdb-aami
CACHE=${CACHE:-build/mitdb-cache}
rm -rf "$OUT.tmp"
$PED train --config configs/mitdb-aami.toml --data "$DATA" --out "$OUT.tmp" --protocol all --quiet \
  --set "train.cache_dir=\"$CACHE\""
$PED export --run "$OUT.tmp" --out "$OUT.tmp/model.onnx"
# Scored on its own training records: an optimistic sanity check, NOT a generalisation figure
# (those are the cross-validation figures in the README and in report.md).
$PED eval --run "$OUT.tmp" --data "$DATA" --split all --subject-bootstrap \
  --json "$OUT.tmp/eval_training_records.json" --png "$OUT.tmp/confusion_training_records.png"
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
echo "wrote $OUT"

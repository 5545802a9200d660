#!/usr/bin/env bash
# Rebuild the shipped demo model: pedstream/assets/demo_model.onnx + demo_model_report.{md,json}.
# Trained on SIMULATED Leipzig-format records (29 children's real label sequences, simulated signals).
# NOT FOR CLINICAL USE. About 3 min of synthesis + 2-4 min of training on 2 CPU cores.
#   bash bench/make_demo_model.sh [WORKDIR]      (WORKDIR default: build/demo; reuses WORKDIR/data if present)
set -euo pipefail
cd "$(dirname "$0")/.."
PED=${PED:-.venv/bin/pedstream}
WORK=${1:-build/demo}
REAL=${REAL:-../shared/data/leipzig-annotations}
SETS=(--set train.epochs=20 --set train.steps_per_epoch=40 --set train.patience=6 --set split.val_fraction=0.2
      --set train.max_windows_per_class_subject=40 --set train.warmup_epochs=0.5 --set split.folds=3
      --set train.bootstrap=1000 --set "train.cache_dir=\"$WORK/cache\"" --set 'loss.name="agcacl"')
mkdir -p "$WORK"
if [ ! -f "$WORK/data/RECORDS" ]; then
  $PED data synth --out "$WORK/data" --records 29 --minutes 3 --seed 0 --follow-real "$REAL"
fi
rm -rf "$WORK/run"
$PED train --data "$WORK/data" --out "$WORK/run" --protocol subject --fold 0 --method AGCACL --quiet "${SETS[@]}"
$PED export --run "$WORK/run" --out pedstream/assets/demo_model.onnx
$PED eval --run "$WORK/run" --data "$WORK/data" --split test --subject-bootstrap \
  --json pedstream/assets/demo_model_report.json --png pedstream/assets/demo_model_confusion.png
.venv/bin/python -m pedstream.train.report --eval pedstream/assets/demo_model_report.json --run "$WORK/run" \
  --onnx pedstream/assets/demo_model.onnx --script bench/make_demo_model.sh --out pedstream/assets/demo_model_report.md

#!/usr/bin/env bash
# Rebuild the shipped monitor model: pedstream/assets/monitor_model.onnx + monitor_model_report.{md,json}.
# Trained on simulated Leipzig-format data + MIT-BIH ECG, not for clinical use: 29 simulated Leipzig-format
# records (pedstream data synth, as the demo model) and the rhythm windows of the 26 MIT-BIH records in
# ../shared/data/mitdb (resampled 360 -> 977 Hz), with real nstdb noise mixed into training (configs/monitor.toml).
# ../shared/data/iafdb/iaf1_afw is never trained or tuned on: it is replayed through the finished model at the end.
# Run bench/rhythm_cv.py first (its summary goes into the report). About 3 min of synthesis + 5-15 min of training
# on 2 shared CPU cores.
#   bash bench/make_monitor_model.sh [WORKDIR]      (WORKDIR default: build/monitor; reuses WORKDIR/sim if present)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PED=${PED:-.venv/bin/pedstream}
WORK=${1:-build/monitor}
SHARED=${SHARED:-../shared/data}
mkdir -p "$WORK"
if [ ! -f "$WORK/sim/RECORDS" ]; then
  $PED data synth --out "$WORK/sim" --records 29 --minutes 3 --seed 0 --follow-real "$SHARED/leipzig-annotations"
fi
rm -rf "$WORK/run"
OMP_NUM_THREADS=2 $PY -m pedstream.train.monitor --config configs/monitor.toml --sim "$WORK/sim" --real "$SHARED/mitdb" \
  --noise "$SHARED/nstdb" --out "$WORK/run" --set "train.cache_dir=\"$WORK/cache\""
$PED export --run "$WORK/run" --out pedstream/assets/monitor_model.onnx
for m in monitor_model demo_model; do   # the one real ECG+IEGM check, with the previous model beside it
  $PED run --source replay --records "$SHARED/iafdb/iaf1_afw" --model "pedstream/assets/$m.onnx" --headless \
    --set replay.speed=20 --alarms-dir "$WORK/iaf_strips_$m" > "$WORK/iaf1_afw_$m.jsonl"
done
$PY bench/rhythm_cv.py summary --cache "$WORK/cache"
$PY bench/monitor_report.py --run "$WORK/run" --cv bench/results/rhythm_cv/summary.json --variant monitor \
  --onnx pedstream/assets/monitor_model.onnx --iaf "$WORK/iaf1_afw_monitor_model.jsonl" \
  --iaf-baseline "$WORK/iaf1_afw_demo_model.jsonl" --script bench/make_monitor_model.sh \
  --out pedstream/assets/monitor_model_report

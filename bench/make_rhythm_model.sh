#!/usr/bin/env bash
# Reproduces the shipped rhythm-context model pedstream/assets/rhythm_model.onnx (docs/models/rhythm.md).
# Needs ../shared/data (cinc2017/training2017.tar.xz, mitdb, vfdb, nsrdb-ann, sddb-ann) and the train extra
# (scikit-learn, skl2onnx). On this 2-core machine: features ~6 min (cached in ~/.cache/pedstream),
# cross-validation ~30-60 min (27 model fits), the final fit ~2 min.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
# 1. feature tables + CV + the choice of context length and class weights -> bench/results/rhythm_context/cv.{json,md}
nice -n 10 .venv/bin/python bench/rhythm_context_cv.py
# 2. the shipped model: every row of CinC 2017 + MIT-BIH + vfdb at the chosen setting, exported to ONNX
nice -n 10 .venv/bin/python -m pedstream.train.rhythm_export --out pedstream/assets/rhythm_model.onnx \
    --settings bench/results/rhythm_context/cv.json

#!/bin/bash
# A/B of the whole engine (replayed streams, the packaged model), the two versions back to back in one run:
# base = a commit from before (default 975d5c8), unpacked into a temporary folder and run with PYTHONPATH;
# new = this checkout. For each stream count, base then new (the same idle machine, the same settings).
# Usage: bench/engine_ab.sh [BASE_COMMIT] [STREAMS...]   (default: 975d5c8 200 300 400)
# Results: bench/results/engine_pipeline/ab_{base,new}_N.json; the bench's table on stdout.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE=${1:-975d5c8}; shift || true
COUNTS=${*:-200 300 400}
PY="$ROOT/.venv/bin/python"
OUT="$ROOT/bench/results/engine_pipeline"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT" "$TMP/base"
git -C "$ROOT" archive "$BASE" | tar -x -C "$TMP/base"
CLI='from pedstream.cli import main; main()'
cd "$TMP"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for n in $COUNTS; do
  for v in base new; do
    src="$TMP/base"; [ "$v" = new ] && src="$ROOT"
    echo "== $v, $n streams (load $(cut -d' ' -f1 /proc/loadavg))"
    PYTHONPATH="$src" "$PY" -c "$CLI" bench engine --source replay --streams "$n" --seconds 20 \
      --json "$OUT/ab_${v}_$n.json"
  done
done

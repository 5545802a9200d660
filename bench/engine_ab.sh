#!/bin/bash
# A/B of the whole engine (replayed streams, the packaged model), the two versions back to back in one run:
# base = a commit from before (default 975d5c8), unpacked into a temporary folder and run with PYTHONPATH;
# new = this checkout. For each stream count, base then new (the same idle machine, the same settings).
# Usage: bench/engine_ab.sh [BASE_COMMIT] [STREAMS...]   (default: 975d5c8 200 300 400)
# Environment: NEW_SET="a.b=1 c.d=2" adds those --set overrides to the new version's runs only (a setting
# the base does not have), and TAG=name writes ab_{base,new}_NAME_N.json instead.
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
SETS=()
for kv in ${NEW_SET:-}; do SETS+=(--set "$kv"); done
for n in $COUNTS; do
  for v in base new; do
    src="$TMP/base"; extra=(); [ "$v" = new ] && { src="$ROOT"; extra=("${SETS[@]}"); }
    echo "== $v, $n streams (load $(cut -d' ' -f1 /proc/loadavg)) ${extra[*]}"
    PYTHONPATH="$src" "$PY" -c "$CLI" bench engine "${extra[@]}" --source replay --streams "$n" --seconds 20 \
      --json "$OUT/ab_${v}${TAG:+_$TAG}_$n.json"
  done
done

#!/usr/bin/env bash
# bench/gpu_check.sh: prove pedstream's GPU path (CUDA, TensorRT) on an NVIDIA machine in one call (< 8 min).
#
#   bash bench/gpu_check.sh                  # results in bench/results/gpu/ ($OUT/bench/results/gpu/ when OUT is set)
#
# 1. a fresh venv (python3 -m venv), CPU torch first from its wheel (pip install torch==2.13.0: FLOP count and
#    the PyTorch eager rows; nothing can pull a CUDA torch), then pedstream with the gpu extra
#    (onnxruntime-gpu[cuda,cudnn]); tensorrt-cu12 is tried too (TensorRT is optional: without it the tensorrt
#    rows say "unavailable").
#    Offline machine: GPU_CHECK_WHEELS=DIR installs from a wheel folder (pip --no-index --find-links DIR);
#    GPU_CHECK_VENV=DIR reuses a ready venv instead of creating one.
# 2. pedstream bench model --providers cpu,cuda,tensorrt --batches 32,256,1024 -> model.json
# 3. python -m pedstream.bench.parity --providers cpu,cuda,tensorrt (TensorRT in FP16 as [runtime] trt_fp16 says):
#    calls on real windows (tests/fixtures/real) against FP32 on the CPU: max probability difference, call
#    agreement -> parity.json
# 4. pedstream bench engine --providers cuda at 100..1600 streams (--all) -> engine_cuda.json (+ .png)
# 5. everything in one JSON naming the GPU: gpu_check.json (steps that failed say so, with their exit code).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${OUT:-$ROOT}/bench/results/gpu"
mkdir -p "$DEST"
LOG="$DEST/gpu_check.log"
: > "$LOG"
START=$(date +%s)
STEPS="$DEST/steps.tsv"
: > "$STEPS"

say() { printf '[gpu_check %3ss] %s\n' "$(( $(date +%s) - START ))" "$*" | tee -a "$LOG" >&2; }

BUDGET=${GPU_CHECK_BUDGET_S:-470}  # the whole script stays under 8 minutes: each step's limit is cut to what is left

# step NAME SECONDS CMD...: run with a time limit (at most what is left of BUDGET), log output, record the exit code
step() {
    local name=$1 limit=$2
    shift 2
    local left=$(( BUDGET - ($(date +%s) - START) ))
    if (( left < 10 )); then
        say "$name: skipped, the time budget is spent"
        printf '%s\t%s\t%s\n' "$name" "skipped" 0 >> "$STEPS"
        return 124
    fi
    (( limit > left )) && limit=$left
    say "$name: $*"
    local t0 rc
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" >> "$LOG" 2>&1
    rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" >> "$STEPS"
    say "$name: exit $rc"
    return "$rc"
}

if [[ -n "${GPU_CHECK_VENV:-}" ]]; then
    VENV="$GPU_CHECK_VENV"
else
    VENV="$(mktemp -d)/venv"
    step venv 60 python3 -m venv "$VENV" || exit 1
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install -q)
if [[ -n "${GPU_CHECK_WHEELS:-}" ]]; then
    PIP+=(--no-index --find-links "$GPU_CHECK_WHEELS")
fi

if [[ -z "${GPU_CHECK_VENV:-}" ]]; then
    step pip-upgrade 60 "${PIP[@]}" --upgrade pip
    step torch-cpu 120 "${PIP[@]}" torch==2.13.0
    step pedstream-gpu 180 "${PIP[@]}" -e "${ROOT}[gpu]" || { say "cannot install the gpu extra"; }
    step tensorrt 120 "${PIP[@]}" tensorrt-cu12 || say "TensorRT not installed (optional): tensorrt rows will say unavailable"
fi

step gpu-info 30 "$PY" - "$DEST/env.json" <<'PYEOF'
import json, shutil, subprocess, sys
info = {"nvidia_smi": None, "providers": None, "onnxruntime": None}
exe = shutil.which("nvidia-smi")
if exe:
    q = "name,memory.total,driver_version,compute_cap"
    info["nvidia_smi"] = subprocess.run([exe, f"--query-gpu={q}", "--format=csv,noheader"], capture_output=True,
                                        text=True).stdout.strip()
try:
    import onnxruntime as ort
    info["onnxruntime"] = ort.__version__
    info["device"] = ort.get_device()
    info["providers"] = ort.get_available_providers()
except Exception as exc:  # recorded, the later steps say what failed
    info["onnxruntime_error"] = str(exc)
json.dump(info, open(sys.argv[1], "w"), indent=2)
print(json.dumps(info))
PYEOF

PEDSTREAM="$VENV/bin/pedstream"
step model 100 "$PEDSTREAM" bench model --providers cpu,cuda,tensorrt --batches 32,256,1024 --seconds 1 \
    --json "$DEST/model.json"
step parity 60 "$PY" -m pedstream.bench.parity --providers cpu,cuda,tensorrt --n 128 --json "$DEST/parity.json"
step engine-cuda 150 "$PEDSTREAM" bench engine --providers cuda --streams 100,200,400,800,1600 --seconds 8 --all \
    --json "$DEST/engine_cuda.json"

"$PY" - "$DEST" <<'PYEOF'
import json, pathlib, sys
dest = pathlib.Path(sys.argv[1])
def load(name):
    p = dest / name
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        return {"missing": f"{name}: {exc}"}
steps = [dict(zip(("step", "exit", "seconds"), line.split("\t"))) for line in (dest / "steps.tsv").read_text().splitlines()]
env = load("env.json")
out = {"gpu": env.get("nvidia_smi") or "no NVIDIA GPU found (nvidia-smi missing or silent)", "environment": env,
       "steps": steps, "model": load("model.json"), "parity": load("parity.json"), "engine_cuda": load("engine_cuda.json")}
(dest / "gpu_check.json").write_text(json.dumps(out, indent=2) + "\n")
print(f"wrote {dest / 'gpu_check.json'}: GPU {out['gpu']}; steps " + ", ".join(f"{s['step']}={s['exit']}" for s in steps))
PYEOF
say "done in $(( $(date +%s) - START )) s"

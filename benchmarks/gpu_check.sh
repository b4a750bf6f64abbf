#!/usr/bin/env bash
# The prepared CUDA check (issue 15): run as it is from any folder on a machine with one CUDA GPU;
# at most GPU_CHECK_BUDGET seconds (default 480 = 8 minutes), then one table on stdout and
# $OUT/gpu_check.json. See benchmarks/README.md, "GPU check".
#
#   benchmarks/gpu_check.sh                 # OUT defaults to benchmarks/results/gpu-check-<date>
#   OUT=/tmp/gc PYTHON=/opt/venv/bin/python benchmarks/gpu_check.sh
#
# Without CUDA it stops at the preflight with exit 1 and the reason: it never skips its way to a
# green result. Every stage has its own time limit (`timeout`, which signals the stage's whole
# process group, so worker processes end with it); a stage that fails or times out is marked in
# the table and the next stage still runs; the exit status is 1 when any stage did not pass.
set -uo pipefail

# an OUT given relative to the caller's folder stays there after the cd to the repository root
if [ -n "${OUT:-}" ]; then OUT=$(realpath -m -- "$OUT"); fi
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu-check-$(date +%Y%m%d-%H%M%S)}
BUDGET=${GPU_CHECK_BUDGET:-480}
# The quick preset trains 24 epochs; 7 variants of that twice (1 and 4 workers per GPU) do not fit
# the budget beside the other stages, so the ablations train 8 (every fix still acts: stage 2 has
# 4 epochs and the mask unfreezes in its last). ABLATION_EPOCHS=24 gives the preset's own schedule.
ABLATION_EPOCHS=${ABLATION_EPOCHS:-8}
# Seconds per stage. The ablations share what the earlier stages leave of the budget, less RESERVE
# for the summary and for the up to 10 s that `timeout --kill-after` may add to a stage.
T_PREFLIGHT=45 T_TESTS=150 T_MODEL=100 T_COMPILE=80 T_LOADER=40 RESERVE=30
START=$SECONDS

mkdir -p "$OUT/logs"
rm -f "$OUT"/{stages.tsv,preflight.json,cuda_tests.xml,model.json,model_compiled.json,gpu_check.json}
rm -f "$OUT"/logs/*.log
: >"$OUT/stages.tsv"

if [ -z "${PYTHON:-}" ]; then
  if [ ! -x .venv/bin/python ]; then
    make install || { echo "gpu_check: FAILED: make install (no .venv, and it could not be made)" >&2; exit 1; }
  fi
  PYTHON=.venv/bin/python
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# stage NAME LIMIT COMMAND...: COMMAND under `timeout LIMIT`, output in $OUT/logs/NAME.log;
# appends "NAME<TAB>exit status<TAB>seconds<TAB>LIMIT" to stages.tsv (status "-": not run).
stage() {
  local name=$1 limit=$2 t0=$SECONDS rc
  shift 2
  if [ "$limit" -lt 10 ]; then
    printf '%s\t-\t0\t%s\n' "$name" "$limit" >>"$OUT/stages.tsv"
    echo "== $name: not run, the time budget is spent" >&2
    return
  fi
  echo "== $name (at most $limit s)" >&2
  timeout --kill-after=10 "$limit" "$@" >"$OUT/logs/$name.log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" "$limit" >>"$OUT/stages.tsv"
  [ "$rc" -eq 0 ] || echo "   $name: exit $rc, log $OUT/logs/$name.log" >&2
}

left() { echo $((BUDGET - (SECONDS - START) - RESERVE)); }

timeout "$T_PREFLIGHT" "$PYTHON" benchmarks/gpu_check.py preflight "$OUT"
rc=$?
if [ "$rc" -ne 0 ]; then
  echo "gpu_check: FAILED at the CUDA preflight (exit $rc); nothing was measured" >&2
  exit 1
fi

stage cuda_tests "$T_TESTS" "$PYTHON" -m pytest -m cuda -q --junitxml="$OUT/cuda_tests.xml"
MODEL=(--device cuda --batch 8 --layout-size 0 --stability-steps 0 --skip-pipeline)
stage model "$T_MODEL" "$PYTHON" benchmarks/run.py "${MODEL[@]}" --sizes 256 512 \
  --precisions fp32 bf16 fp16 --out "$OUT/model.json"
# one compiled row: compilation takes minutes per configuration (benchmarks/README.md); bf16 is
# what training.precision = auto picks on CUDA
stage model_compiled "$T_COMPILE" "$PYTHON" benchmarks/run.py "${MODEL[@]}" --sizes 256 \
  --precisions bf16 --compile-only --out "$OUT/model_compiled.json"
stage loader "$T_LOADER" "$PYTHON" benchmarks/pipeline_bench.py \
  "{\"kind\": \"feed\", \"device\": \"cuda\", \"workers\": [0, 4], \"threads\": $(nproc)}"

ablate() {  # ablate WORKERS_PER_GPU LIMIT
  stage "ablate_wpg$1" "$2" "$PYTHON" -m remdinet.exp.cli --quiet \
    --tracking-uri "sqlite:///$WORK/mlflow.db" ablate --preset quick --name "gpu-wpg$1" \
    --workers-per-gpu "$1" --storage "sqlite:///$WORK/optuna-wpg$1.db" --no-keep-checkpoints \
    --set "training.num_epochs=$ABLATION_EPOCHS" --set "training.output_dir=$WORK/outputs"
}
# 4 workers per GPU first, with 2/5 of what is left: it trains the 7 variants about 4 at a time
ablate 4 $(($(left) * 2 / 5))
ablate 1 "$(left)"

"$PYTHON" benchmarks/gpu_check.py summary "$OUT" --ablation-epochs "$ABLATION_EPOCHS"

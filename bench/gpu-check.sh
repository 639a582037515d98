#!/usr/bin/env bash
# The CUDA backend on a real GPU, in one bounded run (issue #15): on an NVIDIA machine (H100/H200)
#   1. builds `make BUILD=build-cuda CUDA=1 build-cuda/vlm build-cuda/vlm_cuda_tests` on all cores,
#   2. runs the CUDA test binary build-cuda/vlm_cuda_tests (passed / failed / skipped),
#   3. runs `vlm verify --device cuda` on every golden case of tests/data/golden/{tiny-mha,tiny-mla}
#      (the fp32 reference mode; and `--quant bf16` judged on the greedy ids when verify has --quant),
#   4. writes a random checkpoint of the real Tiny shape (`vlm mkmodel --shape tiny`, ~6.7 GB, in a
#      temporary folder outside $OUT) and times it: `vlm bench --device cuda --quant bf16 --reps 3 --json`,
#      sampling the GPU's memory use with nvidia-smi meanwhile,
#   5. prints one summary line per step and writes every log under $OUT.
# Without a GPU (`nvidia-smi -L` fails or lists none) it still does 1 and 2 (the GPU tests report
# skipped) and says that the GPU steps (verify, bench on cuda) were SKIPPED; it then exits 0 when the
# build and the test binary succeeded. With a GPU it exits non-zero when any step failed.
#
# usage: OUT=dir bench/gpu-check.sh        (OUT defaults to build-cuda/gpu-check-out)
# Environment (all optional):
#   JOBS             make -j (default: all cores)          DEVICE       cuda or cuda:N (default cuda)
#   MODEL_DIR        bench checkpoint folder: reused when it already holds one, kept afterwards
#                    (default: a temporary folder under ${TMPDIR:-/tmp}, removed at the end unless KEEP_MODEL=1)
#   BENCH_SHAPE      mkmodel --shape (default tiny)        BENCH_REPS   (default 3)
#   SKIP_BENCH=1     leave out step 4
#   FORCE_GPU_STEPS=1  run steps 3 and 4 even without a GPU (checks this script; with DEVICE=cuda they
#                    then fall back to the CPU and are reported as failed, use DEVICE=cpu to see passes)
#   Time limits in seconds: BUILD_TIMEOUT (1800), TEST_TIMEOUT (600), VERIFY_TIMEOUT per case (300),
#   MKMODEL_TIMEOUT (900), BENCH_TIMEOUT (1200).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
OUT=${OUT:-$ROOT/build-cuda/gpu-check-out}
mkdir -p "$OUT" || { echo "gpu-check: cannot create OUT=$OUT" >&2; exit 2; }
OUT=$(cd "$OUT" && pwd)
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
DEVICE=${DEVICE:-cuda}
BENCH_SHAPE=${BENCH_SHAPE:-tiny}
BENCH_REPS=${BENCH_REPS:-3}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-1800}
TEST_TIMEOUT=${TEST_TIMEOUT:-600}
VERIFY_TIMEOUT=${VERIFY_TIMEOUT:-300}
MKMODEL_TIMEOUT=${MKMODEL_TIMEOUT:-900}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-1200}
VLM=$ROOT/build-cuda/vlm
TESTS=$ROOT/build-cuda/vlm_cuda_tests
GOLDEN=$ROOT/tests/data/golden
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
T_START=$(date +%s)

log() { echo "gpu-check: $*"; }
# one summary line: step name, then its verdict
say() { printf '%-12s %s\n' "$1" "$2" | tee -a "$SUMMARY"; }
# timeout with a kill after 10 s more; 124/137 mean the limit was reached
bounded() { local t=$1; shift; timeout --kill-after=10 "$t" "$@"; }
rc_note() { case $1 in 124 | 137) echo "timed out after $2 s" ;; *) echo "exit $1" ;; esac; }

failed=0          # with a GPU: any failure
hard_failed=0     # build or test binary failed (counts with or without a GPU)

# ---- environment and GPU detection (first) ----------------------------------------------------
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "host: $(uname -a)"
  echo "git:  $(git -C "$ROOT" rev-parse HEAD 2>/dev/null) $(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l) changed file(s)"
  echo "cpu:  $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //'), $(nproc) cores, make -j$JOBS"
  echo "nvcc: $({ "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" --version 2>/dev/null || nvcc --version 2>/dev/null; } | tail -n 2 | tr '\n' ' ')"
} > "$OUT/env.txt"
have_gpu=0
gpu_desc="none"
if command -v nvidia-smi > /dev/null 2>&1 && bounded 60 nvidia-smi -L > "$OUT/nvidia-smi-L.txt" 2>&1 &&
  grep -q '^GPU ' "$OUT/nvidia-smi-L.txt"; then
  have_gpu=1
  gpu_desc=$(grep -m1 '^GPU ' "$OUT/nvidia-smi-L.txt" | sed 's/ (UUID.*//')
  n_gpus=$(grep -c '^GPU ' "$OUT/nvidia-smi-L.txt")
  [ "$n_gpus" -gt 1 ] && gpu_desc="$gpu_desc (+$((n_gpus - 1)) more)"
  bounded 60 nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
else
  why="nvidia-smi not found"
  command -v nvidia-smi > /dev/null 2>&1 && why="nvidia-smi -L lists no GPU"
  gpu_desc="none ($why)"
fi
cat "$OUT/env.txt"
log "GPU: $gpu_desc"
run_gpu_steps=$have_gpu
[ "${FORCE_GPU_STEPS:-0}" = 1 ] && run_gpu_steps=1

# ---- 1. build ----------------------------------------------------------------------------------
log "1/4 building the CUDA library, CLI and tests (make -j$JOBS BUILD=build-cuda CUDA=1; log: $OUT/build.log)"
t0=$(date +%s)
bounded "$BUILD_TIMEOUT" make -C "$ROOT" -j"$JOBS" BUILD=build-cuda CUDA=1 build-cuda/vlm build-cuda/vlm_cuda_tests \
  > "$OUT/build.log" 2>&1
rc=$?
t_build=$(($(date +%s) - t0))
build_ok=0
if [ $rc -eq 0 ] && [ -x "$VLM" ] && [ -x "$TESTS" ]; then
  build_ok=1
  nvcc_n=$(grep -c 'nvcc' "$OUT/build.log")
  say "build" "ok ($t_build s, $nvcc_n nvcc compile(s) this run)"
else
  grep -E -m 20 'error|Error|undefined reference' "$OUT/build.log" || tail -n 20 "$OUT/build.log"
  say "build" "FAILED ($(rc_note $rc "$BUILD_TIMEOUT"), $t_build s; see build.log)"
  failed=1
  hard_failed=1
fi

# ---- 2. CUDA test binary -----------------------------------------------------------------------
if [ $build_ok = 1 ]; then
  log "2/4 running build-cuda/vlm_cuda_tests (log: $OUT/cuda_tests.log)"
  t0=$(date +%s)
  bounded "$TEST_TIMEOUT" "$TESTS" --gtest_output="xml:$OUT/cuda_tests.xml" > "$OUT/cuda_tests.log" 2>&1
  rc=$?
  t_tests=$(($(date +%s) - t0))
  total=$(sed -n 's/^\[==========\] \([0-9]*\) tests\? from .* ran.*/\1/p' "$OUT/cuda_tests.log" | tail -n 1)
  passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) tests\?\..*/\1/p' "$OUT/cuda_tests.log" | tail -n 1)
  skipped=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) tests\?, listed below.*/\1/p' "$OUT/cuda_tests.log" | tail -n 1)
  nfail=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) tests\?, listed below.*/\1/p' "$OUT/cuda_tests.log" | tail -n 1)
  counts="${passed:-0} passed, ${nfail:-0} failed, ${skipped:-0} skipped of ${total:-?}"
  # on a GPU machine a test skipped for "no CUDA device" means the runtime does not see the GPU
  nodev=$(grep -c 'no CUDA device' "$OUT/cuda_tests.log")
  if [ $rc -ne 0 ] || [ -z "$total" ]; then
    grep '^\[  FAILED  \]' "$OUT/cuda_tests.log" | head -n 20
    say "tests" "FAILED ($(rc_note $rc "$TEST_TIMEOUT"): $counts; $t_tests s; see cuda_tests.log)"
    failed=1
    hard_failed=1
  elif [ $have_gpu = 1 ] && [ "$nodev" -gt 0 ]; then
    say "tests" "FAILED: $counts, but the GPU is not usable from CUDA (skips say 'no CUDA device'; see cuda_tests.log)"
    failed=1
  else
    say "tests" "ok ($counts; $t_tests s)"
  fi
else
  say "tests" "skipped (the build failed)"
fi

# ---- 3. vlm verify on the GPU ------------------------------------------------------------------
fell_back() { grep -q 'CUDA not available' "$1"; }
verify_case() { # mode model case -> 0 pass, 1 fail; appends to verify-summary.txt
  local mode=$1 model=$2 case=$3 logf qflag=() st="FAIL" why=""
  logf=$OUT/verify/$mode-$model-$case.log
  [ "$mode" = bf16 ] && qflag=(--quant bf16)
  bounded "$VERIFY_TIMEOUT" "$VLM" verify --model "$GOLDEN/$model" --input "$GOLDEN/inputs/$case" \
    --golden "$GOLDEN/$model/$case.safetensors" --device "$DEVICE" "${qflag[@]}" > "$logf" 2>&1
  local rc=$?
  local verdict
  verdict=$(grep -m1 '^verify: ' "$logf")
  if [ "$mode" = bf16 ]; then
    # bf16 weights cannot meet the fp32 tolerances: the greedy ids must be the golden ones
    if grep -Eq '^generated_ids +max_abs_diff +0 .* ok' "$logf"; then st="PASS"; else why="greedy ids differ or missing"; fi
  elif [ $rc -eq 0 ] && [ "$verdict" = "verify: PASS" ]; then
    st="PASS"
  fi
  [ $rc -eq 124 ] || [ $rc -eq 137 ] && why="timed out after $VERIFY_TIMEOUT s"
  if [[ $DEVICE == cuda* ]] && fell_back "$logf"; then st="FAIL"; why="ran on the CPU: $(grep -m1 'CUDA not available' "$logf")"; fi
  {
    echo "== $mode $model $case: $st${why:+ ($why)}  [${verdict:-no verdict, exit $rc}]"
    grep -E 'max_abs_diff|FAIL|^routing:' "$logf" | grep -v '^verify: ' | sed 's/^/   /'
  } >> "$OUT/verify-summary.txt"
  echo "   $mode $model $case: $st${why:+ ($why)}"
  [ "$st" = PASS ]
}

models=(tiny-mha tiny-mla)
if [ $build_ok = 1 ] && [ $run_gpu_steps = 1 ]; then
  log "3/4 vlm verify --device $DEVICE on every golden case (logs: $OUT/verify/, per-stage lines: $OUT/verify-summary.txt)"
  mkdir -p "$OUT/verify"
  : > "$OUT/verify-summary.txt"
  modes=(fp32)
  if "$VLM" verify --help 2>&1 | grep -q -- '--quant'; then modes+=(bf16); fi
  t0=$(date +%s)
  for mode in "${modes[@]}"; do
    np=0 nf=0 ns=0
    for cdir in "$GOLDEN"/inputs/*/; do
      case=$(basename "$cdir")
      for model in "${models[@]}"; do
        if [ ! -f "$GOLDEN/$model/$case.safetensors" ]; then
          echo "== $mode $model $case: skipped (no $model/$case.safetensors)" >> "$OUT/verify-summary.txt"
          ns=$((ns + 1))
          continue
        fi
        if verify_case "$mode" "$model" "$case"; then np=$((np + 1)); else nf=$((nf + 1)); fi
      done
    done
    label="verify $mode"
    [ "$mode" = bf16 ] && label="verify bf16"
    if [ $nf -eq 0 ] && [ $np -gt 0 ]; then
      say "$label" "ok ($np PASS, 0 FAIL, $ns without golden)"
    else
      say "$label" "FAILED ($np PASS, $nf FAIL, $ns without golden; see verify-summary.txt)"
      failed=1
    fi
  done
  [ ${#modes[@]} -eq 1 ] && say "verify bf16" "skipped (vlm verify has no --quant option)"
  log "verify took $(($(date +%s) - t0)) s"
elif [ $build_ok = 0 ]; then
  say "verify" "skipped (the build failed)"
else
  say "verify" "SKIPPED: no GPU present, vlm verify --device $DEVICE not run"
fi

# ---- 4. bench on a real-shape random checkpoint ------------------------------------------------
tmp_model=""
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  [ -n "${mem_pid:-}" ] && kill "$mem_pid" 2> /dev/null
  [ -n "$tmp_model" ] && [ "${KEEP_MODEL:-0}" != 1 ] && rm -rf "$tmp_model"
}
trap cleanup EXIT
if [ "${SKIP_BENCH:-0}" = 1 ]; then
  say "bench" "skipped (SKIP_BENCH=1)"
elif [ $build_ok = 1 ] && [ $run_gpu_steps = 1 ]; then
  if [ -n "${MODEL_DIR:-}" ]; then
    mdir=$MODEL_DIR
  else
    tmp_model=$(mktemp -d "${TMPDIR:-/tmp}/vlm-gpu-check.XXXXXX") && mdir=$tmp_model/$(basename "$BENCH_SHAPE" .json)-random
  fi
  bench_ok=1
  if [ -z "${mdir:-}" ]; then
    say "bench" "FAILED (cannot make a temporary folder)"
    bench_ok=0
  elif [ -f "$mdir/model.safetensors.index.json" ] || [ -f "$mdir/model.safetensors" ]; then
    log "4/4 reusing the checkpoint in $mdir"
  else
    mkdir -p "$mdir"
    avail_kb=$(df -Pk "$mdir" | awk 'NR == 2 {print $4}')
    log "4/4 vlm mkmodel --shape $BENCH_SHAPE $mdir ($((avail_kb / 1048576)) GiB free there; log: $OUT/mkmodel.log)"
    t0=$(date +%s)
    bounded "$MKMODEL_TIMEOUT" "$VLM" mkmodel --shape "$BENCH_SHAPE" --quiet "$mdir" > "$OUT/mkmodel.log" 2>&1
    rc=$?
    t_mk=$(($(date +%s) - t0))
    if [ $rc -ne 0 ]; then
      tail -n 5 "$OUT/mkmodel.log"
      say "bench" "FAILED (mkmodel: $(rc_note $rc "$MKMODEL_TIMEOUT") after $t_mk s; see mkmodel.log)"
      bench_ok=0
    else
      log "mkmodel took $t_mk s ($(du -sh "$mdir" | cut -f1))"
    fi
  fi
  if [ $bench_ok = 1 ]; then
    log "4/4 vlm bench -m $mdir --device $DEVICE --quant bf16 --reps $BENCH_REPS --json (out: $OUT/bench.json)"
    mem_pid=""
    if [ $have_gpu = 1 ]; then
      nvidia-smi --query-gpu=index,memory.used,memory.total --format=csv,noheader,nounits > "$OUT/gpu-mem-before.csv" 2>&1
      nvidia-smi --query-gpu=timestamp,index,memory.used,utilization.gpu --format=csv,noheader,nounits -lms 250 \
        > "$OUT/gpu-mem-during-bench.csv" 2> /dev/null &
      mem_pid=$!
    fi
    t0=$(date +%s)
    bounded "$BENCH_TIMEOUT" "$VLM" bench -m "$mdir" --device "$DEVICE" --quant bf16 --reps "$BENCH_REPS" --json \
      > "$OUT/bench.json" 2> "$OUT/bench.err"
    rc=$?
    t_bench=$(($(date +%s) - t0))
    peak=""
    if [ -n "$mem_pid" ]; then
      kill "$mem_pid" 2> /dev/null
      wait "$mem_pid" 2> /dev/null
      mem_pid=""
      base=$(awk -F', *' '{ if ($2 + 0 > m) m = $2 + 0 } END { print m + 0 }' "$OUT/gpu-mem-before.csv")
      peak=$(awk -F', *' '{ if ($3 + 0 > m) m = $3 + 0 } END { print m + 0 }' "$OUT/gpu-mem-during-bench.csv")
      echo "peak_gpu_memory_used_mib $peak (before the bench: $base)" > "$OUT/gpu-mem-peak.txt"
      peak=", peak GPU memory ${peak} MiB (${base} MiB before)"
    fi
    med() { sed -n "s/.*\"$1\":{\"min\":[^,]*,\"median\":\([0-9.]*\).*/\1/p" "$OUT/bench.json" | head -n 1; }
    dev=$(sed -n 's/.*"device":"\([^"]*\)".*/\1/p' "$OUT/bench.json" | head -n 1)
    if [ $rc -ne 0 ] || ! grep -q '^{' "$OUT/bench.json"; then
      tail -n 5 "$OUT/bench.err"
      say "bench" "FAILED ($(rc_note $rc "$BENCH_TIMEOUT") after $t_bench s; see bench.err)"
      bench_ok=0
    elif [[ $DEVICE == cuda* ]] && { fell_back "$OUT/bench.err" || [[ $dev != cuda* ]]; }; then
      say "bench" "FAILED (ran on '$dev', not the GPU: $(grep -m1 'CUDA not available' "$OUT/bench.err"))"
      bench_ok=0
    else
      say "bench" "ok ($t_bench s on $dev: decode $(med decode_tok_s) tok/s, prefill $(med prefill_tok_s) tok/s, image prefill $(med prefill_image_tok_s) tok/s, ttft $(med ttft_ms) ms, vit $(med vit_ms_per_tile) ms/tile$peak)"
    fi
  fi
  [ $bench_ok = 1 ] || failed=1
elif [ $build_ok = 0 ]; then
  say "bench" "skipped (the build failed)"
else
  say "bench" "SKIPPED: no GPU present, mkmodel + vlm bench --device $DEVICE not run"
fi

# ---- 5. summary --------------------------------------------------------------------------------
t_all=$(($(date +%s) - T_START))
{
  echo
  echo "gpu-check summary ($t_all s; logs in $OUT)"
  echo "gpu          $gpu_desc"
  cat "$SUMMARY"
} > "$OUT/summary.tmp" && mv "$OUT/summary.tmp" "$SUMMARY"
cat "$SUMMARY"
if [ $have_gpu = 0 ]; then
  if [ $run_gpu_steps = 1 ] && [ $build_ok = 1 ]; then
    echo "NOTE: no GPU present; FORCE_GPU_STEPS=1 ran verify and bench anyway with --device $DEVICE (their results do not set the exit status)."
  else
    echo "NOTE: no GPU present: the GPU steps (verify --device $DEVICE, bench --device $DEVICE) were SKIPPED."
  fi | tee -a "$SUMMARY"
  exit $hard_failed
fi
exit $failed

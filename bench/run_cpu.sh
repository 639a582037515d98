#!/usr/bin/env bash
# CPU figures on a random-weight checkpoint of a real shape (default: DeepSeek-VL2-Tiny), made once
# under build/bench/ by `vlm mkmodel` (6.7 GB of BF16 for Tiny), then `vlm bench` for each weight
# format: ViT ms per tile, prefill tok/s (512 text tokens; 1,023 image tokens), decode tok/s at
# 128 tokens, time to first token for a 640x480 image + a question, peak RSS, and the decode
# bound from the measured memory bandwidth.
# usage: bench/run_cpu.sh [shape] [formats...]     e.g. bench/run_cpu.sh tiny bf16 q8 q4
# Then the request engine under load for q8 and q4 (vlm bench --concurrency: aggregate decode tok/s,
# inter-token latency p50/p99, TTFT of a request arriving while the others decode).
# Environment: BENCH_REPS (default 3), BENCH_JSON=1 for one JSON object per format, VLM (binary),
#   CONCURRENCY (default 1,4,8,16,32; empty skips the engine runs), CONCURRENCY_FORMATS (default "q8 q4").
set -euo pipefail
cd "$(dirname "$0")/.."
shape=${1:-tiny}
shift || true
formats=("$@")
[ ${#formats[@]} -gt 0 ] || formats=(bf16 q8 q4)
vlm=${VLM:-build/vlm}
dir=build/bench/$shape-random
if [ ! -f "$dir/model.safetensors.index.json" ]; then
  echo "bench: writing a random $shape checkpoint to $dir (once)"
  "$vlm" mkmodel --shape "$shape" "$dir"
fi
echo "bench: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
for q in "${formats[@]}"; do
  if [ "${BENCH_JSON:-0}" = 1 ]; then
    "$vlm" bench -m "$dir" --quant "$q" --reps "${BENCH_REPS:-3}" --json
  else
    "$vlm" bench -m "$dir" --quant "$q" --reps "${BENCH_REPS:-3}"
    echo
  fi
done
if [ -n "${CONCURRENCY-1,4,8,16,32}" ]; then
  for q in ${CONCURRENCY_FORMATS:-q8 q4}; do
    echo "bench: request engine, $q, concurrency ${CONCURRENCY:-1,4,8,16,32} (128 prompt tokens, 64 new, per request)"
    if [ "${BENCH_JSON:-0}" = 1 ]; then
      "$vlm" bench -m "$dir" --quant "$q" --concurrency "${CONCURRENCY:-1,4,8,16,32}" --json
    else
      "$vlm" bench -m "$dir" --quant "$q" --concurrency "${CONCURRENCY:-1,4,8,16,32}"
      echo
    fi
  done
fi

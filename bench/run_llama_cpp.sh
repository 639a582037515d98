#!/usr/bin/env bash
# llama.cpp reference figures for the CPU speed comparison: a language model with exactly
# DeepSeek-VL2-Tiny's decoder shapes (random weights, from bench/make_gguf.py) in F16, Q8_0 and
# Q4_0, timed by llama-bench (prompt processing of PP tokens, decode of TG tokens), and
# llama.cpp's CLIP path encoding one 384x384 image with a SigLIP-SO400M-384/14 tower (llama-mtmd-cli).
#
# usage: bench/run_llama_cpp.sh LLAMA_BUILD_DIR GGUF_DIR
#   LLAMA_BUILD_DIR  a llama.cpp CMake build with bin/llama-bench, bin/llama-quantize and
#                    bin/llama-mtmd-cli (the last only for the CLIP timing)
#   GGUF_DIR         output of `bench/make_gguf.py GGUF_DIR --mmproj`; the Q8_0/Q4_0 files are
#                    made here once, with llama-quantize --pure (every matrix, lm_head and the
#                    embedding included, in the named type; norms and the router stay F32)
# Environment: THREADS (2), REPS (6), PP (512), TG (128), TYPES ("f16 q8_0 q4_0"),
#   LM (1; 0 skips llama-bench), CLIP (1; 0 skips the image encode), BENCH_ARGS (extra llama-bench flags, e.g. "-fa on").
# Prints llama-bench's table (mean ± sd), then the median of the REPS samples of each test, then
# the CLIP encode times (each llama-mtmd-cli run encodes the image twice; the median of the
# second, warm, encode is the figure to compare).
set -euo pipefail
[ $# -eq 2 ] || { sed -n 7,16p "$0"; exit 2; }
bin=$1/bin
dir=$2
threads=${THREADS:-2}
reps=${REPS:-6}
pp=${PP:-512}
tg=${TG:-128}
types=${TYPES:-f16 q8_0 q4_0}
for t in llama-bench llama-quantize; do
  [ -x "$bin/$t" ] || { echo "run_llama_cpp: $bin/$t not found" >&2; exit 1; }
done
[ -f "$dir/tiny-lm-f16.gguf" ] || { echo "run_llama_cpp: $dir/tiny-lm-f16.gguf missing (run bench/make_gguf.py $dir)" >&2; exit 1; }

echo "run_llama_cpp: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) CPUs," \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)"

models=()
[ "${LM:-1}" = 1 ] || types=""
for t in $types; do
  f=$dir/tiny-lm-$t.gguf
  if [ ! -f "$f" ]; then
    echo "run_llama_cpp: quantizing to $t (once)"
    "$bin/llama-quantize" --pure "$dir/tiny-lm-f16.gguf" "$f.part" "${t^^}" "$threads" > "$f.log" 2>&1 ||
      { tail -20 "$f.log" >&2; exit 1; }
    mv "$f.part" "$f"
  fi
  models+=(-m "$f")
done
# Read the files once so that the first repetition does not pay for page faults from disk (llama-bench
# mmaps the model; decode touches 6 random experts of 64 per layer per token).
for ((i = 1; i < ${#models[@]}; i += 2)); do cat "${models[i]}" > /dev/null; done

if [ "${LM:-1}" = 1 ]; then
  # The table goes to stdout; the same results as JSON lines (with every sample) go to a file.
  jsonl=$(mktemp)
  trap 'rm -f "$jsonl"' EXIT
  # shellcheck disable=SC2086
  "$bin/llama-bench" "${models[@]}" -t "$threads" -r "$reps" -p "$pp" -n "$tg" -oe jsonl ${BENCH_ARGS:-} 2> "$jsonl" ||
    { grep -v '^{' "$jsonl" >&2; exit 1; }
  echo
  echo "medians of $reps (tokens/s):"
  python3 - "$jsonl" <<'EOF'
import json, statistics, sys, os
for line in open(sys.argv[1]):
    if not line.startswith("{"):
        continue
    r = json.loads(line)
    test = f"pp{r['n_prompt']}" if r["n_gen"] == 0 else f"tg{r['n_gen']}"
    s = r["samples_ts"]
    print(f"  {os.path.basename(r['model_filename']):22s} {r['model_type']:28s} {test:6s} "
          f"median {statistics.median(s):9.2f}  (samples {', '.join(f'{x:.2f}' for x in s)})")
EOF
fi

if [ "${CLIP:-1}" = 1 ]; then
  echo
  if [ ! -x "$bin/llama-mtmd-cli" ] || [ ! -f "$dir/tiny-mmproj-f16.gguf" ]; then
    echo "run_llama_cpp: CLIP timing skipped (need $bin/llama-mtmd-cli and bench/make_gguf.py --mmproj)"
    exit 0
  fi
  echo "CLIP: SigLIP-SO400M-384/14 (27 layers, 1152 wide, 729 patches) + MLP to 1280, F16, one 384x384 image, -t $threads"
  cold=() warm=()
  for ((i = 1; i <= reps; i++)); do
    log=$("$bin/llama-mtmd-cli" -m "$dir/clip-host-stub.gguf" --mmproj "$dir/tiny-mmproj-f16.gguf" \
            --image "$dir/image384.png,$dir/image384.png" -p "describe" -n 1 -t "$threads" \
            --temp 0 --chat-template chatml 2>&1) || { echo "$log" | tail -20 >&2; exit 1; }
    # mtmd_batch_encode() time, printed by llama-mtmd-cli (older builds: "image slice encoded in N ms")
    mapfile -t ms < <(echo "$log" | sed -n -e 's/.*mtmd batch encoding done in \([0-9]*\) ms.*/\1/p' \
                                          -e 's/.*image slice encoded in \([0-9]*\) ms.*/\1/p')
    [ ${#ms[@]} -eq 2 ] || { echo "$log" | tail -20 >&2; echo "run_llama_cpp: expected two encode times" >&2; exit 1; }
    echo "  run $i: encode ${ms[0]} ms (first), ${ms[1]} ms (second)"
    cold+=("${ms[0]}") warm+=("${ms[1]}")
  done
  python3 -c 'import statistics, sys; n = len(sys.argv) // 2; c, w = sys.argv[1:n + 1], sys.argv[n + 1:]
print(f"  median encode: {statistics.median(map(float, w)):.0f} ms warm, {statistics.median(map(float, c)):.0f} ms first")' \
    "${cold[@]}" "${warm[@]}"
fi

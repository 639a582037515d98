#!/usr/bin/env bash
# llama.cpp reference figures for the CPU speed comparison: a language model with exactly
# DeepSeek-VL2-Tiny's decoder shapes (random weights, from bench/make_gguf.py) in F16, Q8_0 and
# Q4_0, timed by llama-bench (prompt processing of PP tokens, decode of TG tokens), by
# llama-batched-bench (NPL independent sequences decoded together: aggregate throughput per
# concurrency), and llama.cpp's CLIP path encoding one 384x384 image with a SigLIP-SO400M-384/14
# tower (llama-mtmd-cli).
#
# usage: bench/run_llama_cpp.sh LLAMA_BUILD_DIR GGUF_DIR
#   LLAMA_BUILD_DIR  a llama.cpp CMake build with bin/llama-quantize and bin/llama-bench (LM),
#                    bin/llama-batched-bench (BATCHED), bin/llama-mtmd-cli (CLIP)
#   GGUF_DIR         output of `bench/make_gguf.py GGUF_DIR [--mmproj]`; the Q8_0/Q4_0 files are
#                    made here once, with llama-quantize --pure (every matrix, lm_head and the
#                    embedding included, in the named type; norms and the router stay F32)
# Environment: THREADS (2), LM (1; 0 skips llama-bench), BATCHED (1; 0 skips llama-batched-bench),
#   CLIP (1; 0 skips the image encode); e.g. LM=0 CLIP=0 runs only llama-batched-bench.
#   llama-bench: REPS (6), PP (512), TG (128), TYPES ("f16 q8_0 q4_0"), BENCH_ARGS (extra flags, e.g. "-fa on").
#   llama-batched-bench: NPL ("1,4,8,16,32"), BPP (128 prompt tokens per sequence), BTG (64 generated
#   tokens per sequence), BTYPES ("q8_0 q4_0"), BREPS (1 run per type), BCTX (context, default
#   max(NPL) x (BPP + BTG)), BATCHED_ARGS (extra flags, e.g. "-fa on").
# Prints llama-bench's table (mean ± sd), then the median of the REPS samples of each test; then
# llama-batched-bench's table per type and run, and per npl the aggregate generation rate S_TG
# (npl x BTG tokens / decode time) and prompt rate S_PP (npl x BPP tokens / prompt time), medians
# of BREPS runs, with the load average seen during the runs; then the CLIP encode times (each
# llama-mtmd-cli run encodes the image twice; the median of the second, warm, encode is the figure
# to compare).
set -euo pipefail
[ $# -eq 2 ] || { sed -n 9,26p "$0"; exit 2; }
bin=$1/bin
dir=$2
threads=${THREADS:-2}
reps=${REPS:-6}
pp=${PP:-512}
tg=${TG:-128}
types=${TYPES:-f16 q8_0 q4_0}
npl=${NPL:-1,4,8,16,32}
bpp=${BPP:-128}
btg=${BTG:-64}
btypes=${BTYPES:-q8_0 q4_0}
breps=${BREPS:-1}
lm=${LM:-1} batched=${BATCHED:-1} clip=${CLIP:-1}
need=()
[ "$lm" = 1 ] && need+=(llama-bench)
[ "$batched" = 1 ] && need+=(llama-batched-bench)
for t in "${need[@]}"; do
  [ -x "$bin/$t" ] || { echo "run_llama_cpp: $bin/$t not found" >&2; exit 1; }
done
[[ $npl =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "run_llama_cpp: NPL must be a comma-separated list of counts" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "run_llama_cpp: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) CPUs," \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)"

# model TYPE: the path of tiny-lm-TYPE.gguf, quantized from the F16 file the first time.
model() {
  local t=$1 f=$dir/tiny-lm-$1.gguf
  if [ ! -f "$f" ]; then
    [ -f "$dir/tiny-lm-f16.gguf" ] ||
      { echo "run_llama_cpp: $dir/tiny-lm-f16.gguf missing (run bench/make_gguf.py $dir)" >&2; return 1; }
    [ -x "$bin/llama-quantize" ] || { echo "run_llama_cpp: $bin/llama-quantize not found" >&2; return 1; }
    echo "run_llama_cpp: quantizing to $t (once)" >&2
    "$bin/llama-quantize" --pure "$dir/tiny-lm-f16.gguf" "$f.part" "${t^^}" "$threads" > "$f.log" 2>&1 ||
      { tail -20 "$f.log" >&2; return 1; }
    mv "$f.part" "$f"
  fi
  echo "$f"
}

models=()
[ "$lm" = 1 ] || types=""
for t in $types; do
  models+=(-m "$(model "$t")")
done
# Read the files once so that the first repetition does not pay for page faults from disk (llama-bench
# mmaps the model; decode touches 6 random experts of 64 per layer per token).
for ((i = 1; i < ${#models[@]}; i += 2)); do cat "${models[i]}" > /dev/null; done

if [ "$lm" = 1 ]; then
  # The table goes to stdout; the same results as JSON lines (with every sample) go to a file.
  jsonl=$tmp/llama-bench.jsonl
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

if [ "$batched" = 1 ]; then
  # Without -pps every sequence gets its own BPP random prompt tokens (all decoded as one batch, split
  # by -b/-ub), then each step decodes one token of every sequence (no -tgs). -no-kvu: each sequence
  # has its own KV stream of BCTX / max(NPL) cells (rounded up to 256), so a decode step attends over
  # its own tokens only; llama-batched-bench silently skips an npl whose npl x (BPP + BTG) exceeds
  # the context, so the summary checks that every npl has a row.
  max_npl=$(tr ',' '\n' <<< "$npl" | sort -n | tail -1)
  ctx=${BCTX:-$((max_npl * (bpp + btg)))}
  echo
  echo "llama-batched-bench: npl $npl independent sequences, each its own $bpp-token prompt and $btg" \
       "generated tokens, -c $ctx, -t $threads, $breps run(s) per type"
  : > "$tmp/rows"
  : > "$tmp/load"
  for t in $btypes; do
    f=$(model "$t")
    cat "$f" > /dev/null
    for ((r = 1; r <= breps; r++)); do
      echo
      echo "$(basename "$f"), run $r of $breps, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start:"
      (while sleep 5; do cut -d' ' -f1 /proc/loadavg; done) >> "$tmp/load" &
      sampler=$!
      # shellcheck disable=SC2086
      "$bin/llama-batched-bench" -m "$f" -c "$ctx" -npp "$bpp" -ntg "$btg" -npl "$npl" -t "$threads" \
        -no-kvu ${BATCHED_ARGS:-} > "$tmp/out" 2> "$tmp/err" ||
        { kill "$sampler"; tail -20 "$tmp/err" >&2; exit 1; }
      kill "$sampler"
      wait "$sampler" 2> /dev/null || true
      grep -v '^$' "$tmp/out" || true
      grep '^| *[0-9]' "$tmp/out" | sed "s|^|$(basename "$f") |" >> "$tmp/rows"
    done
  done
  echo
  echo "llama-batched-bench summary (tokens/s; S_TG = npl x $btg generated tokens / decode time," \
       "S_PP = npl x $bpp prompt tokens / prompt time; medians of $breps run(s)):"
  python3 - "$tmp/rows" "$tmp/load" "$npl" "$btypes" <<'EOF'
import statistics, sys
rows, load, npl, types = sys.argv[1], sys.argv[2], [int(x) for x in sys.argv[3].split(",")], sys.argv[4].split()
res = {}
for line in open(rows):
    name, rest = line.split(None, 1)
    c = [x.strip() for x in rest.strip().strip("|").split("|")]
    # PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s | T s | S t/s
    res.setdefault((name, int(c[2])), []).append((float(c[7]), float(c[5])))
missing = []
for t in types:
    name = f"tiny-lm-{t}.gguf"
    for n in npl:
        r = res.get((name, n))
        if not r:
            missing.append(f"{name} npl {n}")
            continue
        tg, pp = statistics.median(x[0] for x in r), statistics.median(x[1] for x in r)
        more = f"  (S_TG runs {', '.join(f'{x[0]:.2f}' for x in r)})" if len(r) > 1 else ""
        print(f"  {name:20s} npl {n:3d}: S_TG {tg:8.2f} ({tg / n:6.2f} per sequence)   S_PP {pp:8.2f}{more}")
ld = [float(x) for x in open(load) if x.strip()]
if ld:
    print(f"  1-minute load average during the runs (every 5 s, this benchmark's own threads included): "
          f"min {min(ld):.2f}, median {statistics.median(ld):.2f}, max {max(ld):.2f}")
if missing:
    sys.exit("run_llama_cpp: no llama-batched-bench row for " + "; ".join(missing) + " (context too small? raise BCTX)")
EOF
fi

if [ "$clip" = 1 ]; then
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

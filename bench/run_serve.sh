#!/usr/bin/env bash
# `vlm serve` under load beside the engine it serves and beside llama.cpp's server, in one run:
#   1. the engine alone:  vlm bench --concurrency N (aggregate decode tok/s of N requests of 128 prompt
#      tokens and 64 new ones, timed once all N have their first token);
#   2. the same through HTTP: vlm serve on a free port, N streamed /v1/chat/completions requests at once
#      from bench/soak_server.py --throughput (the same window, SSE pieces scaled to tokens by the
#      streams' usage), REPS times;
#   3. optionally llama-server -np N on the GGUF of the same shapes and bits (bench/make_gguf.py and
#      bench/run_llama_cpp.sh make it; a copy with a placeholder vocabulary, which llama-server needs, is
#      made beside it once by bench/gguf_add_vocab.py), N streamed /completion requests of 128 random
#      token ids and 64 new tokens, the same client and window, REPS times.
# Prints each figure and the ratios served / engine and served / llama-server (medians of the reps).
#
# usage: bench/run_serve.sh MODEL_DIR [LLAMA_BUILD_DIR GGUF]
#   MODEL_DIR        e.g. build/bench/tiny-q4 (vlm mkmodel --shape tiny + vlm quantize --quant q4), or
#                    build/bench/tiny-random with QUANT=q4
#   LLAMA_BUILD_DIR  a llama.cpp build with bin/llama-server (cmake -DLLAMA_BUILD_SERVER=ON)
#   GGUF             e.g. GGUF_DIR/tiny-lm-q4_0.gguf
# Environment: VLM (build/vlm), N (8), REPS (3), THREADS (2), QUANT (a --quant for both, e.g. q4 on a
#   mkmodel folder; default: the folder's own format), SERVE_ARGS (more `vlm serve` options).
set -euo pipefail
[ $# -eq 1 ] || [ $# -eq 3 ] || { sed -n 2,18p "$0"; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
vlm=${VLM:-$here/../build/vlm}
model=$1
n=${N:-8} reps=${REPS:-3} threads=${THREADS:-2}
qarg=()
[ -z "${QUANT:-}" ] || qarg=(--quant "$QUANT")
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "run_serve: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) CPUs, load average" \
     "$(cut -d' ' -f1-3 /proc/loadavg); $n concurrent requests, 128 prompt tokens, 64 new, $reps reps"

# median of the aggregate_decode_tok_s values in a JSON list on stdin
median_agg() {
  python3 -c 'import json,sys,statistics; v=[r["aggregate_decode_tok_s"] for r in json.load(sys.stdin) if r.get("aggregate_decode_tok_s")]; print(round(statistics.median(v),1) if v else "nan")'
}

echo "== engine: vlm bench --concurrency $n"
"$vlm" bench -m "$model" "${qarg[@]}" --threads "$threads" --concurrency "$n" --json > "$tmp/engine.json"
engine=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["concurrency"][0]["aggregate_decode_tok_s"],1))' "$tmp/engine.json")
echo "engine aggregate decode: $engine tok/s"

echo "== served: vlm serve + $n streamed chat completions"
"$vlm" serve -m "$model" "${qarg[@]}" --port 0 --threads "$threads" --max-running "$n" ${SERVE_ARGS:-} > "$tmp/serve.out" 2> "$tmp/serve.err" &
pids+=($!)
for _ in $(seq 600); do grep -q "listening on" "$tmp/serve.out" 2> /dev/null && break; sleep 0.5; done
url=$(grep -o 'http://[^ ]*' "$tmp/serve.out" | head -1)
[ -n "$url" ] || { echo "run_serve: vlm serve did not start:" >&2; cat "$tmp/serve.err" >&2; exit 1; }
python3 "$here/soak_server.py" --base "$url" --model "$(basename "$model")" --throughput "$n" --reps "$reps" > "$tmp/served.json"
cat "$tmp/served.json"
served=$(median_agg < "$tmp/served.json")
kill "${pids[-1]}"; wait "${pids[-1]}" 2> /dev/null || true
echo "served aggregate decode: $served tok/s (median of $reps)"
python3 -c "import sys; e,s=float(sys.argv[1]),float(sys.argv[2]); print('served / engine: %.2f' % (s/e))" "$engine" "$served"

if [ $# -eq 3 ]; then
  gguf=$3
  case $gguf in
    *-vocab.gguf) ;;
    *) v=${gguf%.gguf}-vocab.gguf
       [ -f "$v" ] || python3 "$here/gguf_add_vocab.py" "$gguf" "$v"
       gguf=$v ;;
  esac
  echo "== llama-server -np $n: $gguf"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  # context: every slot holds its 128 + 64 tokens (llama-server splits -c over the -np slots)
  "$2/bin/llama-server" -m "$gguf" -np "$n" -c $((n * 256)) -t "$threads" -tb "$threads" --host 127.0.0.1 --port "$port" \
    --no-webui > "$tmp/llama.out" 2>&1 &
  pids+=($!)
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:$port/health" > /dev/null 2>&1 && break; sleep 0.5; done
  curl -sf "http://127.0.0.1:$port/health" > /dev/null || { echo "run_serve: llama-server did not start:" >&2; tail -20 "$tmp/llama.out" >&2; exit 1; }
  python3 "$here/soak_server.py" --base "http://127.0.0.1:$port" --llama-ids --throughput "$n" --reps "$reps" > "$tmp/llama.json"
  cat "$tmp/llama.json"
  llama=$(median_agg < "$tmp/llama.json")
  echo "llama-server aggregate decode: $llama tok/s (median of $reps)"
  python3 -c "import sys; l,s=float(sys.argv[1]),float(sys.argv[2]); print('served / llama-server: %.2f' % (s/l))" "$llama" "$served"
fi

#!/usr/bin/env bash
# vlm caption throughput on the random-weight checkpoint of Tiny's real shapes (build/bench/tiny-random, made
# once by bench/run_cpu.sh or here): a CLIP_SECONDS-long (60) 640x360 test-pattern clip at every=2, --max-tokens
# 24, per weight format (default q4 bf16). Prints per format:
#   caption   frames/s end to end and the share of the wall time the engine had work (vlm caption's last line)
#   model     the per-frame model time vlm bench predicts: tiles x ViT ms per tile + image tokens / image prefill
#             tok/s + 24 / decode tok/s (tiles and image tokens of one frame from vlm ask --json), as frames/s
#   ask       the same frames captioned one `vlm ask` at a time (ASK_FRAMES of them, default 3; process start
#             and model load included, as a script looping over frames would pay them)
# Environment: VLM (binary), CLIP_SECONDS, ASK_FRAMES, BENCH_REPS (vlm bench repetitions, default 3: the
# median; the first repetition of a fresh process pays the page faults of the weights).
set -euo pipefail
cd "$(dirname "$0")/.."
formats=("$@")
[ ${#formats[@]} -gt 0 ] || formats=(q4 bf16)
vlm=${VLM:-build/vlm}
secs=${CLIP_SECONDS:-60}
ask_frames=${ASK_FRAMES:-3}
work=${BENCH_DIR:-build/bench}
dir=$work/tiny-random
mkdir -p "$work"
if [ ! -f "$dir/model.safetensors.index.json" ]; then
  echo "bench: writing a random tiny checkpoint to $dir (once)"
  "$vlm" mkmodel --shape tiny "$dir"
fi
clip=$work/caption_${secs}s_640x360.mp4
if [ ! -f "$clip" ]; then
  cc -O1 -o "$work/make_clip" tests/caption/make_demo_clip.c -lavformat -lavcodec -lavutil
  "$work/make_clip" "$clip" "$secs" 640 360
fi
frames=$(( (secs + 1) / 2 ))
echo "bench: caption $clip ($frames frames at every=2, --max-tokens 24) on $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
num() { sed -n "s/.*\"$2\":{\"min\":[0-9.]*,\"median\":\([0-9.]*\).*/\1/p" <<<"$1"; }
field() { sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" <<<"$1"; }
for q in "${formats[@]}"; do
  model=$dir
  qarg=(--quant "$q")
  if [ "$q" = q4 ] && [ -f "$work/tiny-q4/vlm_quant.json" ]; then model=$work/tiny-q4; qarg=(); fi
  out=$work/caption-$q
  rm -rf "$out"
  t0=$(date +%s.%N)
  line=$("$vlm" caption -m "$model" "${qarg[@]}" --frames every=2 --max-tokens 24 --out-dir "$out" "$clip" 2>&1 | tail -n 1)
  t1=$(date +%s.%N)
  fps=$(sed -n 's/.*; \([0-9.]*\) frames\/s.*/\1/p' <<<"$line")
  busy=$(sed -n 's/.*model busy \([0-9]*\)%.*/\1/p' <<<"$line")
  # one frame alone: its tiles and image tokens
  "$vlm" media "$clip" --frames every=1000 --dump "$work/caption_frame.png" >/dev/null
  ask=$("$vlm" ask -m "$model" "${qarg[@]}" -i "$work/caption_frame.png" --json --max-tokens 24 \
        "Describe what happens in this video frame in one sentence." 2>/dev/null | tail -n 1)
  img_tokens=$(field "$ask" image_tokens)
  local_tokens=$(( img_tokens - 211 ))
  tiles=1
  for h in 1 2 3 4 5 6 7 8 9; do
    if [ $(( local_tokens % (14 * h) )) -eq 0 ]; then row=$(( local_tokens / (14 * h) )); tiles=$(( 1 + h * (row - 1) / 14 )); break; fi
  done
  b=$("$vlm" bench -m "$model" "${qarg[@]}" --reps "${BENCH_REPS:-3}" --json | tail -n 1)
  vit=$(num "$b" vit_ms_per_tile); pimg=$(num "$b" prefill_image_tok_s); dec=$(num "$b" decode_tok_s)
  model_ms=$(awk -v t="$tiles" -v v="$vit" -v n="$img_tokens" -v p="$pimg" -v d="$dec" 'BEGIN{printf "%.0f", t*v + n/p*1000 + 24/d*1000}')
  # one vlm ask per frame
  a0=$(date +%s.%N)
  for i in $(seq 1 "$ask_frames"); do
    "$vlm" ask -m "$model" "${qarg[@]}" -i "$work/caption_frame.png" --max-tokens 24 \
      "Describe what happens in this video frame in one sentence." >/dev/null 2>&1
  done
  a1=$(date +%s.%N)
  awk -v q="$q" -v fps="$fps" -v busy="$busy" -v ms="$model_ms" -v tiles="$tiles" -v tok="$img_tokens" \
      -v wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" -v n="$frames" \
      -v ask="$(awk -v a="$a0" -v b="$a1" -v k="$ask_frames" 'BEGIN{print k/(b-a)}')" 'BEGIN{
    printf "%-5s caption %.3f frames/s (%d frames in %.1f s, engine busy %s%%) | model-bound %.3f frames/s (%s ms/frame: %d tiles, %d image tokens) = %.0f%% | one vlm ask per frame %.3f frames/s = %.2fx\n",
      q, fps, n, wall, busy, 1000/ms, ms, tiles, tok, 100*fps*ms/1000, ask, fps/ask }'
done

#!/usr/bin/env bash
# `make serve-demo`: vlm serve on the bundled tiny checkpoint (random weights: the answers are noise), one
# curl call and one call from the official openai Python client, then SIGTERM (a graceful drain).
set -euo pipefail
VLM=${1:-build/vlm}
MODEL=${2:-tests/data/golden/tiny-mha}
IMAGE=${3:-tests/data/golden/inputs/case1_640x480_png/image.png}
out=$(mktemp)
"$VLM" serve -m "$MODEL" --port 0 > "$out" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 300); do grep -q listening "$out" && break; sleep 0.1; done
base=$(sed -n 's/^listening on //p' "$out")
echo "serve-demo: vlm serve is listening on $base (model $(basename "$MODEL"))"
echo
echo "\$ curl $base/v1/chat/completions -H 'Content-Type: application/json' -d '{\"model\": \"$(basename "$MODEL")\", \"max_tokens\": 16, \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,...\"}}, {\"type\": \"text\", \"text\": \"Describe this image.\"}]}]}'"
printf '{"model": "%s", "max_tokens": 16, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,%s"}}, {"type": "text", "text": "Describe this image."}]}]}' \
  "$(basename "$MODEL")" "$(base64 -w0 "$IMAGE")" | curl -sS "$base/v1/chat/completions" -H 'Content-Type: application/json' --data-binary @-
echo; echo
echo "\$ python3 (openai client, streamed):"
python3 - "$base" "$(basename "$MODEL")" "$IMAGE" <<'PY'
import base64, sys
from openai import OpenAI
base, model, image = sys.argv[1:4]
client = OpenAI(base_url=base + "/v1", api_key="none")
url = "data:image/png;base64," + base64.b64encode(open(image, "rb").read()).decode()
stream = client.chat.completions.create(model=model, max_tokens=16, stream=True, messages=[
    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                 {"type": "text", "text": "Describe this image."}]}])
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
print()
PY
echo
kill -TERM $pid
wait $pid
echo "serve-demo: the server drained and exited with status $?"

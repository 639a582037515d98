#!/usr/bin/env python3
"""Checks of a running `vlm serve` with real clients: the official `openai` package, plain HTTP
(urllib) and prometheus_client's parser. Run by tests/test_server_e2e.cc:

    client_checks.py CHECK --base http://127.0.0.1:PORT [--key KEY] --model NAME --image PNG --expect FILE

Prints one line per sub-check and exits 0 when all pass, 1 at the first failure (with the reason)."""
import argparse
import base64
import functools
import http.server
import json
import os
import sys
import threading
import urllib.error
import urllib.request


def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)
    print("ok: " + msg, flush=True)


def data_url(path):
    with open(path, "rb") as f:
        return "data:image/png;base64," + base64.b64encode(f.read()).decode()


def client(args, key=None):
    import openai
    return openai.OpenAI(base_url=args.base + "/v1", api_key=key if key is not None else (args.key or "none"),
                         max_retries=0, timeout=120)


def user_msg(image_url, text):
    return {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image_url}},
                                        {"type": "text", "text": text}]}


GREEDY = {"max_tokens": 16, "temperature": 0, "extra_body": {"ignore_eos": True}}


def raw(args, path, body=None, method=None, headers=None, key=True):
    """(status, parsed JSON or text, headers) of one HTTP request."""
    h = {"Content-Type": "application/json"}
    if key and args.key:
        h["Authorization"] = "Bearer " + args.key
    h.update(headers or {})
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(args.base + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            status, text, hdrs = r.status, r.read().decode(), r.headers
    except urllib.error.HTTPError as e:
        status, text, hdrs = e.code, e.read().decode(), e.headers
    try:
        return status, json.loads(text), hdrs
    except ValueError:
        return status, text, hdrs


def error_shape(obj):
    e = obj.get("error") if isinstance(obj, dict) else None
    return (isinstance(e, dict) and isinstance(e.get("message"), str) and isinstance(e.get("type"), str)
            and "param" in e and "code" in e)


# ---- checks ------------------------------------------------------------------------------------------

def c_models(args):
    ids = [m.id for m in client(args).models.list().data]
    check(ids == [args.model], "GET /v1/models lists %r (got %r)" % (args.model, ids))


def c_chat(args):
    r = client(args).chat.completions.create(model=args.model, messages=[user_msg(data_url(args.image), args.prompt)],
                                             **GREEDY)
    check(r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.model == args.model, "completion object")
    ch = r.choices[0]
    check(ch.message.role == "assistant", "assistant message")
    check(ch.message.content == args.expected, "non-streamed answer %r equals the greedy golden text %r"
          % (ch.message.content, args.expected))
    check(ch.finish_reason == "length", "finish_reason length (got %r)" % ch.finish_reason)
    u = r.usage
    check(u.completion_tokens == 16 and u.prompt_tokens > 1000 and u.total_tokens == u.prompt_tokens + 16,
          "usage %r" % u)


def c_stream(args):
    s = client(args).chat.completions.create(model=args.model, messages=[user_msg(data_url(args.image), args.prompt)],
                                             stream=True, stream_options={"include_usage": True}, **GREEDY)
    text, finish, usage, n = "", None, None, 0
    for chunk in s:
        n += 1
        check(chunk.object == "chat.completion.chunk", "chunk %d object" % n) if n == 1 else None
        if chunk.choices:
            d = chunk.choices[0].delta
            text += d.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    check(text == args.expected, "streamed answer %r equals the greedy golden text %r" % (text, args.expected))
    check(finish == "length", "streamed finish_reason length (got %r)" % finish)
    check(usage is not None and usage.completion_tokens == 16, "usage chunk %r" % usage)


def serve_dir(directory):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=directory)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def c_http_image(args):
    httpd = serve_dir(os.path.dirname(os.path.abspath(args.image)))
    url = "http://127.0.0.1:%d/%s" % (httpd.server_address[1], os.path.basename(args.image))
    r = client(args).chat.completions.create(model=args.model, messages=[user_msg(url, args.prompt)], **GREEDY)
    check(r.choices[0].message.content == args.expected, "answer about an http:// image equals the golden text")
    httpd.shutdown()


def c_http_refused(args):
    import openai
    httpd = serve_dir(os.path.dirname(os.path.abspath(args.image)))
    url = "http://127.0.0.1:%d/%s" % (httpd.server_address[1], os.path.basename(args.image))
    try:
        client(args).chat.completions.create(model=args.model, messages=[user_msg(url, args.prompt)], **GREEDY)
        fail("a loopback image URL was fetched without --allow-private")
    except openai.BadRequestError as e:
        check(e.status_code == 400 and "loopback" in str(e), "loopback URL refused with 400: %s" % e)
    for u in ["http://10.0.0.1/x.png", "http://169.254.169.254/latest/meta-data", "http://[::1]/x.png"]:
        st, obj, _ = raw(args, "/v1/chat/completions", {"model": args.model, "messages": [user_msg(u, "hi")]})
        check(st == 400 and error_shape(obj), "%s refused with 400" % u)
    httpd.shutdown()


def c_multiturn(args):
    c = client(args)
    msgs = [{"role": "system", "content": "You are a careful assistant."}, user_msg(data_url(args.image), args.prompt)]
    r1 = c.chat.completions.create(model=args.model, messages=msgs, **GREEDY)
    msgs += [{"role": "assistant", "content": r1.choices[0].message.content},
             {"role": "user", "content": "And what colour is it?"}]
    r2 = c.chat.completions.create(model=args.model, messages=msgs, **GREEDY)
    check(r2.usage.prompt_tokens > r1.usage.prompt_tokens, "second turn's prompt holds the first (%d > %d tokens)"
          % (r2.usage.prompt_tokens, r1.usage.prompt_tokens))
    cached = (r2.usage.prompt_tokens_details.cached_tokens if r2.usage.prompt_tokens_details else 0) or 0
    check(cached > 0, "second turn reuses the first turn's prefix (%d cached tokens)" % cached)
    check(r2.choices[0].finish_reason in ("stop", "length"), "second turn answered")


def c_bad_key(args):
    import openai
    for key in ["wrong-key", args.key + "x", args.key[:-1]]:
        try:
            client(args, key=key).chat.completions.create(model=args.model, messages=[{"role": "user", "content": "hi"}],
                                                          max_tokens=2)
            fail("key %r accepted" % key)
        except openai.AuthenticationError as e:
            check(e.status_code == 401, "key %r refused with 401" % key)
    st, obj, hdrs = raw(args, "/v1/models", key=False)
    check(st == 401 and error_shape(obj) and obj["error"]["code"] == "invalid_api_key", "no Authorization: 401")
    st, obj, _ = raw(args, "/health", key=False)
    check(st == 200, "/health needs no key")


def c_errors(args):
    m = args.model
    ok_msgs = [{"role": "user", "content": "hi"}]
    cases = [
        ("bad JSON", b"{\"model\": ", 400, "invalid_json"),
        ("not an object", b"[1,2]", 400, None),
        ("no messages", {"model": m}, 400, "missing_required_parameter"),
        ("n = 2", {"model": m, "messages": ok_msgs, "n": 2}, 400, None),
        ("unknown role", {"model": m, "messages": [{"role": "tool", "content": "x"}]}, 400, None),
        ("bad temperature", {"model": m, "messages": ok_msgs, "temperature": 5}, 400, None),
        ("max_tokens type", {"model": m, "messages": ok_msgs, "max_tokens": "ten"}, 400, "invalid_type"),
        ("stream_options without stream", {"model": m, "messages": ok_msgs, "stream_options": {"include_usage": True}},
         400, None),
        ("presence_penalty", {"model": m, "messages": ok_msgs, "presence_penalty": 1.0}, 400, None),
        ("bad base64", {"model": m, "messages": [user_msg("data:image/png;base64,@@@@", "hi")]}, 400, None),
        ("not an image", {"model": m, "messages": [user_msg("data:image/png;base64," +
                                                              base64.b64encode(b"hello world!").decode(), "hi")]}, 400, None),
        ("file URL without --media-dir", {"model": m, "messages": [user_msg("file:///etc/passwd", "hi")]}, 400, None),
        ("unknown scheme", {"model": m, "messages": [user_msg("ftp://example.com/a.png", "hi")]}, 400, None),
        ("unknown model", {"model": "gpt-4o", "messages": ok_msgs}, 404, "model_not_found"),
        ("unknown part type", {"model": m, "messages": [{"role": "user", "content": [{"type": "audio"}]}]}, 400, None),
    ]
    # a PNG header claiming 100000 x 100000 pixels: refused from the header, before any decoding
    import struct
    import zlib
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    cases.append(("pixel bomb", {"model": m, "messages": [user_msg("data:image/png;base64," + base64.b64encode(png).decode(),
                                                                     "hi")]}, 400, None))
    for name, body, status, code in cases:
        st, obj, _ = raw(args, "/v1/chat/completions", body)
        check(st == status and error_shape(obj) and (code is None or obj["error"]["code"] == code),
              "%s: %d %s (got %d %s)" % (name, status, code or "", st, json.dumps(obj)[:300]))
    st, obj, _ = raw(args, "/v1/nothing")
    check(st == 404 and error_shape(obj), "unknown path: 404")
    st, obj, hdrs = raw(args, "/v1/chat/completions", method="GET")
    check(st == 405 and error_shape(obj) and hdrs.get("Allow") == "POST", "GET on chat completions: 405 with Allow")
    big = b"{\"messages\": \"" + b"x" * (args.max_body_mb * 1048576 + 10) + b"\"}"
    st, obj, _ = raw(args, "/v1/chat/completions", big)
    check(st == 413 and error_shape(obj), "body over --max-body-mb: 413")
    # unknown fields are ignored, as OpenAI does
    st, obj, _ = raw(args, "/v1/chat/completions", {"model": m, "messages": ok_msgs, "max_tokens": 2, "frobnicate": 1,
                                                     "user": "u1", "metadata": {"a": "b"}})
    check(st == 200 and obj["object"] == "chat.completion", "unknown fields ignored")


def c_metrics(args):
    from prometheus_client.parser import text_string_to_metric_families
    # one request first, so every figure has moved
    s = client(args).chat.completions.create(model=args.model, messages=[user_msg(data_url(args.image), args.prompt)],
                                             stream=True, **GREEDY)
    for _ in s:
        pass
    st, text, hdrs = raw(args, "/metrics", key=False)
    check(st == 200 and hdrs.get("Content-Type", "").startswith("text/plain"), "/metrics answers text/plain")
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    want = {"vlm_http_requests": "counter", "vlm_time_to_first_token_seconds": "histogram",
            "vlm_inter_token_latency_seconds": "histogram", "vlm_e2e_request_latency_seconds": "histogram",
            "vlm_prompt_tokens": "counter", "vlm_generation_tokens": "counter", "vlm_requests_running": "gauge",
            "vlm_requests_waiting": "gauge", "vlm_kv_cache_usage_ratio": "gauge", "vlm_prefix_cache_hit_ratio": "gauge",
            "vlm_image_cache_hit_ratio": "gauge", "process_resident_memory_bytes": "gauge",
            "vlm_expert_routed_tokens": "counter"}
    for name, typ in want.items():
        check(name in fams and fams[name].type == typ, "metric %s (%s)" % (name, typ))

    def value(fam, sample, **labels):
        for s in fams[fam].samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
        return None
    check((value("vlm_http_requests", "vlm_http_requests_total", endpoint="/v1/chat/completions", status="200") or 0) >= 1,
          "chat completions counted by status")
    check((value("vlm_time_to_first_token_seconds", "vlm_time_to_first_token_seconds_count") or 0) >= 1, "TTFT observed")
    check((value("vlm_inter_token_latency_seconds", "vlm_inter_token_latency_seconds_count") or 0) >= 1, "ITL observed")
    check((value("vlm_e2e_request_latency_seconds", "vlm_e2e_request_latency_seconds_count") or 0) >= 1, "e2e observed")
    check((value("vlm_generation_tokens", "vlm_generation_tokens_total") or 0) >= 16, "generated tokens counted")
    check((value("process_resident_memory_bytes", "process_resident_memory_bytes") or 0) > 1e6, "RSS exported")
    experts = [s for s in fams["vlm_expert_routed_tokens"].samples]
    layers = {s.labels["layer"] for s in experts}
    check(len(experts) > 1 and len(layers) >= 1 and sum(s.value for s in experts) > 0,
          "per-expert routed tokens: %d series over %d MoE layers, %d tokens" % (len(experts), len(layers),
                                                                                 sum(s.value for s in experts)))


def c_busy(args):
    """Many requests at once against --max-running 1 --max-waiting 1: some get 429 with Retry-After, none fails."""
    import concurrent.futures
    body = {"model": args.model, "messages": [{"role": "user", "content": "Count to a hundred."}], "max_tokens": 200,
            "extra": 1, "ignore_eos": True}
    with concurrent.futures.ThreadPoolExecutor(12) as ex:
        res = list(ex.map(lambda _: raw(args, "/v1/chat/completions", body), range(12)))
    codes = sorted(st for st, _, _ in res)
    check(set(codes) <= {200, 429}, "only 200 and 429 (got %r)" % codes)
    check(codes.count(429) >= 1 and codes.count(200) >= 1, "some refused with 429, some answered (%r)" % codes)
    for st, obj, hdrs in res:
        if st == 429:
            check(error_shape(obj) and hdrs.get("Retry-After") is not None, "429 carries Retry-After and an error object")
            break


CHECKS = {n[2:]: f for n, f in globals().items() if n.startswith("c_")}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("check", choices=sorted(CHECKS))
    p.add_argument("--base", required=True)
    p.add_argument("--key", default="")
    p.add_argument("--model", required=True)
    p.add_argument("--image", default="")
    p.add_argument("--prompt", default="Describe this image.")
    p.add_argument("--expect", default="")
    p.add_argument("--max-body-mb", type=int, default=20)
    args = p.parse_args()
    args.expected = open(args.expect, encoding="utf-8").read() if args.expect else ""
    try:
        CHECKS[args.check](args)
    except SystemExit:
        raise
    except Exception as e:  # a client exception is a failed check, with its story
        import traceback
        traceback.print_exc()
        fail("%s: %s: %s" % (args.check, type(e).__name__, e))
    print("PASS " + args.check, flush=True)


if __name__ == "__main__":
    main()

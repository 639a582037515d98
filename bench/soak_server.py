#!/usr/bin/env python3
"""Soak test of `vlm serve`: N concurrent clients for a while, mixing valid requests (streamed and not) with
hostile ones (malformed JSON, a 50 MB body, bad base64, a pixel bomb, refused URLs, clients that disconnect
mid-stream, slow clients reading one byte a second). Standard library only (asyncio + raw HTTP/1.1).

    bench/soak_server.py --spawn build/vlm --model-dir tests/data/golden/tiny-mha --clients 32 --duration 60
    bench/soak_server.py --base http://127.0.0.1:8080 --model deepseek-vl2-tiny --clients 32 --duration 1800

Reports requests per minute, failed valid requests, hostile requests answered as expected, whether the server
stayed up, its RSS at start / after warm-up / at the end (from /metrics), and whether the running count went
back to 0 after the disconnects. Exit status 0 when no valid request failed, the server never died, and the
running count returned to 0."""
import argparse
import asyncio
import base64
import json
import os
import random
import re
import signal
import struct
import subprocess
import sys
import time
import urllib.parse
import zlib


def png_bomb(w=100000, h=100000):
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


class Soak:
    def __init__(self, a):
        self.a = a
        u = urllib.parse.urlparse(a.base)
        self.host, self.port = u.hostname, u.port or 80
        with open(a.image, "rb") as f:
            self.image_url = "data:image/png;base64," + base64.b64encode(f.read()).decode()
        self.stats = {}
        self.fail_samples = []
        self.latencies = []

    def count(self, kind, ok):
        s = self.stats.setdefault(kind, [0, 0])
        s[0 if ok else 1] += 1

    async def request(self, method, path, body=b"", read=True, slow=False, disconnect_after=None, timeout=600):
        """(status, headers, body bytes) or raises. disconnect_after: close after this many body bytes."""
        r, w = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 30)
        try:
            head = "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n" % (
                method, path, self.host, len(body))
            if self.a.key:
                head += "Authorization: Bearer %s\r\n" % self.a.key
            w.write(head.encode() + b"\r\n")
            for i in range(0, len(body), 1 << 20):
                w.write(body[i:i + (1 << 20)])
                await w.drain()
            if not read:
                return None, {}, b""
            status_line = await asyncio.wait_for(r.readline(), timeout)
            status = int(status_line.split()[1])
            headers = {}
            while True:
                line = await asyncio.wait_for(r.readline(), timeout)
                if line in (b"\r\n", b""):
                    break
                k, _, v = line.decode().partition(":")
                headers[k.strip().lower()] = v.strip()
            data = b""
            while True:
                if slow:
                    chunk = await asyncio.wait_for(r.read(1), timeout)
                    await asyncio.sleep(1.0)
                else:
                    chunk = await asyncio.wait_for(r.read(65536), timeout)
                if not chunk:
                    break
                data += chunk
                if disconnect_after is not None and len(data) >= disconnect_after:
                    break
                if slow and len(data) >= self.a.slow_bytes:
                    break
            return status, headers, data
        finally:
            w.close()

    def chat_body(self, stream, max_tokens=None, **extra):
        b = {"model": self.a.model, "max_tokens": max_tokens or self.a.max_tokens, "stream": stream,
             "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": self.image_url}},
                                                       {"type": "text", "text": random.choice(
                                                           ["Describe this image.", "What is in it?", "Any text?"])}]}]}
        b.update(extra)
        return json.dumps(b).encode()

    @staticmethod
    def dechunk(data):
        """The body of a chunked transfer encoding."""
        out, i = b"", 0
        while i < len(data):
            j = data.find(b"\r\n", i)
            if j < 0:
                break
            n = int(data[i:j].split(b";")[0], 16)
            if n == 0:
                break
            out += data[j + 2:j + 2 + n]
            i = j + 2 + n + 2
        return out

    async def valid(self, stream):
        t = time.time()
        kind = "valid_stream" if stream else "valid_json"
        try:
            st, h, data = await self.request("POST", "/v1/chat/completions", self.chat_body(stream))
            if h.get("transfer-encoding") == "chunked":
                data = self.dechunk(data)
            ok = st == 200
            if ok and stream:
                events = [e[6:] for e in data.decode().split("\n\n") if e.startswith("data: ")]
                ok = bool(events) and events[-1] == "[DONE]" and any('"finish_reason":"' in e for e in events)
            elif ok:
                ok = json.loads(data)["choices"][0]["finish_reason"] in ("stop", "length")
            if not ok and len(self.fail_samples) < 5:
                self.fail_samples.append("%s: %s ...%s" % (kind, st, data[-400:]))
        except Exception as e:  # noqa
            ok = False
            if len(self.fail_samples) < 5:
                self.fail_samples.append("%s: %r" % (kind, e))
        self.count(kind, ok)
        if ok:
            self.latencies.append(time.time() - t)

    async def expect_status(self, kind, body, want, path="/v1/chat/completions"):
        try:
            st, _, data = await self.request("POST", path, body)
            ok = st in want
        except (ConnectionResetError, BrokenPipeError) as e:
            ok = 413 in want  # a huge body may be cut off once the 413 is out
            st, data = repr(e), b""
        except Exception as e:  # noqa
            ok, st, data = False, repr(e), b""
        if not ok and len(self.fail_samples) < 5:
            self.fail_samples.append("%s: %s %s" % (kind, st, data[:200]))
        self.count(kind, ok)

    async def hostile(self):
        k = random.randrange(8)
        m = self.a.model
        if k == 0:
            await self.expect_status("malformed_json", b'{"model": "' + m.encode() + b'", "messages": [', {400})
        elif k == 1:
            await self.expect_status("body_50mb", b"{\"x\":\"" + b"a" * (50 << 20) + b"\"}", {413})
        elif k == 2:
            await self.expect_status("bad_base64", self.chat_body(False, messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@not-base64@@@"}}]}]), {400})
        elif k == 3:
            await self.expect_status("pixel_bomb", self.chat_body(False, messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(png_bomb()).decode()}}]}]),
                {400})
        elif k == 4:
            url = random.choice(["http://127.0.0.1:1/a.png", "http://169.254.169.254/latest/meta-data/", "http://10.1.2.3/x.png",
                                 "file:///etc/passwd"])
            await self.expect_status("refused_url", self.chat_body(False, messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": url}}]}]), {400})
        elif k == 5 or k == 6:
            try:  # disconnect mid-stream
                await self.request("POST", "/v1/chat/completions", self.chat_body(True, max_tokens=2000, ignore_eos=True),
                                   disconnect_after=random.randint(200, 2000))
                self.count("disconnect_mid_stream", True)
            except Exception:  # noqa
                self.count("disconnect_mid_stream", True)
        else:
            try:
                st, _, data = await self.request("POST", "/v1/chat/completions", self.chat_body(True), slow=True)
                self.count("slow_reader", st == 200)
            except Exception as e:  # noqa
                self.count("slow_reader", False)
                if len(self.fail_samples) < 5:
                    self.fail_samples.append("slow_reader: %r" % e)

    async def client(self, i, deadline):
        rnd = random.Random(i)
        while time.time() < deadline:
            x = rnd.random()
            if x < self.a.hostile_share:
                await self.hostile()
            else:
                await self.valid(stream=rnd.random() < 0.5)

    async def one_stream(self, prompt, max_tokens):
        """Arrival times of the content pieces of one streamed request (read as they come) and its usage.
        With --llama-ids the prompt is a list of token ids sent to llama-server's /completion (its stream has
        one event per generated token; a model converted without a tokenizer cannot take text)."""
        if self.a.llama_ids:
            path = "/completion"
            body = {"prompt": prompt, "n_predict": max_tokens, "ignore_eos": True, "stream": True, "cache_prompt": False}
        else:
            path = "/v1/chat/completions"
            body = {"model": self.a.model, "max_tokens": max_tokens, "ignore_eos": True, "stream": True,
                    "stream_options": {"include_usage": True}, "messages": [{"role": "user", "content": prompt}]}
        body = json.dumps(body).encode()
        r, w = await asyncio.open_connection(self.host, self.port)
        head = "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (path, len(body))
        if self.a.key:
            head += "Authorization: Bearer %s\r\n" % self.a.key
        w.write(head.encode() + b"\r\n" + body)
        times, usage, buf = [], None, b""
        while True:
            chunk = await r.read(65536)
            if not chunk:
                break
            now = time.time()
            buf += chunk
            while b"\n\n" in buf:
                ev, buf = buf.split(b"\n\n", 1)
                i = ev.find(b"data: ")
                if i < 0:
                    continue
                data = ev[i + 6:]
                if data.startswith(b"[DONE]"):
                    w.close()
                    return times, usage
                o = json.loads(data)
                if self.a.llama_ids:
                    if o.get("stop"):
                        w.close()
                        return times, {"completion_tokens": o.get("tokens_predicted", len(times)),
                                       "prompt_tokens": o.get("tokens_evaluated", len(prompt))}
                    times.append(now)
                    continue
                if o.get("usage"):
                    usage = o["usage"]
                for c in o.get("choices", []):
                    if c.get("delta", {}).get("content"):
                        times.append(now)
        w.close()
        return times, usage

    async def throughput(self, n, reps):
        """n streamed requests at once, each a distinct ~128-token prompt and 64 new tokens (as `vlm bench
        --concurrency n`): aggregate decode tok/s while all n decode together, and the gaps between pieces.
        The window runs from the moment every stream has its first piece to the first stream's last piece;
        pieces in it are counted and scaled by the streams' completion tokens per piece (the detokenizer may
        hold a token back until the next completes a character), so the figure is tokens per second."""
        words = ["alpha", "bravo", "delta", "echo", "golf", "hotel", "india", "kilo", "lima", "mike", "oscar", "papa"]
        out = []
        for rep in range(reps):
            if self.a.llama_ids:  # 128 random ordinary token ids (past the 259 special and byte tokens)
                prompts = [[random.Random(rep * 1000 + i).randrange(300, 100000) for _ in range(128)] for i in range(n)]
            else:
                prompts = [" ".join(random.Random(rep * 1000 + i).choice(words) for _ in range(23)) for i in range(n)]
            res = await asyncio.gather(*[self.one_stream(p, 64) for p in prompts])
            if any(len(t) < 2 or not u for t, u in res):
                out.append({"n": n, "error": "a stream gave fewer than 2 text pieces or no usage",
                            "pieces": [len(t) for t, _ in res]})
                continue
            t_all = max(t[0] for t, _ in res)
            t_end = min(t[-1] for t, _ in res)
            in_window = sum(sum(1 for x in t[1:] if t_all < x <= t_end) for t, _ in res)
            tokens_per_piece = sum(u["completion_tokens"] for _, u in res) / sum(len(t) for t, _ in res)
            gaps = sorted(b - a for t, _ in res for a, b in zip(t, t[1:]))
            out.append({"n": n, "aggregate_decode_tok_s": round(in_window * tokens_per_piece / (t_end - t_all), 1) if t_end > t_all else None,
                        "tokens_per_piece": round(tokens_per_piece, 3),
                        "pieces_per_request": [len(t) for t, _ in res][:3],
                        "completion_tokens": [u["completion_tokens"] for _, u in res][:3],
                        "prompt_tokens": [u["prompt_tokens"] for _, u in res][:3],
                        "itl_p50_ms": round(gaps[len(gaps) // 2] * 1e3, 2), "itl_p99_ms": round(gaps[int(len(gaps) * 0.99)] * 1e3, 2)})
        return out

    async def metrics(self):
        st, h, data = await self.request("GET", "/metrics")
        if h.get("transfer-encoding") == "chunked":
            data = self.dechunk(data)
        vals = {}
        for line in data.decode().splitlines():
            m = re.match(r"^([a-z_]+(?:\{[^}]*\})?) ([0-9.eE+-]+)$", line)
            if m:
                vals[m.group(1)] = float(m.group(2))
        return vals

    async def run(self):
        m0 = await self.metrics()
        t0 = time.time()
        warm = asyncio.create_task(asyncio.sleep(min(self.a.warmup, self.a.duration)))
        tasks = [asyncio.create_task(self.client(i, t0 + self.a.duration)) for i in range(self.a.clients)]
        await warm
        m_warm = await self.metrics()
        await asyncio.gather(*tasks)
        elapsed = time.time() - t0
        running = None
        for _ in range(60):
            m1 = await self.metrics()
            running = m1.get("vlm_requests_running", -1)
            if running == 0 and m1.get("vlm_requests_waiting", 0) == 0:
                break
            await asyncio.sleep(1)
        return m0, m_warm, m1, elapsed, running


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", help="a running server, e.g. http://127.0.0.1:8080")
    p.add_argument("--spawn", help="start this vlm binary's `serve` instead (with --model-dir)")
    p.add_argument("--model-dir", help="model folder for --spawn")
    p.add_argument("--serve-args", default="", help="more `vlm serve` options for --spawn")
    p.add_argument("--model", default=None, help="model id (default: the folder name)")
    p.add_argument("--key", default=os.environ.get("VLM_API_KEY", ""))
    p.add_argument("--image", default=os.path.join(os.path.dirname(__file__), "..", "tests/data/golden/inputs/case1_640x480_png/image.png"))
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--warmup", type=float, default=20, help="seconds before the warm RSS is read")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--hostile-share", type=float, default=0.3)
    p.add_argument("--slow-bytes", type=int, default=20, help="bytes a slow client reads, one a second, before leaving")
    p.add_argument("--throughput", type=int, default=0, metavar="N",
                   help="instead of the soak: N streamed requests at once (128-token prompts, 64 new tokens), as "
                        "`vlm bench --concurrency N`, --reps times")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--llama-ids", action="store_true",
                   help="with --throughput against llama-server: 128 random token ids per prompt to its /completion")
    a = p.parse_args()
    proc = None
    if a.spawn:
        cmd = [a.spawn, "serve", "-m", a.model_dir, "--port", "0"] + a.serve_args.split()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        line = proc.stdout.readline()
        mm = re.match(r"listening on (http://\S+)", line)
        if not mm:
            sys.exit("soak: the server did not start: %r" % line)
        a.base = mm.group(1)
    if not a.base:
        sys.exit("soak: give --base or --spawn")
    if not a.model:
        a.model = os.path.basename(os.path.normpath(a.model_dir)) if a.model_dir else "tiny-mha"
    try:
        run(a, proc)
    finally:
        if proc and proc.poll() is None:
            proc.kill()


def run(a, proc):
    s = Soak(a)
    if a.throughput:
        print(json.dumps(asyncio.run(s.throughput(a.throughput, a.reps))))
        if proc:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)
        return
    m0, mw, m1, elapsed, running = asyncio.run(s.run())
    alive = proc is None or proc.poll() is None
    valid_ok = sum(s.stats.get(k, [0, 0])[0] for k in ("valid_stream", "valid_json"))
    valid_bad = sum(s.stats.get(k, [0, 0])[1] for k in ("valid_stream", "valid_json"))
    total = sum(v[0] + v[1] for v in s.stats.values())
    rss = [m.get("process_resident_memory_bytes", 0) / 2**20 for m in (m0, mw, m1)]
    lat = sorted(s.latencies)
    report = {
        "clients": a.clients, "seconds": round(elapsed, 1), "requests": total,
        "requests_per_minute": round(total / elapsed * 60, 1), "valid_ok": valid_ok, "valid_failed": valid_bad,
        "valid_latency_p50_s": round(lat[len(lat) // 2], 3) if lat else None,
        "valid_latency_p95_s": round(lat[int(len(lat) * 0.95)], 3) if lat else None,
        "generated_tokens": m1.get("vlm_generation_tokens_total", 0) - m0.get("vlm_generation_tokens_total", 0),
        "by_kind_ok_failed": s.stats, "server_alive": alive,
        "rss_mib_start_warm_end": [round(x, 1) for x in rss],
        "rss_growth_after_warmup_pct": round((rss[2] / rss[1] - 1) * 100, 2) if rss[1] else None,
        "running_after": running, "client_disconnects": m1.get("vlm_client_disconnects_total"),
        "failure_samples": s.fail_samples,
    }
    report["generated_tok_s"] = round(report["generated_tokens"] / elapsed, 1)
    print(json.dumps(report, indent=1))
    if proc:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = -9
        print("server exit status after SIGTERM: %d" % rc)
        alive = alive and rc == 0
    if valid_bad or not alive or running != 0:
        sys.exit(1)


if __name__ == "__main__":
    main()

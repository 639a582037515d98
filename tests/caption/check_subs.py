#!/usr/bin/env python3
"""Reads a video's captions back with the PyPI parsers and checks them against its JSONL.

usage: check_subs.py STEM DURATION_S
  STEM.srt  parsed with `srt` (srt.parse, strict),
  STEM.vtt  parsed with `webvtt-py` (webvtt.read),
  STEM.jsonl one record per segment (the summary line, if any, is skipped).
Checks: as many cues as segments, the same start/end (ms), in order, no overlap, none past DURATION_S,
and the cue text is the caption on one line (white space collapsed; VTT's &amp; &lt; &gt; undone).
Exit status 0 when all hold; otherwise one line per problem on stderr and status 1."""
import html
import json
import re
import sys

import srt
import webvtt


def one_line(s):
    s = re.sub(r"[\s\u0000-\u001f\u007f-\u00a0\u2000-\u200b\u2028\u2029\u3000\ufeff]+", " ", s).strip()
    return s if s else "(no caption)"


def main():
    stem, duration = sys.argv[1], float(sys.argv[2])
    dur_ms = int(duration * 1000 + 1e-6)
    problems = []
    recs = []
    with open(stem + ".jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if "segment" in r:
                recs.append(r)
    with open(stem + ".srt", encoding="utf-8") as f:
        subs = list(srt.parse(f.read(), ignore_errors=False))
    vtt = webvtt.read(stem + ".vtt")
    cues = list(vtt)
    if len(subs) != len(recs):
        problems.append(f"srt: {len(subs)} cues, jsonl: {len(recs)} segments")
    if len(cues) != len(recs):
        problems.append(f"vtt: {len(cues)} cues, jsonl: {len(recs)} segments")
    prev_end = 0
    for i, r in enumerate(recs):
        start, end = round(r["start"] * 1000), round(r["end"] * 1000)
        if r["segment"] != i:
            problems.append(f"jsonl line {i}: segment {r['segment']}")
        if not start < end:
            problems.append(f"segment {i}: start {start} ms not before end {end} ms")
        if start < prev_end:
            problems.append(f"segment {i}: starts at {start} ms, before the previous end {prev_end} ms")
        if end > dur_ms:
            problems.append(f"segment {i}: ends at {end} ms, past the duration {dur_ms} ms")
        prev_end = end
        want = one_line(r["caption"])
        if i < len(subs):
            s = subs[i]
            ss, se = int(s.start.total_seconds() * 1000 + 0.5), int(s.end.total_seconds() * 1000 + 0.5)
            if (ss, se) != (start, end):
                problems.append(f"srt cue {i}: {ss}-{se} ms, jsonl {start}-{end} ms")
            if s.content != want:
                problems.append(f"srt cue {i}: text {s.content!r}, want {want!r}")
        if i < len(cues):
            c = cues[i]
            cs, ce = int(round(_secs(c.start) * 1000)), int(round(_secs(c.end) * 1000))
            if (cs, ce) != (start, end):
                problems.append(f"vtt cue {i}: {cs}-{ce} ms, jsonl {start}-{end} ms")
            text = html.unescape(c.text)
            if text != want:
                problems.append(f"vtt cue {i}: text {text!r}, want {want!r}")
    for p in problems:
        print(p, file=sys.stderr)
    print(f"{stem}: {len(recs)} segments, srt {len(subs)} cues, vtt {len(cues)} cues, "
          f"{'ok' if not problems else str(len(problems)) + ' problems'}")
    return 1 if problems else 0


def _secs(t):
    h, m, s = t.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


if __name__ == "__main__":
    sys.exit(main())

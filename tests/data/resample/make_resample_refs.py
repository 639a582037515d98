#!/usr/bin/env python3
"""Reference outputs of Pillow 9.4.0's Image.resize(size, Image.BICUBIC) for the
resampler test.  Run with Pillow 9.4.0 (python3 -m venv /tmp/pil94 &&
/tmp/pil94/bin/pip install pillow==9.4.0), from anywhere:
    /tmp/pil94/bin/python tests/data/resample/make_resample_refs.py
The source image is computed (same formula in tests/test_preprocess.cc):
    R = 250 if (x // 3 + y // 2) % 2 else 5      hard edges: overshoot + clipping
    G = (x * 255) // (W - 1)                    horizontal ramp
    B = (x * 131 + y * 71 + x * y * 17) % 256   busy texture
For each target size it writes src<W>x<H>_to_<w>x<h>.rgb (raw RGB bytes), and for
each pad size pad_src37x23_to_<w>x<h>.rgb = ImageOps.pad(src, (w, h), color=(127,)*3)
(the offsets there include Python's half-to-even rounding: 13x13 -> y0 = round(2.5) = 2,
31x10 -> x0 = round(7.5) = 8, 29x10 -> x0 = round(6.5) = 6)."""
import os

from PIL import Image, ImageOps

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = {
    (37, 23): [(17, 11), (5, 3), (1, 1), (2, 40), (80, 23), (37, 50), (61, 47), (100, 9), (36, 22), (38, 24)],
    (9, 7): [(64, 50), (3, 31), (9, 1)],
}


def source(w, h):
    im = Image.new("RGB", (w, h))
    im.putdata([
        (250 if (x // 3 + y // 2) % 2 else 5, (x * 255) // (w - 1), (x * 131 + y * 71 + x * y * 17) % 256)
        for y in range(h) for x in range(w)
    ])
    return im


for (sw, sh), targets in CASES.items():
    src = source(sw, sh)
    for (tw, th) in targets:
        out = src.resize((tw, th), Image.BICUBIC)
        name = "src%dx%d_to_%dx%d.rgb" % (sw, sh, tw, th)
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(out.tobytes())
        print(name)

PADS = [(13, 13), (31, 10), (29, 10), (10, 30), (74, 46), (37, 23), (16, 16)]
src = source(37, 23)
for (tw, th) in PADS:
    out = ImageOps.pad(src, (tw, th), color=(127, 127, 127))
    name = "pad_src37x23_to_%dx%d.rgb" % (tw, th)
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(out.tobytes())
    print(name)

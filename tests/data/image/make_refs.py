#!/usr/bin/env python3
"""Regenerates the small decoder test files in this folder and PIL's RGB bytes for them.

Run with Pillow 9.4.0 (the version the official DeepSeek-VL2 processor was run with):
    python3 -m venv /tmp/pil94 && /tmp/pil94/bin/pip install pillow==9.4.0 numpy
    /tmp/pil94/bin/python tests/data/image/make_refs.py
For every NAME.png / NAME.jpg it writes NAME.rgb = Image.open(f).convert("RGB").tobytes()
and lists "NAME.ext width height" in manifest.txt.  PNGs are written by the tiny
encoder below (any colour type / bit depth, optional tRNS, PLTE, Adam7), JPEGs by PIL.
ycck.jpg is not made here (PIL cannot write YCCK): it was made once with libjpeg
(jpeg_set_colorspace(JCS_YCCK) from CMYK input, see gen_ycck.c); its .rgb is PIL's.
It also prints the FNV-1a 64 hash of PIL's RGB bytes for the golden PNG inputs.
"""
import glob, os, struct, sys, zlib

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
W, H = 13, 7


def chunk(tag, data):
    c = struct.pack(">I", len(data)) + tag + data
    return c + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def pack_row(samples, depth):
    """samples: 1-D list of ints (already interleaved channels)."""
    if depth == 8:
        return bytes(samples)
    if depth == 16:
        return b"".join(struct.pack(">H", s) for s in samples)
    per = 8 // depth
    out = bytearray()
    for i in range(0, len(samples), per):
        b = 0
        grp = samples[i:i + per]
        for j in range(per):
            v = grp[j] if j < len(grp) else 0
            b |= v << (8 - depth * (j + 1))
        out.append(b)
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png(path, pix, depth, ctype, plte=None, trns=None, interlace=False):
    """pix: array [H, W, C] of ints."""
    h, w, c = pix.shape
    raw = bytearray()
    if not interlace:
        for y in range(h):
            raw += b"\0" + pack_row([int(v) for v in pix[y].reshape(-1)], depth)
    else:
        for x0, y0, dx, dy in ADAM7:
            sub = pix[y0::dy, x0::dx]
            if sub.shape[0] == 0 or sub.shape[1] == 0:
                continue
            for y in range(sub.shape[0]):
                raw += b"\0" + pack_row([int(v) for v in sub[y].reshape(-1)], depth)
    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 1 if interlace else 0))
    if plte is not None:
        png += chunk(b"PLTE", bytes(plte))
    if trns is not None:
        png += chunk(b"tRNS", bytes(trns))
    png += chunk(b"IDAT", zlib.compress(bytes(raw), 9))
    png += chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def pattern(c, maxv, seed):
    rng = np.random.RandomState(seed)
    p = rng.randint(0, maxv + 1, size=(H, W, c))
    p[0, 0] = 0
    p[0, 1] = maxv  # make sure both extremes occur
    return p


def make_pngs():
    write_png("gray1.png", pattern(1, 1, 1), 1, 0)
    write_png("gray2.png", pattern(1, 3, 2), 2, 0)
    write_png("gray4.png", pattern(1, 15, 3), 4, 0)
    write_png("gray8.png", pattern(1, 255, 4), 8, 0)
    write_png("gray8_trns.png", pattern(1, 255, 5), 8, 0, trns=struct.pack(">H", 17))
    # 16-bit gray: PIL 9.4 opens it as mode "I" and convert("RGB") clips to 0..255,
    # so use mostly small values to see both the pass-through and the clipping.
    g16 = pattern(1, 400, 6)
    g16[1, :, 0] = [0, 1, 127, 128, 254, 255, 256, 257, 1000, 32767, 32768, 65534, 65535]
    write_png("gray16.png", g16, 16, 0)
    write_png("rgb8.png", pattern(3, 255, 7), 8, 2)
    write_png("rgb8_trns.png", pattern(3, 255, 8), 8, 2, trns=struct.pack(">HHH", 1, 2, 3))
    write_png("rgb16.png", pattern(3, 65535, 9), 16, 2)
    write_png("rgba8.png", pattern(4, 255, 10), 8, 6)
    write_png("rgba16.png", pattern(4, 65535, 11), 16, 6)
    write_png("graya8.png", pattern(2, 255, 12), 8, 4)
    write_png("graya16.png", pattern(2, 65535, 13), 16, 4)
    rng = np.random.RandomState(14)
    for depth in (1, 2, 4, 8):
        n = 1 << depth if depth < 8 else 200
        plte = rng.randint(0, 256, size=3 * n).tolist()
        write_png("pal%d.png" % depth, pattern(1, n - 1, 20 + depth), depth, 3, plte=plte)
    plte = rng.randint(0, 256, size=3 * 16).tolist()
    write_png("pal8_trns.png", pattern(1, 15, 30), 8, 3, plte=plte, trns=list(range(0, 160, 10)))
    # Indexes past the end of PLTE (invalid but common): PIL shows them as grey (i, i, i).
    plte = rng.randint(0, 256, size=3 * 4).tolist()
    write_png("pal8_short.png", pattern(1, 9, 31), 8, 3, plte=plte)
    write_png("rgb8_adam7.png", pattern(3, 255, 40), 8, 2, interlace=True)
    write_png("gray2_adam7.png", pattern(1, 3, 41), 2, 0, interlace=True)


def make_jpegs():
    yy, xx = np.mgrid[0:H * 3, 0:W * 3]
    img = np.stack([(xx * 7 + yy * 3) % 256, (yy * 11) % 256, ((xx - yy) * 5) % 256], -1).astype(np.uint8)
    img[5:12, 8:20] = [250, 20, 30]
    im = Image.fromarray(img, "RGB")  # 39x21: odd sizes exercise the upsampling edges
    im.save("rgb420.jpg", quality=90)
    im.save("rgb444.jpg", quality=90, subsampling=0)
    im.save("rgb422.jpg", quality=90, subsampling=1)
    im.save("rgb_prog.jpg", quality=85, progressive=True)
    im.convert("L").save("gray.jpg", quality=90)
    im.convert("CMYK").save("cmyk.jpg", quality=90)


def main():
    os.chdir(HERE)
    make_pngs()
    make_jpegs()
    names = sorted(glob.glob("*.png") + glob.glob("*.jpg"))
    with open("manifest.txt", "w") as m:
        m.write("# file width height: NAME.rgb holds Pillow 9.4.0 Image.open(f).convert('RGB') bytes\n")
        for n in names:
            im = Image.open(n)
            rgb = im.convert("RGB")
            open(os.path.splitext(n)[0] + ".rgb", "wb").write(rgb.tobytes())
            m.write("%s %d %d\n" % (n, rgb.width, rgb.height))
            print(n, im.mode, im.size)
    golden = os.path.join(HERE, "..", "golden", "inputs")
    for p in sorted(glob.glob(os.path.join(golden, "*", "*.png"))):
        b = Image.open(p).convert("RGB").tobytes()
        h = 0xCBF29CE484222325
        for byte in b:
            h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
        print("golden %s 0x%016x" % (os.path.relpath(p, golden), h))


if __name__ == "__main__":
    sys.exit(main())

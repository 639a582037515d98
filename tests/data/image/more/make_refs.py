#!/usr/bin/env python3
"""Regenerates the non-PNG/JPEG decoder test files in this folder and PIL's RGB bytes for them.

Run with Pillow 9.4.0 (the version the official DeepSeek-VL2 processor used):
    python3 -m venv /tmp/pil94 && /tmp/pil94/bin/pip install pillow==9.4.0 numpy
    /tmp/pil94/bin/python tests/data/image/more/make_refs.py
Pillow 9.4.0 cannot read AVIF; the AVIF references come from a newer Pillow with AVIF
support (11.3+; these were made with 13.0.0, i.e. libavif + libyuv), the AVIF files
themselves from the ffmpeg CLI (libaom):
    python3 tests/data/image/more/make_refs.py --avif
For every sample it writes NAME.rgb = Image.open(f).convert("RGB").tobytes() and a line
"NAME width height tolerance" in manifest.txt (tolerance 0 = must be byte-exact).
Files PIL cannot write are built here byte by byte (BMP variants, GIF frame offsets,
TIFF with associated alpha), or with the ffmpeg CLI (16-bit RGB TIFF).
"""
import io, os, struct, subprocess, sys

import numpy as np
from PIL import Image, features

HERE = os.path.dirname(os.path.abspath(__file__))
W, H = 39, 21
entries = []  # (name, tolerance)


def rgb_pattern(w=W, h=H, seed=1):
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 7 + yy * 3) % 256, (yy * 11) % 256, ((xx - yy) * 5) % 256], -1)
    rng = np.random.RandomState(seed)
    img[h // 3:h // 2, w // 4:w // 2] = rng.randint(0, 256, size=3)
    img[0, 0] = 0
    img[0, -1] = 255
    return img.astype(np.uint8)


def alpha_pattern(w=W, h=H):
    yy, xx = np.mgrid[0:h, 0:w]
    a = ((xx * 13 + yy * 29) % 256).astype(np.uint8)
    a[1, :5] = 0
    a[2, :5] = 255
    return a


def save(im, name, tol=0, **kw):
    im.save(name, **kw)
    entries.append((name, tol))


def add(name, data, tol=0):
    with open(name, "wb") as f:
        f.write(data)
    entries.append((name, tol))


# ---------------------------------------------------------------- WebP
def make_webp():
    rgb = Image.fromarray(rgb_pattern(), "RGB")
    rgba = Image.fromarray(np.dstack([rgb_pattern(seed=2), alpha_pattern()]), "RGBA")
    save(rgb, "webp_lossy.webp", quality=80)
    save(rgba, "webp_lossy_alpha.webp", quality=70)
    save(rgb, "webp_lossless.webp", lossless=True)
    save(rgba, "webp_lossless_alpha.webp", lossless=True, exact=True)
    # 2x2 and 1x1: the chroma upsampler's edge cases
    save(Image.fromarray(rgb_pattern(2, 2, 3), "RGB"), "webp_lossy_2x2.webp", quality=90)
    save(Image.fromarray(rgb_pattern(1, 1, 4), "RGB"), "webp_lossy_1x1.webp", quality=90)
    # animated: the first frame (PIL shows frame 0)
    f0 = Image.fromarray(rgb_pattern(seed=5), "RGB")
    f1 = Image.fromarray(255 - rgb_pattern(seed=6), "RGB")
    save(f0, "webp_anim.webp", save_all=True, append_images=[f1], duration=100, quality=80)
    save(f0, "webp_anim_lossless.webp", save_all=True, append_images=[f1], duration=100,
         lossless=True)


# ---------------------------------------------------------------- GIF
def gif_sub_blocks(data):
    out = b""
    for i in range(0, len(data), 255):
        part = data[i:i + 255]
        out += bytes([len(part)]) + part
    return out + b"\0"


def lzw_encode(indices, min_code_size):
    """Plain GIF LZW (with a clear code when the table fills)."""
    clear, eoi = 1 << min_code_size, (1 << min_code_size) + 1
    codes = []
    size = min_code_size + 1
    table = {bytes([i]): i for i in range(clear)}
    nxt = eoi + 1
    codes.append((clear, size))
    w = b""
    for idx in indices:
        c = bytes([idx])
        if w + c in table:
            w = w + c
            continue
        codes.append((table[w], size))
        if nxt < 4096:
            table[w + c] = nxt
            nxt += 1
            if nxt > (1 << size) and size < 12:
                size += 1
        else:
            codes.append((clear, size))
            table = {bytes([i]): i for i in range(clear)}
            nxt = eoi + 1
            size = min_code_size + 1
        w = c
    if w:
        codes.append((table[w], size))
    codes.append((eoi, size))
    bits = 0
    nbits = 0
    out = bytearray()
    for code, sz in codes:
        bits |= code << nbits
        nbits += sz
        while nbits >= 8:
            out.append(bits & 255)
            bits >>= 8
            nbits -= 8
    if nbits:
        out.append(bits & 255)
    return bytes(out)


def gif(screen, frames, global_pal=None, bg=0):
    """frames: list of dict(x, y, w, h, idx (array h*w), local_pal, trans, interlace)."""
    sw, sh = screen
    flags = 0
    gp = b""
    if global_pal is not None:
        n = len(global_pal) // 3
        bits = max(1, (n - 1).bit_length())
        flags = 0x80 | (bits - 1) | ((bits - 1) << 4)
        gp = bytes(global_pal) + b"\0" * (3 * (1 << bits) - len(global_pal))
    out = b"GIF89a" + struct.pack("<HHBBB", sw, sh, flags, bg, 0) + gp
    for f in frames:
        if f.get("trans") is not None:
            out += b"\x21\xf9\x04" + struct.pack("<BHB", 1, 10, f["trans"]) + b"\0"
        lflags = 0
        lp = b""
        if f.get("local_pal") is not None:
            n = len(f["local_pal"]) // 3
            bits = max(1, (n - 1).bit_length())
            lflags = 0x80 | (bits - 1)
            lp = bytes(f["local_pal"]) + b"\0" * (3 * (1 << bits) - len(f["local_pal"]))
        idx = np.asarray(f["idx"], dtype=np.uint8).reshape(f["h"], f["w"])
        if f.get("interlace"):
            lflags |= 0x40
            rows = list(range(0, f["h"], 8)) + list(range(4, f["h"], 8)) + \
                list(range(2, f["h"], 4)) + list(range(1, f["h"], 2))
            idx = idx[rows]
        out += b"," + struct.pack("<HHHHB", f["x"], f["y"], f["w"], f["h"], lflags) + lp
        mcs = max(2, int(idx.max()).bit_length())
        out += bytes([mcs]) + gif_sub_blocks(lzw_encode(idx.reshape(-1).tolist(), mcs))
    return out + b";"


def make_gif():
    rng = np.random.RandomState(7)
    pal16 = rng.randint(0, 256, size=48).tolist()
    idx = rng.randint(0, 16, size=W * H)
    idx[:4] = [0, 15, 7, 3]
    add("gif_basic.gif", gif((W, H), [dict(x=0, y=0, w=W, h=H, idx=idx)], pal16, bg=5))
    add("gif_trans.gif", gif((W, H), [dict(x=0, y=0, w=W, h=H, idx=idx, trans=7)], pal16, bg=5))
    # first frame smaller than the screen, at an offset, with and without transparency
    sub = rng.randint(0, 16, size=20 * 9)
    add("gif_offset.gif", gif((W, H), [dict(x=6, y=5, w=20, h=9, idx=sub)], pal16, bg=9))
    add("gif_offset_trans.gif",
        gif((W, H), [dict(x=6, y=5, w=20, h=9, idx=sub, trans=3)], pal16, bg=9))
    lpal = rng.randint(0, 256, size=24).tolist()  # 8 colours
    idx8 = rng.randint(0, 8, size=W * H)
    add("gif_local_palette.gif", gif((W, H), [dict(x=0, y=0, w=W, h=H, idx=idx8,
                                                   local_pal=lpal)], pal16))
    add("gif_interlaced.gif", gif((W, H), [dict(x=0, y=0, w=W, h=H, idx=idx, interlace=True)],
                                  pal16))
    # animated: only frame 0 counts
    idx2 = (idx + 1) % 16
    add("gif_anim.gif", gif((W, H), [dict(x=0, y=0, w=W, h=H, idx=idx),
                                     dict(x=2, y=2, w=10, h=5, idx=idx2[:50])], pal16))
    # PIL-written ones: grey ("L") and palette images
    im = Image.fromarray(rgb_pattern()[:, :, 0], "L")
    save(im, "gif_pil_gray.gif")
    save(Image.fromarray(rgb_pattern(), "RGB").quantize(37), "gif_pil_quant.gif")


# ---------------------------------------------------------------- BMP
def bmp(width, height, bits, pixel_rows, palette=None, compression=0, masks=None,
        top_down=False, core=False):
    """pixel_rows: bytes of the pixel array (already padded), bottom-up unless top_down."""
    data = pixel_rows
    if core:
        header = struct.pack("<IHHHH", 12, width, height, 1, bits)
        pal = b"".join(bytes(p[2::-1]) for p in palette) if palette else b""
    else:
        extra = b""
        hsize = 40
        if masks is not None:
            hsize = 108  # BITMAPV4HEADER: masks, colour space, endpoints, gamma
            extra = struct.pack("<IIII", *masks) + b"\0" * 52
        header = struct.pack("<IiiHHIIiiII", hsize, width, -height if top_down else height, 1,
                             bits, compression, len(data), 2835, 2835,
                             len(palette) if palette else 0, 0) + extra
        pal = b"".join(bytes(p[2::-1]) + b"\0" for p in palette) if palette else b""
    off = 14 + len(header) + len(pal)
    return b"BM" + struct.pack("<IHHI", off + len(data), 0, 0, off) + header + pal + data


def pad4(b):
    return b + b"\0" * (-len(b) % 4)


def make_bmp():
    img = rgb_pattern()
    Image.fromarray(img, "RGB").save("bmp_rgb24.bmp")
    entries.append(("bmp_rgb24.bmp", 0))
    save(Image.fromarray(rgb_pattern(seed=3), "RGB").quantize(50), "bmp_pal8.bmp")
    save(Image.fromarray(img[:, :, 1], "L"), "bmp_gray8.bmp")
    save(Image.fromarray(img[:, :, 2], "L").convert("1"), "bmp_1bit.bmp")
    rng = np.random.RandomState(9)
    # 4-bit palette
    pal = [tuple(rng.randint(0, 256, size=3)) for _ in range(16)]
    idx = rng.randint(0, 16, size=(H, W))
    rows = b""
    for y in range(H - 1, -1, -1):
        r = bytearray()
        for x in range(0, W, 2):
            hi = idx[y, x]
            lo = idx[y, x + 1] if x + 1 < W else 0
            r.append((hi << 4) | lo)
        rows += pad4(bytes(r))
    add("bmp_pal4.bmp", bmp(W, H, 4, rows, pal))
    # 16-bit 5-5-5 (BI_RGB) and 5-6-5 (BI_BITFIELDS)
    v = rng.randint(0, 65536, size=(H, W))
    v[0, 0], v[0, 1] = 0, 0xFFFF
    rows = b"".join(pad4(struct.pack("<%dH" % W, *[int(t) & 0x7FFF for t in v[y]]))
                    for y in range(H - 1, -1, -1))
    add("bmp_rgb555.bmp", bmp(W, H, 16, rows))
    rows = b"".join(pad4(struct.pack("<%dH" % W, *[int(t) for t in v[y]]))
                    for y in range(H - 1, -1, -1))
    add("bmp_rgb565.bmp", bmp(W, H, 16, rows, compression=3, masks=(0xF800, 0x7E0, 0x1F, 0)))
    # 32-bit BI_RGB (X byte ignored), and BITFIELDS BGRA with alpha
    a = alpha_pattern()
    rows = b"".join(bytes(np.column_stack([img[y, :, ::-1], a[y]]).reshape(-1))
                    for y in range(H - 1, -1, -1))
    add("bmp_rgb32.bmp", bmp(W, H, 32, rows))
    add("bmp_bgra32_bitfields.bmp",
        bmp(W, H, 32, rows, compression=3, masks=(0xFF0000, 0xFF00, 0xFF, 0xFF000000)))
    # top-down 24-bit
    rows = b"".join(pad4(bytes(img[y, :, ::-1].reshape(-1))) for y in range(H))
    add("bmp_topdown.bmp", bmp(W, H, 24, rows, top_down=True))
    # OS/2 BITMAPCOREHEADER, 8-bit palette
    pal = [tuple(rng.randint(0, 256, size=3)) for _ in range(256)]
    idx = rng.randint(0, 256, size=(H, W))
    rows = b"".join(pad4(bytes(idx[y].astype(np.uint8))) for y in range(H - 1, -1, -1))
    add("bmp_core8.bmp", bmp(W, H, 8, rows, pal, core=True))
    # RLE8: runs, an absolute run, end-of-line and end-of-bitmap
    pal = [tuple(rng.randint(0, 256, size=3)) for _ in range(8)]
    rle = b""
    for y in range(H):  # rows bottom-up
        c0 = y % 8
        rle += bytes([10, c0, 5, (c0 + 1) % 8])
        rle += bytes([0, 6]) + bytes([(y + k) % 8 for k in range(6)])  # absolute, even length
        rle += bytes([W - 21, (c0 + 2) % 8])
        rle += b"\0\0"
    rle += b"\0\1"
    add("bmp_rle8.bmp", bmp(W, H, 8, rle, pal, compression=1))


# ---------------------------------------------------------------- TIFF
def make_tiff():
    img = rgb_pattern()
    rgb = Image.fromarray(img, "RGB")
    save(rgb, "tiff_rgb.tif")
    save(rgb, "tiff_rgb_lzw.tif", compression="tiff_lzw")
    save(rgb, "tiff_rgb_deflate.tif", compression="tiff_adobe_deflate")
    save(rgb, "tiff_rgb_packbits.tif", compression="packbits")
    save(Image.fromarray(img[:, :, 0], "L"), "tiff_gray8.tif")
    g16 = (img[:, :, 0].astype(np.uint16) * 3).astype(np.uint16)
    g16[0, :8] = [0, 1, 255, 256, 1000, 32768, 65534, 65535]
    save(Image.fromarray(g16, "I;16"), "tiff_gray16.tif")
    save(Image.fromarray(img[:, :, 1], "L").convert("1"), "tiff_1bit.tif")
    save(Image.fromarray(img[:, :, 1], "L").convert("1"), "tiff_1bit_g4.tif",
         compression="group4")
    save(rgb.quantize(30), "tiff_pal8.tif")
    rgba = Image.fromarray(np.dstack([rgb_pattern(seed=4), alpha_pattern()]), "RGBA")
    save(rgba, "tiff_rgba.tif")
    save(Image.fromarray(rgb_pattern(seed=5), "RGB").convert("CMYK"), "tiff_cmyk.tif", tol=1)
    # associated (premultiplied) alpha: patch ExtraSamples 2 -> 1 in an uncompressed file
    buf = io.BytesIO()
    rgba.save(buf, "TIFF")
    b = bytearray(buf.getvalue())
    ifd = struct.unpack("<I", b[4:8])[0]
    n = struct.unpack("<H", b[ifd:ifd + 2])[0]
    for i in range(n):
        e = ifd + 2 + 12 * i
        tag, typ, cnt = struct.unpack("<HHI", b[e:e + 8])
        if tag == 338:
            b[e + 8:e + 10] = struct.pack("<H", 1)
    add("tiff_rgba_assoc.tif", bytes(b))
    # 16-bit RGB (PIL cannot write it): the ffmpeg CLI
    raw = np.zeros((H, W, 3), np.uint16)
    raw[:] = img.astype(np.uint16) * 257
    raw[1, :4, 0] = [0x00FF, 0x0100, 0x7F80, 0xFFFF]
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt",
                    "rgb48le", "-s", "%dx%d" % (W, H), "-i", "-", "-pix_fmt", "rgb48le",
                    "tiff_rgb16.tif"], input=raw.tobytes(), check=True)
    entries.append(("tiff_rgb16.tif", 0))


def write_refs(manifest, mode="w"):
    with open(manifest, mode) as m:
        if mode == "w":
            m.write("# file width height tolerance: NAME.rgb holds Image.open(f).convert('RGB')"
                    " bytes (Pillow 9.4.0; AVIF: a newer Pillow); tolerance = max |diff| allowed\n")
        for name, tol in entries:
            im = Image.open(name)
            rgb = im.convert("RGB")
            with open(os.path.splitext(name)[0] + ".rgb", "wb") as f:
                f.write(rgb.tobytes())
            m.write("%s %d %d %d\n" % (name, rgb.width, rgb.height, tol))
            print(name, im.format, im.mode, im.size, tol)


def main():
    os.chdir(HERE)
    if "--avif" in sys.argv:
        assert features.check("avif"), "this Pillow cannot read AVIF"
        for name, pix, w, h, cs, rng in (
                ("avif_yuv420.avif", "yuv420p", W, H, "bt709", "tv"),
                ("avif_yuv444.avif", "yuv444p", W, H, "bt709", "tv"),
                ("avif_yuv420_even.avif", "yuv420p", 40, 22, "bt709", "tv"),
                ("avif_yuv420_full601.avif", "yuv420p", W, H, "smpte170m", "pc")):
            raw = rgb_pattern(w, h, seed=8)
            subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt",
                            "rgb24", "-s", "%dx%d" % (w, h), "-i", "-", "-c:v", "libaom-av1",
                            "-still-picture", "1", "-crf", "20", "-pix_fmt", pix,
                            "-colorspace", cs, "-color_primaries", "bt709",
                            "-color_trc", "iec61966-2-1", "-color_range", rng, name],
                           input=raw.tobytes(), check=True)
            entries.append((name, 0))
        lines = [l for l in open("manifest.txt") if not l.startswith("avif_")]
        open("manifest.txt", "w").writelines(lines)
        write_refs("manifest.txt", "a")
        return 0
    make_webp()
    make_gif()
    make_bmp()
    make_tiff()
    write_refs("manifest.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())

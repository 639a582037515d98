/* Header parsers: the picture size (for the budget, before any decoder runs) and
 * the few facts the libavcodec path needs to reproduce Pillow (GIF palette and
 * transparency, WebP animation frames, TIFF associated alpha). Every read is
 * bounds-checked; nothing is allocated. */
#include <string.h>

#include "core/error.h"
#include "media/image_codecs.h"

static unsigned le16(const uint8_t *p) { return (unsigned)p[0] | ((unsigned)p[1] << 8); }
static unsigned be16(const uint8_t *p) { return ((unsigned)p[0] << 8) | p[1]; }
static uint32_t le24(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16); }
static uint32_t le32(const uint8_t *p) { return le24(p) | ((uint32_t)p[3] << 24); }
static uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* ---- GIF ------------------------------------------------------------------- */

/* Skips a chain of data sub-blocks starting at *pos; 0 on success, -1 if cut short. */
static int gif_skip_blocks(const uint8_t *d, size_t n, size_t *pos)
{
    for (;;) {
        if (*pos >= n) return -1;
        size_t len = d[(*pos)++];
        if (len == 0) return 0;
        if (len > n - *pos) return -1;
        *pos += len;
    }
}

int vlm_gif_parse(const uint8_t *d, size_t n, vlm_gif_header *g)
{
    memset(g, 0, sizeof *g);
    g->trans = -1;
    for (int i = 0; i < 256; i++) g->pal[i][0] = g->pal[i][1] = g->pal[i][2] = (uint8_t)i;
    if (n < 13) return vlm_errorf(VLM_ERR_FORMAT, "gif: file is truncated (%zu bytes)", n);
    if (memcmp(d, "GIF87a", 6) != 0 && memcmp(d, "GIF89a", 6) != 0)
        return vlm_errorf(VLM_ERR_FORMAT, "gif: bad signature");
    g->screen_w = (int)le16(d + 6);
    g->screen_h = (int)le16(d + 8);
    size_t pos = 13;
    const uint8_t *gpal = NULL, *lpal = NULL;
    int gcount = 0, lcount = 0;
    if (d[10] & 0x80) {
        gcount = 1 << ((d[10] & 7) + 1);
        if ((size_t)gcount * 3 > n - pos)
            return vlm_errorf(VLM_ERR_FORMAT, "gif: file is truncated (in the colour table)");
        gpal = d + pos;
        pos += (size_t)gcount * 3;
    }
    for (;;) {
        if (pos >= n) return vlm_errorf(VLM_ERR_FORMAT, "gif: file is truncated (no image)");
        uint8_t b = d[pos++];
        if (b == 0x21) { /* extension */
            if (pos >= n) return vlm_errorf(VLM_ERR_FORMAT, "gif: file is truncated");
            uint8_t label = d[pos++];
            if (label == 0xF9 && pos + 5 <= n && d[pos] >= 4)
                g->trans = (d[pos + 1] & 1) ? d[pos + 4] : -1;
            if (gif_skip_blocks(d, n, &pos) < 0)
                return vlm_errorf(VLM_ERR_FORMAT, "gif: file is truncated (in an extension)");
        } else if (b == 0x2C) { /* image descriptor */
            if (n - pos < 9)
                return vlm_errorf(VLM_ERR_FORMAT, "gif: file is truncated (image descriptor)");
            g->x = (int)le16(d + pos);
            g->y = (int)le16(d + pos + 2);
            g->w = (int)le16(d + pos + 4);
            g->h = (int)le16(d + pos + 6);
            uint8_t flags = d[pos + 8];
            pos += 9;
            if (flags & 0x80) {
                lcount = 1 << ((flags & 7) + 1);
                if ((size_t)lcount * 3 > n - pos)
                    return vlm_errorf(VLM_ERR_FORMAT, "gif: file is truncated (local colour table)");
                lpal = d + pos;
                pos += (size_t)lcount * 3;
            }
            break;
        } else if (b == 0x3B) {
            return vlm_errorf(VLM_ERR_FORMAT, "gif: the file holds no image");
        } else {
            return vlm_errorf(VLM_ERR_FORMAT, "gif: corrupt file (unknown block 0x%02x)", b);
        }
    }
    if (g->w == 0 || g->h == 0)
        return vlm_errorf(VLM_ERR_FORMAT, "gif: first frame has no size (%dx%d)", g->w, g->h);
    const uint8_t *pal = lpal ? lpal : gpal;
    int count = lpal ? lcount : gcount;
    g->has_palette = pal != NULL;
    for (int i = 0; i < count && i < 256; i++) memcpy(g->pal[i], pal + 3 * i, 3);
    /* Frame 0's data must be complete (Pillow: "image file is truncated"); then,
     * is there a second image? (for the "animated" flag only; errors ignored) */
    g->frames = 1;
    if (pos < n) {
        pos++; /* LZW minimum code size */
        if (gif_skip_blocks(d, n, &pos) == 0) {
            g->data_complete = 1;
            while (pos < n) {
                uint8_t b = d[pos++];
                if (b == 0x2C) {
                    g->frames = 2;
                    break;
                }
                if (b != 0x21 || pos >= n) break;
                pos++;
                if (gif_skip_blocks(d, n, &pos) < 0) break;
            }
        }
    }
    return VLM_OK;
}

/* ---- WebP ------------------------------------------------------------------ */

typedef struct {
    char tag[4];
    const uint8_t *data;
    size_t len;
} riff_chunk;

/* Reads the chunk at *pos (< end); 1 = got one, 0 = no more, <0 error. */
static int riff_next(const uint8_t *d, size_t end, size_t *pos, riff_chunk *c)
{
    if (*pos >= end) return 0;
    if (end - *pos < 8) return vlm_errorf(VLM_ERR_FORMAT, "webp: file is truncated (chunk header)");
    memcpy(c->tag, d + *pos, 4);
    size_t len = le32(d + *pos + 4);
    if (len > end - *pos - 8)
        return vlm_errorf(VLM_ERR_FORMAT, "webp: file is truncated (chunk '%.4s' needs %zu bytes)",
                          c->tag, len);
    c->data = d + *pos + 8;
    c->len = len;
    *pos += 8 + len + (len & 1);
    if (*pos > end) *pos = end;
    return 1;
}

static int webp_bitstream_size(const riff_chunk *c, int *w, int *h, int *lossless)
{
    if (!memcmp(c->tag, "VP8 ", 4)) {
        if (c->len < 10) return vlm_errorf(VLM_ERR_FORMAT, "webp: VP8 chunk is truncated");
        if (c->data[0] & 1) return vlm_errorf(VLM_ERR_FORMAT, "webp: VP8 data is not a key frame");
        if (c->data[3] != 0x9d || c->data[4] != 0x01 || c->data[5] != 0x2a)
            return vlm_errorf(VLM_ERR_FORMAT, "webp: corrupt VP8 frame header");
        *w = (int)(le16(c->data + 6) & 0x3fff);
        *h = (int)(le16(c->data + 8) & 0x3fff);
        *lossless = 0;
        if (*w == 0 || *h == 0) return vlm_errorf(VLM_ERR_FORMAT, "webp: invalid image size %dx%d", *w, *h);
        return VLM_OK;
    }
    if (!memcmp(c->tag, "VP8L", 4)) {
        if (c->len < 5) return vlm_errorf(VLM_ERR_FORMAT, "webp: VP8L chunk is truncated");
        if (c->data[0] != 0x2f) return vlm_errorf(VLM_ERR_FORMAT, "webp: corrupt VP8L header");
        uint32_t b = le32(c->data + 1);
        *w = (int)(b & 0x3fff) + 1;
        *h = (int)((b >> 14) & 0x3fff) + 1;
        *lossless = 1;
        return VLM_OK;
    }
    return vlm_errorf(VLM_ERR_FORMAT, "webp: expected VP8 or VP8L data, found '%.4s'", c->tag);
}

/* Finds the optional ALPH and the VP8/VP8L chunk among the chunks in [pos, end). */
static int webp_find_bits(const uint8_t *d, size_t pos, size_t end, vlm_webp_header *w, int *bw,
                          int *bh)
{
    riff_chunk c;
    int r;
    while ((r = riff_next(d, end, &pos, &c)) > 0) {
        if (!memcmp(c.tag, "ALPH", 4) && !w->alph) {
            w->alph = c.data;
            w->alph_len = c.len;
        } else if (!memcmp(c.tag, "VP8 ", 4) || !memcmp(c.tag, "VP8L", 4)) {
            w->bits = c.data;
            w->bits_len = c.len;
            return webp_bitstream_size(&c, bw, bh, &w->lossless);
        }
    }
    if (r < 0) return r;
    return vlm_errorf(VLM_ERR_FORMAT, "webp: no image data (VP8/VP8L chunk) found");
}

int vlm_webp_parse(const uint8_t *d, size_t n, vlm_webp_header *w)
{
    memset(w, 0, sizeof *w);
    w->frames = 1;
    if (n < 20) return vlm_errorf(VLM_ERR_FORMAT, "webp: file is truncated (%zu bytes)", n);
    if (memcmp(d, "RIFF", 4) != 0 || memcmp(d + 8, "WEBP", 4) != 0)
        return vlm_errorf(VLM_ERR_FORMAT, "webp: bad signature");
    uint32_t riff = le32(d + 4);
    if (riff < 12) return vlm_errorf(VLM_ERR_FORMAT, "webp: corrupt RIFF size %u", riff);
    if ((uint64_t)riff + 8 > n)
        return vlm_errorf(VLM_ERR_FORMAT, "webp: file is truncated (RIFF says %llu bytes, have %zu)",
                          (unsigned long long)riff + 8, n);
    size_t end = (size_t)riff + 8, pos = 12;
    riff_chunk c;
    int r = riff_next(d, end, &pos, &c);
    if (r <= 0) return r < 0 ? r : vlm_errorf(VLM_ERR_FORMAT, "webp: no chunks");
    int bw, bh;
    if (memcmp(c.tag, "VP8X", 4) != 0) { /* simple format: the bitstream is the image */
        w->bits = c.data;
        w->bits_len = c.len;
        if ((r = webp_bitstream_size(&c, &bw, &bh, &w->lossless)) != VLM_OK) return r;
        w->width = w->fw = bw;
        w->height = w->fh = bh;
        return VLM_OK;
    }
    if (c.len < 10) return vlm_errorf(VLM_ERR_FORMAT, "webp: VP8X chunk is truncated");
    w->width = (int)le24(c.data + 4) + 1;
    w->height = (int)le24(c.data + 7) + 1;
    w->animated = (c.data[0] & 0x02) != 0;
    if (!w->animated) {
        if ((r = webp_find_bits(d, pos, end, w, &bw, &bh)) != VLM_OK) return r;
        if (bw != w->width || bh != w->height)
            return vlm_errorf(VLM_ERR_FORMAT, "webp: image is %dx%d but the canvas is %dx%d", bw, bh,
                              w->width, w->height);
        w->fw = bw;
        w->fh = bh;
        return VLM_OK;
    }
    w->frames = 0;
    while ((r = riff_next(d, end, &pos, &c)) > 0) {
        if (memcmp(c.tag, "ANMF", 4) != 0) continue;
        if (++w->frames > 1) continue;
        if (c.len < 16) return vlm_errorf(VLM_ERR_FORMAT, "webp: ANMF chunk is truncated");
        w->fx = 2 * (int)le24(c.data);
        w->fy = 2 * (int)le24(c.data + 3);
        w->fw = (int)le24(c.data + 6) + 1;
        w->fh = (int)le24(c.data + 9) + 1;
        size_t fpos = (size_t)(c.data - d) + 16, fend = (size_t)(c.data - d) + c.len;
        if ((r = webp_find_bits(d, fpos, fend, w, &bw, &bh)) != VLM_OK) return r;
        if (bw != w->fw || bh != w->fh)
            return vlm_errorf(VLM_ERR_FORMAT, "webp: frame data is %dx%d but the frame is %dx%d", bw,
                              bh, w->fw, w->fh);
        if (w->fx + w->fw > w->width || w->fy + w->fh > w->height)
            return vlm_errorf(VLM_ERR_FORMAT, "webp: first frame (%dx%d at %d,%d) leaves the %dx%d canvas",
                              w->fw, w->fh, w->fx, w->fy, w->width, w->height);
    }
    if (r < 0) return r;
    if (w->frames == 0) return vlm_errorf(VLM_ERR_FORMAT, "webp: animation without frames");
    return VLM_OK;
}

/* ---- BMP ------------------------------------------------------------------- */

int vlm_bmp_parse(const uint8_t *d, size_t n, int *width, int *height, int *bits, uint64_t *need)
{
    *need = 0;
    if (n < 26) return vlm_errorf(VLM_ERR_FORMAT, "bmp: file is truncated (%zu bytes)", n);
    uint32_t hsize = le32(d + 14), compression = 0;
    int64_t w, h;
    if (hsize == 12) { /* OS/2 BITMAPCOREHEADER */
        w = le16(d + 18);
        h = le16(d + 20);
        *bits = (int)le16(d + 24);
    } else if (hsize >= 40 && hsize <= 124) {
        if (n < 34) return vlm_errorf(VLM_ERR_FORMAT, "bmp: file is truncated (%zu bytes)", n);
        w = (int32_t)le32(d + 18);
        h = (int32_t)le32(d + 22);
        if (h < 0) h = -h; /* top-down */
        *bits = (int)le16(d + 28);
        compression = le32(d + 30);
    } else {
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "bmp: unsupported header size %u", hsize);
    }
    if (w <= 0 || h <= 0 || w > INT32_MAX || h > INT32_MAX)
        return vlm_errorf(VLM_ERR_FORMAT, "bmp: invalid image size %lldx%lld", (long long)w,
                          (long long)h);
    /* The file size uncompressed rows (BI_RGB, BI_BITFIELDS) need. */
    if ((compression == 0 || compression == 3) && *bits > 0 && *bits <= 32) {
        uint64_t stride = (((uint64_t)w * (unsigned)*bits + 31) / 32) * 4;
        *need = (uint64_t)le32(d + 10) + stride * (uint64_t)h;
    }
    /* RLE8 / RLE4: the runs must cover the picture (or reach end-of-bitmap) before
     * the file ends; Pillow says "not enough image data" otherwise. */
    if ((compression == 1 && *bits == 8) || (compression == 2 && *bits == 4)) {
        uint64_t pos = le32(d + 10), x = 0, y = 0;
        int done = 0;
        while (!done && pos + 2 <= n && y < (uint64_t)h) {
            unsigned cnt = d[pos], c = d[pos + 1];
            pos += 2;
            if (cnt) {
                x += cnt;
            } else if (c == 0) {
                x = 0, y++;
            } else if (c == 1) {
                done = 1;
            } else if (c == 2) {
                if (pos + 2 > n) break;
                x += d[pos], y += d[pos + 1];
                pos += 2;
            } else {
                uint64_t bytes = compression == 1 ? c : (c + 1) / 2;
                pos += bytes + (bytes & 1);
                if (pos > n) break;
                x += c;
            }
        }
        if (!done && y < (uint64_t)h && y * (uint64_t)w + (x < (uint64_t)w ? x : (uint64_t)w) < (uint64_t)w * h)
            *need = UINT64_MAX; /* the caller reports it as truncated */
    }
    *width = (int)w;
    *height = (int)h;
    return VLM_OK;
}

/* ---- TIFF ------------------------------------------------------------------ */

int vlm_tiff_parse(const uint8_t *d, size_t n, vlm_tiff_header *t)
{
    memset(t, 0, sizeof *t);
    t->samples = 1;
    t->bits = 1;
    t->photometric = -1;
    if (n < 8) return vlm_errorf(VLM_ERR_FORMAT, "tiff: file is truncated (%zu bytes)", n);
    int be = d[0] == 'M';
    unsigned (*u16)(const uint8_t *) = be ? be16 : le16;
    uint32_t (*u32)(const uint8_t *) = be ? be32 : le32;
    if (u16(d + 2) != 42) return vlm_errorf(VLM_ERR_UNSUPPORTED, "tiff: only classic TIFF is supported");
    uint32_t ifd = u32(d + 4);
    if (ifd < 8 || (uint64_t)ifd + 2 > n)
        return vlm_errorf(VLM_ERR_FORMAT, "tiff: file is truncated (first IFD at %u)", ifd);
    unsigned count = u16(d + ifd);
    if ((uint64_t)ifd + 2 + 12ull * count > n)
        return vlm_errorf(VLM_ERR_FORMAT, "tiff: file is truncated (in the first IFD)");
    int64_t w = -1, h = -1;
    /* Where the strip/tile data ends: offsets (273/324) plus byte counts (279/325). */
    const uint8_t *offs = NULL, *lens = NULL;
    uint32_t n_offs = 0, n_lens = 0;
    int offs_type = 0, lens_type = 0;
    for (unsigned i = 0; i < count; i++) {
        const uint8_t *e = d + ifd + 2 + 12 * i;
        unsigned tag = u16(e), type = u16(e + 2);
        uint32_t cnt = u32(e + 4);
        const uint8_t *val = e + 8;
        if (cnt == 0 || (type != 3 && type != 4)) continue;
        if (tag == 273 || tag == 324 || tag == 279 || tag == 325) {
            uint64_t bytes = (uint64_t)cnt * (type == 3 ? 2 : 4);
            const uint8_t *arr = e + 8;
            if (bytes > 4) {
                uint32_t off = u32(e + 8);
                if ((uint64_t)off + bytes > n)
                    return vlm_errorf(VLM_ERR_FORMAT, "tiff: file is truncated (strip table at %u)", off);
                arr = d + off;
            }
            if (tag == 273 || tag == 324)
                offs = arr, n_offs = cnt, offs_type = (int)type;
            else
                lens = arr, n_lens = cnt, lens_type = (int)type;
            continue;
        }
        /* A SHORT array longer than 2 (or a LONG array longer than 1) is stored elsewhere. */
        if ((type == 3 && cnt > 2) || (type == 4 && cnt > 1)) {
            uint32_t off = u32(e + 8);
            if ((uint64_t)off + (type == 3 ? 2 : 4) > n) continue;
            val = d + off;
        }
        int64_t v = type == 3 ? (int64_t)u16(val) : (int64_t)u32(val);
        switch (tag) {
        case 256: w = v; break;
        case 257: h = v; break;
        case 258: t->bits = (int)v; break;
        case 262: t->photometric = (int)v; break;
        case 277: t->samples = (int)v; break;
        case 338: t->assoc_alpha = v == 1; break;
        default: break;
        }
    }
    if (w < 0 || h < 0) return vlm_errorf(VLM_ERR_FORMAT, "tiff: the first IFD gives no image size");
    t->data_end = 0;
    if (offs && lens) {
        uint32_t m = n_offs < n_lens ? n_offs : n_lens;
        for (uint32_t i = 0; i < m; i++) {
            uint64_t o = offs_type == 3 ? u16(offs + 2 * i) : u32(offs + 4 * i);
            uint64_t l = lens_type == 3 ? u16(lens + 2 * i) : u32(lens + 4 * i);
            if (o + l > t->data_end) t->data_end = o + l;
        }
    }
    if (w == 0 || h == 0 || w > INT32_MAX || h > INT32_MAX)
        return vlm_errorf(VLM_ERR_FORMAT, "tiff: invalid image size %lldx%lld", (long long)w,
                          (long long)h);
    t->width = (int)w;
    t->height = (int)h;
    return VLM_OK;
}

/* ---- AVIF (ISO-BMFF): the 'ispe' item properties ------------------------------ */

/* Finds the first child box of type t in [pos, end); returns its payload range. */
static int bmff_find(const uint8_t *d, size_t pos, size_t end, const char *t, size_t *pstart,
                     size_t *pend)
{
    while (pos < end && end - pos >= 8) {
        uint64_t size = be32(d + pos);
        size_t hdr = 8;
        if (size == 1) {
            if (end - pos < 16) return 0;
            size = ((uint64_t)be32(d + pos + 8) << 32) | be32(d + pos + 12);
            hdr = 16;
        } else if (size == 0) {
            size = end - pos;
        }
        if (size < hdr || size > end - pos) return 0;
        if (!memcmp(d + pos + 4, t, 4)) {
            *pstart = pos + hdr;
            *pend = pos + (size_t)size;
            return 1;
        }
        pos += (size_t)size;
    }
    return 0;
}

int vlm_avif_parse(const uint8_t *d, size_t n, int *width, int *height)
{
    size_t a, b, c, e;
    /* Every top-level box must fit in the file. */
    for (size_t pos = 0; pos < n;) {
        if (n - pos < 8) return vlm_errorf(VLM_ERR_FORMAT, "avif: file is truncated (box header)");
        uint64_t size = be32(d + pos);
        if (size == 1) {
            if (n - pos < 16) return vlm_errorf(VLM_ERR_FORMAT, "avif: file is truncated (box header)");
            size = ((uint64_t)be32(d + pos + 8) << 32) | be32(d + pos + 12);
        } else if (size == 0) {
            break; /* to the end of the file */
        }
        if (size < 8) return vlm_errorf(VLM_ERR_FORMAT, "avif: corrupt box size %llu", (unsigned long long)size);
        if (size > n - pos)
            return vlm_errorf(VLM_ERR_FORMAT, "avif: file is truncated (box '%.4s' needs %llu bytes, %zu left)",
                              (const char *)d + pos + 4, (unsigned long long)size, n - pos);
        pos += (size_t)size;
    }
    if (!bmff_find(d, 0, n, "meta", &a, &b) || b - a < 4 || !bmff_find(d, a + 4, b, "iprp", &c, &e) ||
        !bmff_find(d, c, e, "ipco", &a, &b))
        return vlm_errorf(VLM_ERR_FORMAT, "avif: no item properties (meta/iprp/ipco) in the file");
    /* Every image item (colour, alpha, grid tiles) has an 'ispe'; the largest bounds them all. */
    int64_t w = 0, h = 0;
    size_t pos = a;
    while (bmff_find(d, pos, b, "ispe", &c, &e)) {
        if (e - c >= 12) {
            if (be32(d + c + 4) > w) w = be32(d + c + 4);
            if (be32(d + c + 8) > h) h = be32(d + c + 8);
        }
        pos = e;
    }
    if (w <= 0 || h <= 0) return vlm_errorf(VLM_ERR_FORMAT, "avif: no image size (ispe) in the file");
    if (w > INT32_MAX || h > INT32_MAX)
        return vlm_errorf(VLM_ERR_FORMAT, "avif: invalid image size %lldx%lld", (long long)w, (long long)h);
    *width = (int)w;
    *height = (int)h;
    return VLM_OK;
}

/* ---- PNG / JPEG (probe only; the decoders read their own headers) ---------- */

int vlm_png_parse(const uint8_t *d, size_t n, int *width, int *height)
{
    if (n < 24) return vlm_errorf(VLM_ERR_FORMAT, "png: file is truncated (%zu bytes)", n);
    if (memcmp(d + 12, "IHDR", 4) != 0)
        return vlm_errorf(VLM_ERR_FORMAT, "png: corrupt file (first chunk is not IHDR)");
    uint32_t w = be32(d + 16), h = be32(d + 20);
    if (w == 0 || h == 0 || w > INT32_MAX || h > INT32_MAX)
        return vlm_errorf(VLM_ERR_FORMAT, "png: invalid image size %ux%u", w, h);
    *width = (int)w;
    *height = (int)h;
    return VLM_OK;
}

int vlm_jpeg_parse(const uint8_t *d, size_t n, int *width, int *height)
{
    size_t pos = 2;
    for (;;) {
        while (pos < n && d[pos] != 0xFF) pos++; /* tolerate junk between segments */
        while (pos < n && d[pos] == 0xFF) pos++;
        if (pos >= n) return vlm_errorf(VLM_ERR_FORMAT, "jpeg: file is truncated (no frame header)");
        uint8_t m = d[pos++];
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD8)) continue; /* no length */
        if (m == 0xD9 || m == 0xDA)
            return vlm_errorf(VLM_ERR_FORMAT, "jpeg: corrupt file (no frame header before data)");
        if (n - pos < 2) return vlm_errorf(VLM_ERR_FORMAT, "jpeg: file is truncated");
        unsigned len = be16(d + pos);
        if (len < 2) return vlm_errorf(VLM_ERR_FORMAT, "jpeg: corrupt segment length %u", len);
        if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
            if (n - pos < 7) return vlm_errorf(VLM_ERR_FORMAT, "jpeg: file is truncated (frame header)");
            *height = (int)be16(d + pos + 3);
            *width = (int)be16(d + pos + 5);
            if (*width == 0 || *height == 0)
                return vlm_errorf(VLM_ERR_FORMAT, "jpeg: invalid image size %dx%d", *width, *height);
            return VLM_OK;
        }
        if (len > n - pos) return vlm_errorf(VLM_ERR_FORMAT, "jpeg: file is truncated");
        pos += len;
    }
}

/* libavcodec frames -> RGB8 the way Pillow 9.4.0's convert("RGB") gives them.
 *
 * The pixel formats FFmpeg's image decoders produce are unpacked here by hand,
 * following PIL's unpackers:
 *   packed RGB(A/X) in any order     the three colour bytes, alpha dropped
 *   premultiplied RGBA (TIFF)        PIL's "RGBa": v*255/a (0 when a == 0), then dropped
 *   grey 8                           replicated
 *   grey 16 (TIFF "I;16")            clipped to 0..255, like PIL's I;16 -> RGB
 *   RGB 48 / RGBA 64                 high byte
 *   palette                          the frame's palette (ARGB words), alpha dropped
 *   1-bit                            0 / 255
 *   RGB 5-5-5 / 5-6-5 (BMP)          v*255/31, v*255/63 (PIL's BGR;15 / BGR;16)
 *   planar GBR(A)                    the three planes
 *   YUV 4:2:0 of WebP (VP8)          libwebp's "fancy" chroma upsampler and its
 *                                    14-bit fixed-point BT.601 conversion, which is
 *                                    what Pillow's libwebp produces
 *   8-bit YUV of AVIF                what libavif does with libyuv (Pillow 11+'s AVIF
 *                                    plugin): libyuv's 6-bit fixed-point matrices (BT.601,
 *                                    BT.709, BT.2020; limited or full range; the limited
 *                                    ones cap the U->B coefficient at 2.0, as libyuv does)
 *                                    and its bilinear 2x chroma upsampler
 * Anything else (high bit depths, other matrices) goes through libswscale with the
 * frame's matrix and range: close to, not bit-identical with, other decoders. */
#include <stdlib.h>
#include <string.h>

#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>

#include "core/error.h"
#include "media/av_util.h"
#include "media/image_avpix.h"

/* ---- libwebp's YUV -> RGB (see the header comment) ------------------------- */

static inline int mult_hi(int v, int coeff) { return (v * coeff) >> 8; }

static inline uint8_t clip8_fix6(int v)
{
    /* v carries 6 fractional bits; 0..16383 maps to 0..255 */
    return (v & ~16383) == 0 ? (uint8_t)(v >> 6) : v < 0 ? 0 : 255;
}

static inline void yuv_to_rgb(int y, int u, int v, uint8_t *rgb)
{
    int yy = mult_hi(y, 19077);
    rgb[0] = clip8_fix6(yy + mult_hi(v, 26149) - 14234);
    rgb[1] = clip8_fix6(yy - mult_hi(u, 6419) - mult_hi(v, 13320) + 8708);
    rgb[2] = clip8_fix6(yy + mult_hi(u, 33050) - 17685);
}

/* One or two output rows from the chroma rows above (tu/tv) and below (cu/cv):
 * each output chroma sample is (9a + 3b + 3c + d + 8) / 16 of its four nearest
 * samples, computed with libwebp's exact intermediate rounding (u and v packed
 * in one 32-bit word, 16 bits each). */
static void fancy_pair(const uint8_t *ty, const uint8_t *by, const uint8_t *tu, const uint8_t *tv,
                       const uint8_t *cu, const uint8_t *cv, uint8_t *tdst, uint8_t *bdst, int len)
{
#define UV(u, v) ((uint32_t)(u) | ((uint32_t)(v) << 16))
    const int last_pair = (len - 1) >> 1;
    uint32_t tl = UV(tu[0], tv[0]);
    uint32_t l = UV(cu[0], cv[0]);
    uint32_t uv0 = (3 * tl + l + 0x00020002u) >> 2;
    yuv_to_rgb(ty[0], uv0 & 0xff, (int)(uv0 >> 16), tdst);
    if (by) {
        uv0 = (3 * l + tl + 0x00020002u) >> 2;
        yuv_to_rgb(by[0], uv0 & 0xff, (int)(uv0 >> 16), bdst);
    }
    for (int x = 1; x <= last_pair; x++) {
        const uint32_t t = UV(tu[x], tv[x]);
        const uint32_t c = UV(cu[x], cv[x]);
        const uint32_t avg = tl + t + l + c + 0x00080008u;
        const uint32_t d12 = (avg + 2 * (t + l)) >> 3;
        const uint32_t d03 = (avg + 2 * (tl + c)) >> 3;
        uint32_t a = (d12 + tl) >> 1, b = (d03 + t) >> 1;
        yuv_to_rgb(ty[2 * x - 1], a & 0xff, (int)(a >> 16), tdst + 3 * (2 * x - 1));
        yuv_to_rgb(ty[2 * x], b & 0xff, (int)(b >> 16), tdst + 3 * (2 * x));
        if (by) {
            a = (d03 + l) >> 1;
            b = (d12 + c) >> 1;
            yuv_to_rgb(by[2 * x - 1], a & 0xff, (int)(a >> 16), bdst + 3 * (2 * x - 1));
            yuv_to_rgb(by[2 * x], b & 0xff, (int)(b >> 16), bdst + 3 * (2 * x));
        }
        tl = t;
        l = c;
    }
    if (!(len & 1)) {
        uv0 = (3 * tl + l + 0x00020002u) >> 2;
        yuv_to_rgb(ty[len - 1], uv0 & 0xff, (int)(uv0 >> 16), tdst + 3 * (len - 1));
        if (by) {
            uv0 = (3 * l + tl + 0x00020002u) >> 2;
            yuv_to_rgb(by[len - 1], uv0 & 0xff, (int)(uv0 >> 16), bdst + 3 * (len - 1));
        }
    }
#undef UV
}

/* Row 0 pairs chroma row 0 with itself; rows 2k-1 and 2k sit between chroma rows
 * k-1 and k; an even height's last row pairs the last chroma row with itself. */
static void webp_yuv420_to_rgb(const AVFrame *f, uint8_t *rgb)
{
    const int w = f->width, h = f->height, uvh = (h + 1) / 2;
    const size_t ostride = (size_t)w * 3;
#define YR(r) (f->data[0] + (ptrdiff_t)(r) * f->linesize[0])
#define UR(r) (f->data[1] + (ptrdiff_t)(r) * f->linesize[1])
#define VR(r) (f->data[2] + (ptrdiff_t)(r) * f->linesize[2])
    fancy_pair(YR(0), NULL, UR(0), VR(0), UR(0), VR(0), rgb, NULL, w);
    for (int k = 1; 2 * k - 1 < h; k++) {
        int top = 2 * k - 1, bot = 2 * k;
        int ck = k < uvh ? k : uvh - 1;
        fancy_pair(YR(top), bot < h ? YR(bot) : NULL, UR(k - 1), VR(k - 1), UR(ck), VR(ck),
                   rgb + ostride * top, bot < h ? rgb + ostride * bot : NULL, w);
    }
#undef YR
#undef UR
#undef VR
}

/* ---- libyuv's YUV -> RGB (AVIF through libavif) --------------------------------- */

typedef struct {
    int ub, ug, vg, vr, yg, yb;
} yuv_coef;

/* U->B, U->G, V->G, V->R in 1/64, Y gain (x 65536/257) and bias (libyuv's tables). */
static const yuv_coef k_bt601_limited = {128, 25, 52, 102, 18997, -1160};
static const yuv_coef k_bt601_full = {113, 22, 46, 90, 16320, 32};
static const yuv_coef k_bt709_limited = {128, 14, 34, 115, 18997, -1160};
static const yuv_coef k_bt709_full = {119, 12, 30, 101, 16320, 32};
static const yuv_coef k_bt2020_limited = {128, 12, 42, 107, 19003, -1160};
static const yuv_coef k_bt2020_full = {120, 11, 37, 94, 16320, 32};

static inline uint8_t clamp_fix6(int32_t v)
{
    v >>= 6; /* arithmetic shift, as libyuv */
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

static inline void yuv_px(const yuv_coef *k, int y, int u, int v, uint8_t *rgb)
{
    int32_t y1 = (int32_t)(((uint32_t)y * 0x0101u * (uint32_t)k->yg) >> 16) + k->yb;
    int ui = u - 128, vi = v - 128;
    rgb[0] = clamp_fix6(y1 + vi * k->vr);
    rgb[1] = clamp_fix6(y1 - (ui * k->ug + vi * k->vg));
    rgb[2] = clamp_fix6(y1 + ui * k->ub);
}

/* libyuv's 2x horizontal upsampler: ends copied, inner pixels (3a+b+2)/4. */
static void up2_linear(const uint8_t *s, uint8_t *d, int w)
{
    int work = (w - 1) & ~1;
    d[0] = s[0];
    for (int x = 0; x < work / 2; x++) {
        d[1 + 2 * x] = (uint8_t)((s[x] * 3 + s[x + 1] + 2) >> 2);
        d[2 + 2 * x] = (uint8_t)((s[x] + s[x + 1] * 3 + 2) >> 2);
    }
    d[w - 1] = s[(w - 1) / 2];
}

/* Its 2x bilinear upsampler: two output rows between chroma rows a and b. */
static void up2_bilinear(const uint8_t *a, const uint8_t *b, uint8_t *da, uint8_t *db, int w)
{
    int work = (w - 1) & ~1, e = (w - 1) / 2;
    da[0] = (uint8_t)((3 * a[0] + b[0] + 2) >> 2);
    db[0] = (uint8_t)((a[0] + 3 * b[0] + 2) >> 2);
    for (int x = 0; x < work / 2; x++) {
        int s0 = a[x], s1 = a[x + 1], t0 = b[x], t1 = b[x + 1];
        da[1 + 2 * x] = (uint8_t)((s0 * 9 + s1 * 3 + t0 * 3 + t1 + 8) >> 4);
        da[2 + 2 * x] = (uint8_t)((s0 * 3 + s1 * 9 + t0 + t1 * 3 + 8) >> 4);
        db[1 + 2 * x] = (uint8_t)((s0 * 3 + s1 + t0 * 9 + t1 * 3 + 8) >> 4);
        db[2 + 2 * x] = (uint8_t)((s0 + s1 * 3 + t0 * 3 + t1 * 9 + 8) >> 4);
    }
    da[w - 1] = (uint8_t)((3 * a[e] + b[e] + 2) >> 2);
    db[w - 1] = (uint8_t)((a[e] + 3 * b[e] + 2) >> 2);
}

static const yuv_coef *libyuv_coef(const AVFrame *f, int container_cs)
{
    int cs = container_cs != AVCOL_SPC_UNSPECIFIED && container_cs != AVCOL_SPC_RESERVED
                 ? container_cs : (int)f->colorspace;
    int full = f->color_range == AVCOL_RANGE_JPEG || f->format == AV_PIX_FMT_YUVJ420P ||
               f->format == AV_PIX_FMT_YUVJ444P || f->format == AV_PIX_FMT_YUVJ422P;
    switch (cs) {
    case AVCOL_SPC_BT709: return full ? &k_bt709_full : &k_bt709_limited;
    case AVCOL_SPC_BT2020_NCL:
    case AVCOL_SPC_BT2020_CL: return full ? &k_bt2020_full : &k_bt2020_limited;
    case AVCOL_SPC_BT470BG:
    case AVCOL_SPC_SMPTE170M:
    case AVCOL_SPC_UNSPECIFIED: return full ? &k_bt601_full : &k_bt601_limited;
    default: return NULL;
    }
}

/* 1 if converted; 0 if this frame is not one libyuv's tables cover. */
static int libyuv_to_rgb(const AVFrame *f, int container_cs, uint8_t *rgb, int *rc)
{
    const int w = f->width, h = f->height;
    int sub_x, sub_y;
    switch (f->format) {
    case AV_PIX_FMT_YUV420P:
    case AV_PIX_FMT_YUVJ420P:
    case AV_PIX_FMT_YUVA420P: sub_x = sub_y = 1; break;
    case AV_PIX_FMT_YUV422P:
    case AV_PIX_FMT_YUVJ422P:
    case AV_PIX_FMT_YUVA422P: sub_x = 1, sub_y = 0; break;
    case AV_PIX_FMT_YUV444P:
    case AV_PIX_FMT_YUVJ444P:
    case AV_PIX_FMT_YUVA444P: sub_x = sub_y = 0; break;
    case AV_PIX_FMT_GRAY8: sub_x = sub_y = -1; break;
    default: return 0;
    }
    const yuv_coef *k = libyuv_coef(f, container_cs);
    if (!k) return 0;
    *rc = VLM_OK;
    uint8_t *buf = NULL;
    if (sub_x > 0) { /* rows of upsampled U and V: two each */
        buf = (uint8_t *)malloc((size_t)w * 4);
        if (!buf) {
            *rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
            return 1;
        }
    }
    uint8_t *u0 = buf, *u1 = buf ? buf + w : NULL, *v0 = buf ? buf + 2 * w : NULL,
            *v1 = buf ? buf + 3 * w : NULL;
#define PL(p, r) (f->data[p] + (ptrdiff_t)(r) * f->linesize[p])
    /* Output row y from luma row y and chroma rows cu/cv. */
#define EMIT(y, cu, cv)                                                                 \
    do {                                                                                \
        const uint8_t *yy = PL(0, y);                                                   \
        uint8_t *o = rgb + (size_t)(y) * w * 3;                                         \
        for (int x = 0; x < w; x++) yuv_px(k, yy[x], (cu)[x], (cv)[x], o + 3 * x);      \
    } while (0)
    if (sub_x < 0) {
        for (int y = 0; y < h; y++) {
            const uint8_t *yy = PL(0, y);
            uint8_t *o = rgb + (size_t)y * w * 3;
            for (int x = 0; x < w; x++) yuv_px(k, yy[x], 128, 128, o + 3 * x);
        }
    } else if (sub_x == 0) {
        for (int y = 0; y < h; y++) EMIT(y, PL(1, y), PL(2, y));
    } else if (sub_y == 0) {
        for (int y = 0; y < h; y++) {
            up2_linear(PL(1, y), u0, w);
            up2_linear(PL(2, y), v0, w);
            EMIT(y, u0, v0);
        }
    } else {
        /* Row 0 from chroma row 0; then pairs between chroma rows c and c+1; an
         * even height's last row from the last chroma row. */
        up2_linear(PL(1, 0), u0, w);
        up2_linear(PL(2, 0), v0, w);
        EMIT(0, u0, v0);
        int y = 1, c = 0;
        for (; y + 1 < h; y += 2, c++) {
            up2_bilinear(PL(1, c), PL(1, c + 1), u0, u1, w);
            up2_bilinear(PL(2, c), PL(2, c + 1), v0, v1, w);
            EMIT(y, u0, v0);
            EMIT(y + 1, u1, v1);
        }
        if (y < h) {
            up2_linear(PL(1, c), u0, w);
            up2_linear(PL(2, c), v0, w);
            EMIT(y, u0, v0);
        }
    }
#undef EMIT
#undef PL
    free(buf);
    return 1;
}

/* ---- packed / planar formats -------------------------------------------------- */

static inline uint8_t clip255_div(unsigned v, unsigned a)
{
    unsigned r = v * 255u / a;
    return r > 255 ? 255 : (uint8_t)r;
}

int vlm_av_frame_to_rgb(const AVFrame *f, const vlm_pil_rules *rules, uint8_t *rgb)
{
    const int w = f->width, h = f->height;
    const enum AVPixelFormat fmt = (enum AVPixelFormat)f->format;
    if (rules && rules->libyuv) {
        int rc;
        if (libyuv_to_rgb(f, rules->colorspace, rgb, &rc)) return rc;
    }
    int r = 0, g = 1, b = 2, a = -1, step = 0; /* packed 8-bit layouts */
    switch (fmt) {
    case AV_PIX_FMT_RGB24: step = 3; break;
    case AV_PIX_FMT_BGR24: step = 3, r = 2, b = 0; break;
    case AV_PIX_FMT_RGBA: step = 4, a = 3; break;
    case AV_PIX_FMT_RGB0: step = 4; break;
    case AV_PIX_FMT_BGRA: step = 4, r = 2, b = 0, a = 3; break;
    case AV_PIX_FMT_BGR0: step = 4, r = 2, b = 0; break;
    case AV_PIX_FMT_ARGB: step = 4, r = 1, g = 2, b = 3, a = 0; break;
    case AV_PIX_FMT_0RGB: step = 4, r = 1, g = 2, b = 3; break;
    case AV_PIX_FMT_ABGR: step = 4, r = 3, g = 2, b = 1, a = 0; break;
    case AV_PIX_FMT_0BGR: step = 4, r = 3, g = 2, b = 1; break;
    default: break;
    }
    if (step) {
        int unpremul = rules && rules->assoc_alpha && a >= 0;
        for (int y = 0; y < h; y++) {
            const uint8_t *s = f->data[0] + (ptrdiff_t)y * f->linesize[0];
            uint8_t *d = rgb + (size_t)y * w * 3;
            for (int x = 0; x < w; x++, s += step, d += 3) {
                if (unpremul && s[a] != 255) {
                    unsigned al = s[a];
                    d[0] = al ? clip255_div(s[r], al) : 0;
                    d[1] = al ? clip255_div(s[g], al) : 0;
                    d[2] = al ? clip255_div(s[b], al) : 0;
                } else {
                    d[0] = s[r];
                    d[1] = s[g];
                    d[2] = s[b];
                }
            }
        }
        return VLM_OK;
    }
    for (int y = 0; y < h; y++) {
        const uint8_t *s = f->data[0] + (ptrdiff_t)y * f->linesize[0];
        uint8_t *d = rgb + (size_t)y * w * 3;
        switch (fmt) {
        case AV_PIX_FMT_GRAY8:
        case AV_PIX_FMT_YA8: {
            int st = fmt == AV_PIX_FMT_GRAY8 ? 1 : 2;
            for (int x = 0; x < w; x++) d[3 * x] = d[3 * x + 1] = d[3 * x + 2] = s[st * x];
            break;
        }
        case AV_PIX_FMT_GRAY16LE:
        case AV_PIX_FMT_GRAY16BE:
        case AV_PIX_FMT_YA16LE:
        case AV_PIX_FMT_YA16BE: {
            int le = fmt == AV_PIX_FMT_GRAY16LE || fmt == AV_PIX_FMT_YA16LE;
            int st = fmt == AV_PIX_FMT_GRAY16LE || fmt == AV_PIX_FMT_GRAY16BE ? 2 : 4;
            for (int x = 0; x < w; x++) {
                const uint8_t *p = s + st * x;
                unsigned v = le ? p[0] | (p[1] << 8) : (p[0] << 8) | p[1];
                uint8_t o = rules && rules->gray16_clip ? (v > 255 ? 255 : (uint8_t)v) : (uint8_t)(v >> 8);
                d[3 * x] = d[3 * x + 1] = d[3 * x + 2] = o;
            }
            break;
        }
        case AV_PIX_FMT_RGB48LE:
        case AV_PIX_FMT_RGB48BE:
        case AV_PIX_FMT_RGBA64LE:
        case AV_PIX_FMT_RGBA64BE: {
            int st = fmt == AV_PIX_FMT_RGB48LE || fmt == AV_PIX_FMT_RGB48BE ? 6 : 8;
            int hi = fmt == AV_PIX_FMT_RGB48LE || fmt == AV_PIX_FMT_RGBA64LE ? 1 : 0;
            for (int x = 0; x < w; x++)
                for (int c = 0; c < 3; c++) d[3 * x + c] = s[st * x + 2 * c + hi];
            break;
        }
        case AV_PIX_FMT_PAL8: {
            const uint32_t *pal = (const uint32_t *)f->data[1];
            for (int x = 0; x < w; x++) {
                uint32_t v = pal[s[x]];
                d[3 * x] = (uint8_t)(v >> 16);
                d[3 * x + 1] = (uint8_t)(v >> 8);
                d[3 * x + 2] = (uint8_t)v;
            }
            break;
        }
        case AV_PIX_FMT_MONOBLACK:
        case AV_PIX_FMT_MONOWHITE: {
            uint8_t one = fmt == AV_PIX_FMT_MONOBLACK ? 255 : 0;
            for (int x = 0; x < w; x++) {
                uint8_t v = (s[x >> 3] >> (7 - (x & 7))) & 1 ? one : (uint8_t)(255 - one);
                d[3 * x] = d[3 * x + 1] = d[3 * x + 2] = v;
            }
            break;
        }
        case AV_PIX_FMT_RGB555LE:
        case AV_PIX_FMT_RGB565LE:
        case AV_PIX_FMT_RGB555BE:
        case AV_PIX_FMT_RGB565BE: {
            int le = fmt == AV_PIX_FMT_RGB555LE || fmt == AV_PIX_FMT_RGB565LE;
            int g6 = fmt == AV_PIX_FMT_RGB565LE || fmt == AV_PIX_FMT_RGB565BE;
            for (int x = 0; x < w; x++) {
                const uint8_t *p = s + 2 * x;
                unsigned v = le ? p[0] | (p[1] << 8) : (p[0] << 8) | p[1];
                unsigned rr = g6 ? (v >> 11) & 31 : (v >> 10) & 31;
                unsigned gg = g6 ? (v >> 5) & 63 : (v >> 5) & 31;
                d[3 * x] = (uint8_t)(rr * 255 / 31);
                d[3 * x + 1] = (uint8_t)(gg * 255 / (g6 ? 63 : 31));
                d[3 * x + 2] = (uint8_t)((v & 31) * 255 / 31);
            }
            break;
        }
        case AV_PIX_FMT_GBRP:
        case AV_PIX_FMT_GBRAP: {
            const uint8_t *pg = s;
            const uint8_t *pb = f->data[1] + (ptrdiff_t)y * f->linesize[1];
            const uint8_t *pr = f->data[2] + (ptrdiff_t)y * f->linesize[2];
            for (int x = 0; x < w; x++) {
                d[3 * x] = pr[x];
                d[3 * x + 1] = pg[x];
                d[3 * x + 2] = pb[x];
            }
            break;
        }
        case AV_PIX_FMT_YUV420P:
        case AV_PIX_FMT_YUVA420P:
            if (rules && rules->webp_yuv) {
                webp_yuv420_to_rgb(f, rgb);
                return VLM_OK;
            }
            /* fall through */
        default: {
            struct SwsContext *sws = NULL;
            int rc = vlm_av_sws_rgb(&sws, f, rgb, w * 3, 1);
            sws_freeContext(sws);
            return rc;
        }
        }
    }
    return VLM_OK;
}

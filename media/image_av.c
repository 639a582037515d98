/* GIF, WebP, BMP, TIFF and AVIF through libavcodec, with Pillow 9.4.0's results.
 *
 * Order of work for every format: parse the header ourselves (media/image_header.c),
 * apply the pixel budget and the decoded-bytes budget to the size found there,
 * and only then let a decoder run, with its own max_pixels set to the budget and
 * every frame buffer it asks for counted against the bytes budget.  The whole
 * file goes to the decoder as one packet (AVIF: through the ISO-BMFF demuxer).
 *
 * What Pillow does and how it is reproduced here:
 *   GIF   frame 0 only; the canvas is the logical screen, grown to hold frame 0;
 *         pixels outside frame 0 take palette entry "transparency" (if frame 0 has
 *         one) else entry 0; transparent pixels show their palette colour; the
 *         palette is frame 0's local table, else the global one, and entries past
 *         its end are (i, i, i).  FFmpeg decodes the LZW data to BGRA; the indexes
 *         it hides (transparent pixels, the area outside frame 0) are filled in
 *         from the header.
 *   WebP  lossy: libwebp's fancy upsampler + BT.601 fixed-point matrix on the
 *         VP8 planes (bit-exact); lossless: ARGB as decoded; alpha dropped.
 *         Animations: frame 0 on a transparent-black canvas at its offset (what
 *         libwebp's WebPAnimDecoder gives Pillow); FFmpeg 5 cannot decode ANMF,
 *         so frame 0's chunks are rewrapped as a still WebP first.
 *   BMP   palettes, 5-5-5 / 5-6-5 scaled by v*255/31 (v*255/63), 24/32-bit, RLE.
 *   TIFF  first page; 16-bit grey clipped (PIL "I;16"), 16-bit RGB high byte,
 *         premultiplied alpha divided out (PIL "RGBa").
 *   AVIF  (Pillow 9.4 has no AVIF; Pillow 11+ reads it with libavif + libyuv) the
 *         primary item's AV1 frame through libdav1d, then libyuv's integer matrix
 *         and bilinear chroma upsampling, redone here (8-bit 4:2:0/4:2:2/4:4:4/4:0:0
 *         with BT.601/709/2020 matrices); other depths and matrices go through
 *         libswscale (close, not bit-exact).
 * Known differences (rare inputs):
 *   CMYK TIFF: FFmpeg converts CMYK to RGB itself, with truncation where PIL
 *   rounds (values differ by at most 1); a GIF palette index past the end of
 *   its colour table comes out black (PIL: grey i); a GIF frame 0 reaching past
 *   the logical screen is cut at the screen by FFmpeg (PIL grows the canvas and
 *   shows the pixels; we give the fill colour there). */
#include <stdlib.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>

#include "core/error.h"
#include "media/av_util.h"
#include "media/image_avpix.h"
#include "media/image_codecs.h"

typedef struct {
    int64_t used, budget;
    int refused;
    int64_t refused_need;
} byte_budget;

/* Every picture buffer the decoder asks for is counted; past the budget it gets
 * ENOMEM and the decode fails with VLM_ERR_LIMIT. */
static int budget_get_buffer(AVCodecContext *c, AVFrame *f, int flags)
{
    byte_budget *b = (byte_budget *)c->opaque;
    int64_t need = vlm_av_frame_bytes(f->format, f->width, f->height);
    if (need < 0 || need > b->budget - b->used) {
        b->refused = 1;
        b->refused_need = need;
        return AVERROR(ENOMEM);
    }
    b->used += need;
    return avcodec_default_get_buffer2(c, f, flags);
}

/* Decodes one packet (the whole file, or one demuxed packet) into frame. */
static int decode_packet(const AVCodec *codec, const AVCodecParameters *par, const uint8_t *data,
                         size_t size, const vlm_image_limits *lim, int64_t budget,
                         const char *what, AVFrame *frame)
{
    if (!codec) return vlm_errorf(VLM_ERR_UNSUPPORTED, "%s: this FFmpeg has no decoder for it", what);
    if (size > INT32_MAX - AV_INPUT_BUFFER_PADDING_SIZE)
        return vlm_errorf(VLM_ERR_LIMIT, "%s: file too large (%zu bytes)", what, size);
    byte_budget bb = {0, budget, 0, 0};
    AVCodecContext *c = avcodec_alloc_context3(codec);
    AVPacket *pkt = av_packet_alloc();
    int rc = VLM_OK, r;
    if (!c || !pkt) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "%s: out of memory", what);
        goto done;
    }
    if (par && (r = avcodec_parameters_to_context(c, par)) < 0) {
        rc = vlm_av_error(r, what);
        goto done;
    }
    c->thread_count = 1;
    c->max_pixels = lim->max_pixels;
    c->opaque = &bb;
    c->get_buffer2 = budget_get_buffer;
    if ((r = avcodec_open2(c, codec, NULL)) < 0) {
        rc = vlm_av_error(r, what);
        goto done;
    }
    if ((r = av_new_packet(pkt, (int)size)) < 0) {
        rc = vlm_av_error(r, what);
        goto done;
    }
    memcpy(pkt->data, data, size);
    pkt->flags |= AV_PKT_FLAG_KEY;
    r = avcodec_send_packet(c, pkt);
    if (r >= 0) {
        r = avcodec_receive_frame(c, frame);
        if (r == AVERROR(EAGAIN)) { /* decoders with delay: drain */
            avcodec_send_packet(c, NULL);
            r = avcodec_receive_frame(c, frame);
        }
    }
    if (r < 0) {
        if (bb.refused)
            rc = vlm_errorf(VLM_ERR_LIMIT,
                            "%s: decoding needs more than the decoded-bytes limit of %lld bytes",
                            what, (long long)vlm_image_max_bytes(lim));
        else if (r == AVERROR_EOF || r == AVERROR(EAGAIN))
            rc = vlm_errorf(VLM_ERR_FORMAT, "%s: no picture could be decoded (truncated or corrupt)",
                            what);
        else if (r == AVERROR(ENOMEM))
            rc = vlm_errorf(VLM_ERR_NOMEM, "%s: out of memory while decoding", what);
        else if (r == AVERROR_PATCHWELCOME || r == AVERROR(ENOSYS))
            rc = vlm_errorf(VLM_ERR_UNSUPPORTED, "%s: this variant of the format is not supported", what);
        else {
            char msg[AV_ERROR_MAX_STRING_SIZE] = {0};
            av_strerror(r, msg, sizeof msg);
            rc = vlm_errorf(VLM_ERR_FORMAT, "%s: corrupt file (the decoder failed: %s)", what, msg);
        }
        av_frame_unref(frame);
    }
done:
    av_packet_free(&pkt);
    avcodec_free_context(&c);
    return rc;
}

/* Size checks before decoding: the pixel budget, then the bytes of the decoder's
 * frame (est_bpp bytes per pixel) plus our RGB copy. */
static int precheck(const char *what, int64_t w, int64_t h, int est_bpp, const vlm_image_limits *lim)
{
    int rc = vlm_image_check_limits(what, w, h, lim);
    if (rc) return rc;
    return vlm_image_check_bytes(what, w * h * (est_bpp + 3), lim);
}

/* The decoded frame to a freshly allocated RGB image of the frame's size. */
static int frame_to_image(const AVFrame *f, const vlm_pil_rules *rules, const char *what,
                          const vlm_image_limits *lim, vlm_image *out)
{
    int rc = vlm_image_check_limits(what, f->width, f->height, lim);
    if (rc) return rc;
    uint8_t *rgb = (uint8_t *)malloc((size_t)f->width * f->height * 3 + VLM_AV_SWS_SLACK);
    if (!rgb) return vlm_errorf(VLM_ERR_NOMEM, "%s: out of memory for %dx%d", what, f->width, f->height);
    if ((rc = vlm_av_frame_to_rgb(f, rules, rgb)) != VLM_OK) {
        free(rgb);
        return vlm_error_prefix(rc, "%s", what);
    }
    out->width = f->width;
    out->height = f->height;
    out->rgb = rgb;
    return VLM_OK;
}

static int64_t rest_budget(const vlm_image_limits *lim, int64_t w, int64_t h)
{
    return vlm_image_max_bytes(lim) - w * h * 3;
}

/* ---- GIF --------------------------------------------------------------------- */

static int decode_gif(const uint8_t *data, size_t size, const vlm_image_limits *lim, vlm_image *out)
{
    vlm_gif_header g;
    int rc = vlm_gif_parse(data, size, &g);
    if (rc) return rc;
    int64_t W = g.x + g.w > g.screen_w ? g.x + g.w : g.screen_w;
    int64_t H = g.y + g.h > g.screen_h ? g.y + g.h : g.screen_h;
    if ((rc = precheck("gif", W, H, 4, lim)) != VLM_OK) return rc;
    if (!g.data_complete) return vlm_errorf(VLM_ERR_FORMAT, "gif: file is truncated (in frame 0)");
    if (!g.has_palette)
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "gif: frame 0 has no colour table");
    AVFrame *f = av_frame_alloc();
    if (!f) return vlm_errorf(VLM_ERR_NOMEM, "gif: out of memory");
    rc = decode_packet(avcodec_find_decoder(AV_CODEC_ID_GIF), NULL, data, size, lim,
                       rest_budget(lim, W, H), "gif", f);
    if (rc) goto done;
    if (f->format != AV_PIX_FMT_BGRA) {
        rc = vlm_errorf(VLM_ERR_UNSUPPORTED, "gif: unexpected decoder output");
        goto done;
    }
    uint8_t *rgb = (uint8_t *)malloc((size_t)W * H * 3);
    if (!rgb) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "gif: out of memory");
        goto done;
    }
    const uint8_t *fill = g.pal[g.trans >= 0 ? g.trans : 0];
    for (int64_t i = 0; i < W * H; i++) memcpy(rgb + 3 * i, fill, 3);
    /* Frame 0's rectangle, as far as FFmpeg kept it (it stops at the screen). */
    int x1 = g.x + g.w < f->width ? g.x + g.w : f->width;
    int y1 = g.y + g.h < f->height ? g.y + g.h : f->height;
    for (int y = g.y; y < y1; y++) {
        const uint8_t *s = f->data[0] + (ptrdiff_t)y * f->linesize[0];
        uint8_t *d = rgb + ((size_t)y * W) * 3;
        for (int x = g.x; x < x1; x++) {
            const uint8_t *p = s + 4 * x;
            if (p[3] == 255 || g.trans < 0) {
                d[3 * x] = p[2];
                d[3 * x + 1] = p[1];
                d[3 * x + 2] = p[0];
            } else {
                memcpy(d + 3 * x, g.pal[g.trans], 3);
            }
        }
    }
    out->width = (int)W;
    out->height = (int)H;
    out->rgb = rgb;
done:
    av_frame_free(&f);
    return rc;
}

/* ---- WebP -------------------------------------------------------------------- */

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint8_t *put_chunk(uint8_t *p, const char *tag, const uint8_t *data, size_t len)
{
    memcpy(p, tag, 4);
    put_le32(p + 4, (uint32_t)len);
    memcpy(p + 8, data, len);
    p += 8 + len;
    if (len & 1) *p++ = 0;
    return p;
}

/* Frame 0 of an animation as a still WebP file (VP8X + ALPH + VP8 when it has an
 * alpha chunk, else the bare VP8/VP8L chunk). */
static uint8_t *webp_still_from_frame(const vlm_webp_header *w, size_t *len)
{
    size_t n = 12 + 8 + w->bits_len + 1;
    if (w->alph) n += 18 + 8 + w->alph_len + 1;
    uint8_t *buf = (uint8_t *)malloc(n);
    if (!buf) return NULL;
    uint8_t *p = buf + 12;
    if (w->alph) {
        uint8_t vp8x[10] = {0x10, 0, 0, 0};
        uint32_t cw = (uint32_t)w->fw - 1, ch = (uint32_t)w->fh - 1;
        vp8x[4] = (uint8_t)cw, vp8x[5] = (uint8_t)(cw >> 8), vp8x[6] = (uint8_t)(cw >> 16);
        vp8x[7] = (uint8_t)ch, vp8x[8] = (uint8_t)(ch >> 8), vp8x[9] = (uint8_t)(ch >> 16);
        p = put_chunk(p, "VP8X", vp8x, 10);
        p = put_chunk(p, "ALPH", w->alph, w->alph_len);
    }
    p = put_chunk(p, w->lossless ? "VP8L" : "VP8 ", w->bits, w->bits_len);
    memcpy(buf, "RIFF", 4);
    put_le32(buf + 4, (uint32_t)(p - buf - 8));
    memcpy(buf + 8, "WEBP", 4);
    *len = (size_t)(p - buf);
    return buf;
}

static int decode_webp(const uint8_t *data, size_t size, const vlm_image_limits *lim, vlm_image *out)
{
    vlm_webp_header w;
    int rc = vlm_webp_parse(data, size, &w);
    if (rc) return rc;
    if ((rc = precheck("webp", w.width, w.height, 4, lim)) != VLM_OK) return rc;
    vlm_pil_rules rules = {1, 0, 0, 0, AVCOL_SPC_UNSPECIFIED};
    const AVCodec *codec = avcodec_find_decoder(AV_CODEC_ID_WEBP);
    AVFrame *f = av_frame_alloc();
    if (!f) return vlm_errorf(VLM_ERR_NOMEM, "webp: out of memory");
    if (!w.animated) {
        rc = decode_packet(codec, NULL, data, size, lim, rest_budget(lim, w.width, w.height),
                           "webp", f);
        if (rc == VLM_OK && (f->width != w.width || f->height != w.height))
            rc = vlm_errorf(VLM_ERR_FORMAT, "webp: decoded %dx%d, header says %dx%d", f->width,
                            f->height, w.width, w.height);
        if (rc == VLM_OK) rc = frame_to_image(f, &rules, "webp", lim, out);
        av_frame_free(&f);
        return rc;
    }
    size_t slen;
    uint8_t *still = webp_still_from_frame(&w, &slen);
    uint8_t *frame_rgb = NULL, *rgb = NULL;
    if (!still) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "webp: out of memory");
        goto done;
    }
    rc = decode_packet(codec, NULL, still, slen, lim, rest_budget(lim, w.width, w.height) -
                       (int64_t)w.fw * w.fh * 3, "webp (animation frame 0)", f);
    if (rc) goto done;
    if (f->width != w.fw || f->height != w.fh) {
        rc = vlm_errorf(VLM_ERR_FORMAT, "webp: frame 0 decoded as %dx%d, header says %dx%d",
                        f->width, f->height, w.fw, w.fh);
        goto done;
    }
    frame_rgb = (uint8_t *)malloc((size_t)w.fw * w.fh * 3 + VLM_AV_SWS_SLACK);
    rgb = (uint8_t *)calloc((size_t)w.width * w.height, 3); /* transparent black canvas */
    if (!frame_rgb || !rgb) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "webp: out of memory");
        goto done;
    }
    if ((rc = vlm_av_frame_to_rgb(f, &rules, frame_rgb)) != VLM_OK) goto done;
    for (int y = 0; y < w.fh; y++)
        memcpy(rgb + ((size_t)(w.fy + y) * w.width + w.fx) * 3, frame_rgb + (size_t)y * w.fw * 3,
               (size_t)w.fw * 3);
    out->width = w.width;
    out->height = w.height;
    out->rgb = rgb;
    rgb = NULL;
done:
    free(still);
    free(frame_rgb);
    free(rgb);
    av_frame_free(&f);
    return rc;
}

/* ---- BMP / TIFF ------------------------------------------------------------------ */

static int decode_simple(enum AVCodecID id, const char *what, int64_t w, int64_t h, int est_bpp,
                         const vlm_pil_rules *rules, const uint8_t *data, size_t size,
                         const vlm_image_limits *lim, vlm_image *out)
{
    int rc = precheck(what, w, h, est_bpp, lim);
    if (rc) return rc;
    AVFrame *f = av_frame_alloc();
    if (!f) return vlm_errorf(VLM_ERR_NOMEM, "%s: out of memory", what);
    rc = decode_packet(avcodec_find_decoder(id), NULL, data, size, lim, rest_budget(lim, w, h), what, f);
    if (rc == VLM_OK && (f->width != w || f->height != h))
        rc = vlm_errorf(VLM_ERR_FORMAT, "%s: decoded %dx%d, header says %lldx%lld", what, f->width,
                        f->height, (long long)w, (long long)h);
    if (rc == VLM_OK) rc = frame_to_image(f, rules, what, lim, out);
    av_frame_free(&f);
    return rc;
}

static int decode_bmp(const uint8_t *data, size_t size, const vlm_image_limits *lim, vlm_image *out)
{
    int w, h, bits;
    uint64_t need;
    int rc = vlm_bmp_parse(data, size, &w, &h, &bits, &need);
    if (rc) return rc;
    if ((rc = precheck("bmp", w, h, 4, lim)) != VLM_OK) return rc;
    /* Every uncompressed row must be in the file (Pillow refuses a short file;
     * FFmpeg would too, with a vaguer message). */
    if (need == UINT64_MAX)
        return vlm_errorf(VLM_ERR_FORMAT, "bmp: file is truncated (the RLE data ends before the picture does)");
    if (need > size)
        return vlm_errorf(VLM_ERR_FORMAT, "bmp: file is truncated (pixel data needs %llu bytes, the file has %zu)",
                          (unsigned long long)need, size);
    vlm_pil_rules rules = {0, 0, 0, 0, AVCOL_SPC_UNSPECIFIED};
    return decode_simple(AV_CODEC_ID_BMP, "bmp", w, h, 4, &rules, data, size, lim, out);
}

static int decode_tiff(const uint8_t *data, size_t size, const vlm_image_limits *lim, vlm_image *out)
{
    vlm_tiff_header t;
    int rc = vlm_tiff_parse(data, size, &t);
    if (rc) return rc;
    /* Bytes per pixel of the decoder's frame, bounded (the tags are untrusted). */
    int64_t bps = t.bits <= 0 ? 1 : t.bits > 64 ? 8 : (t.bits + 7) / 8;
    int64_t spp = t.samples <= 0 ? 1 : t.samples > 8 ? 8 : t.samples;
    int bpp = (int)(bps * spp);
    if ((rc = precheck("tiff", t.width, t.height, bpp, lim)) != VLM_OK) return rc;
    if (t.data_end > size)
        return vlm_errorf(VLM_ERR_FORMAT, "tiff: file is truncated (image data needs %llu bytes, the file has %zu)",
                          (unsigned long long)t.data_end, size);
    vlm_pil_rules rules = {0, t.assoc_alpha, 1, 0, AVCOL_SPC_UNSPECIFIED};
    return decode_simple(AV_CODEC_ID_TIFF, "tiff", t.width, t.height, bpp, &rules, data, size, lim, out);
}

/* ---- AVIF ----------------------------------------------------------------------- */

/* Opens the ISO-BMFF demuxer on memory and finds the picture's stream. */
static int avif_open(vlm_av_source *src, AVFormatContext **fc, int *stream)
{
    int rc = vlm_av_open(src, "mov", "avif", fc);
    if (rc) return rc == VLM_ERR_UNSUPPORTED ? vlm_errorf(VLM_ERR_FORMAT, "avif: corrupt file") : rc;
    int si = av_find_best_stream(*fc, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
    if (si < 0) {
        vlm_av_close(fc);
        return vlm_errorf(VLM_ERR_FORMAT, "avif: no picture found in the file");
    }
    *stream = si;
    return VLM_OK;
}

static int decode_avif(const uint8_t *data, size_t size, const vlm_image_limits *lim, vlm_image *out)
{
    int w, h;
    int rc = vlm_avif_parse(data, size, &w, &h);
    if (rc) return rc;
    if ((rc = precheck("avif", w, h, 6, lim)) != VLM_OK) return rc;
    vlm_av_source src = {data, size, 0, NULL, 0};
    AVFormatContext *fc;
    int si = -1;
    if ((rc = avif_open(&src, &fc, &si)) != VLM_OK) return rc;
    AVPacket *pkt = av_packet_alloc();
    AVFrame *f = av_frame_alloc();
    const AVCodecParameters *par = fc->streams[si]->codecpar;
    if (!pkt || !f) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "avif: out of memory");
        goto done;
    }
    if (par->codec_id != AV_CODEC_ID_AV1) {
        rc = vlm_errorf(VLM_ERR_UNSUPPORTED, "avif: the picture is not AV1");
        goto done;
    }
    int r;
    while ((r = av_read_frame(fc, pkt)) >= 0 && pkt->stream_index != si) av_packet_unref(pkt);
    if (r < 0) {
        rc = r == AVERROR_EOF ? vlm_errorf(VLM_ERR_FORMAT, "avif: file is truncated (no picture data)")
                              : vlm_av_error(r, "avif");
        goto done;
    }
    const AVCodec *codec = avcodec_find_decoder_by_name("libdav1d");
    if (!codec) codec = avcodec_find_decoder(AV_CODEC_ID_AV1);
    rc = decode_packet(codec, par, pkt->data, (size_t)pkt->size, lim,
                       rest_budget(lim, w, h), "avif", f);
    if (rc == VLM_OK) {
        vlm_pil_rules rules = {0, 0, 0, 1, (int)par->color_space};
        rc = frame_to_image(f, &rules, "avif", lim, out);
    }
done:
    av_packet_free(&pkt);
    av_frame_free(&f);
    vlm_av_close(&fc);
    return rc;
}

int vlm_image_decode_av(vlm_image_format fmt, const uint8_t *data, size_t size,
                        const vlm_image_limits *lim, vlm_image *out)
{
    memset(out, 0, sizeof *out);
    vlm_av_init();
    switch (fmt) {
    case VLM_IMAGE_GIF: return decode_gif(data, size, lim, out);
    case VLM_IMAGE_WEBP: return decode_webp(data, size, lim, out);
    case VLM_IMAGE_BMP: return decode_bmp(data, size, lim, out);
    case VLM_IMAGE_TIFF: return decode_tiff(data, size, lim, out);
    case VLM_IMAGE_AVIF: return decode_avif(data, size, lim, out);
    default: return vlm_errorf(VLM_ERR_UNSUPPORTED, "image: no decoder for format %d", (int)fmt);
    }
}

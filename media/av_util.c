/* FFmpeg glue: logging, error mapping, our own AVIOContext, RGB conversion. */
#include "media/av_util.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <libavutil/imgutils.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>

#include "core/error.h"

static pthread_once_t g_av_once = PTHREAD_ONCE_INIT;

static void av_init_once(void)
{
    if (!getenv("VLM_FFMPEG_LOG")) av_log_set_level(AV_LOG_QUIET);
}

void vlm_av_init(void)
{
    pthread_once(&g_av_once, av_init_once);
}

int vlm_av_error(int averr, const char *what)
{
    char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
    av_strerror(averr, buf, sizeof buf);
    int code;
    if (averr == AVERROR(ENOMEM))
        code = VLM_ERR_NOMEM;
    else if (averr == AVERROR(EIO))
        code = VLM_ERR_IO;
    else if (averr == AVERROR_PATCHWELCOME || averr == AVERROR_DECODER_NOT_FOUND ||
             averr == AVERROR_DEMUXER_NOT_FOUND || averr == AVERROR(ENOSYS))
        code = VLM_ERR_UNSUPPORTED;
    else if (averr == AVERROR(EPERM))
        code = VLM_ERR_INVALID;
    else
        code = VLM_ERR_FORMAT;
    return vlm_errorf(code, "%s: %s", what, buf);
}

/* ---- our AVIOContext ---------------------------------------------------- */

static int src_read(void *opaque, uint8_t *buf, int n)
{
    vlm_av_source *s = (vlm_av_source *)opaque;
    if (n <= 0) return 0;
    if (s->file) {
        size_t got = fread(buf, 1, (size_t)n, s->file);
        if (got == 0) return ferror(s->file) ? AVERROR(EIO) : AVERROR_EOF;
        return (int)got;
    }
    if (s->pos >= s->size) return AVERROR_EOF;
    size_t k = s->size - s->pos;
    if (k > (size_t)n) k = (size_t)n;
    memcpy(buf, s->data + s->pos, k);
    s->pos += k;
    return (int)k;
}

static int64_t src_seek(void *opaque, int64_t off, int whence)
{
    vlm_av_source *s = (vlm_av_source *)opaque;
    int64_t size = s->file ? s->file_size : (int64_t)s->size;
    whence &= ~AVSEEK_FORCE;
    if (whence == AVSEEK_SIZE) return size;
    int64_t base;
    if (s->file)
        base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? (int64_t)ftello(s->file) : size;
    else
        base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? (int64_t)s->pos : size;
    if (whence != SEEK_SET && whence != SEEK_CUR && whence != SEEK_END) return AVERROR(EINVAL);
    if ((off > 0 && base > INT64_MAX - off) || base + off < 0) return AVERROR(EINVAL);
    int64_t np = base + off;
    if (np > size) np = size; /* reading there gives EOF */
    if (s->file) {
        if (fseeko(s->file, (off_t)np, SEEK_SET) != 0) return AVERROR(EIO);
    } else {
        s->pos = (size_t)np;
    }
    return np;
}

/* Nested opens (playlists, external references, image sequences) are refused. */
static int refuse_io_open(struct AVFormatContext *s, AVIOContext **pb, const char *url, int flags,
                          AVDictionary **options)
{
    (void)s;
    (void)pb;
    (void)url;
    (void)flags;
    (void)options;
    return AVERROR(EPERM);
}

static void free_io(AVIOContext **io)
{
    if (!*io) return;
    av_freep(&(*io)->buffer);
    avio_context_free(io);
}

int vlm_av_open(vlm_av_source *src, const char *format_whitelist, const char *what,
                AVFormatContext **out)
{
    *out = NULL;
    vlm_av_init();
    if (src->file) {
        if (fseeko(src->file, 0, SEEK_END) != 0)
            return vlm_errorf(VLM_ERR_IO, "%s: cannot seek (%s)", what, strerror(errno));
        src->file_size = (int64_t)ftello(src->file);
        if (src->file_size < 0 || fseeko(src->file, 0, SEEK_SET) != 0)
            return vlm_errorf(VLM_ERR_IO, "%s: cannot seek (%s)", what, strerror(errno));
    }
    const int bufsize = 1 << 16;
    uint8_t *buf = (uint8_t *)av_malloc(bufsize);
    if (!buf) return vlm_errorf(VLM_ERR_NOMEM, "%s: out of memory", what);
    AVIOContext *io = avio_alloc_context(buf, bufsize, 0, src, src_read, NULL, src_seek);
    if (!io) {
        av_free(buf);
        return vlm_errorf(VLM_ERR_NOMEM, "%s: out of memory", what);
    }
    AVFormatContext *fc = avformat_alloc_context();
    if (!fc) {
        free_io(&io);
        return vlm_errorf(VLM_ERR_NOMEM, "%s: out of memory", what);
    }
    fc->pb = io;
    fc->flags |= AVFMT_FLAG_CUSTOM_IO;
    fc->io_open = refuse_io_open;
    if (format_whitelist && !(fc->format_whitelist = av_strdup(format_whitelist))) {
        avformat_free_context(fc);
        free_io(&io);
        return vlm_errorf(VLM_ERR_NOMEM, "%s: out of memory", what);
    }
    int r = avformat_open_input(&fc, NULL, NULL, NULL); /* frees fc on failure */
    if (r < 0) {
        free_io(&io);
        if (r == AVERROR_INVALIDDATA || r == AVERROR(EINVAL))
            return vlm_errorf(VLM_ERR_UNSUPPORTED, "%s: not a supported video container", what);
        return vlm_av_error(r, what);
    }
    *out = fc;
    return VLM_OK;
}

void vlm_av_close(AVFormatContext **fc)
{
    if (!fc || !*fc) return;
    AVIOContext *io = (*fc)->pb;
    avformat_close_input(fc); /* custom I/O: leaves io alone */
    free_io(&io);
}

/* ---- RGB conversion ---------------------------------------------------- */

static int sws_colorspace(const AVFrame *f)
{
    switch (f->colorspace) {
    case AVCOL_SPC_BT709: return SWS_CS_ITU709;
    case AVCOL_SPC_FCC: return SWS_CS_FCC;
    case AVCOL_SPC_BT470BG:
    case AVCOL_SPC_SMPTE170M: return SWS_CS_ITU601;
    case AVCOL_SPC_SMPTE240M: return SWS_CS_SMPTE240M;
    case AVCOL_SPC_BT2020_NCL:
    case AVCOL_SPC_BT2020_CL: return SWS_CS_BT2020;
    default: return f->height >= 720 ? SWS_CS_ITU709 : SWS_CS_ITU601;
    }
}

static int full_range(const AVFrame *f)
{
    switch (f->format) {
    case AV_PIX_FMT_YUVJ420P:
    case AV_PIX_FMT_YUVJ422P:
    case AV_PIX_FMT_YUVJ444P:
    case AV_PIX_FMT_YUVJ440P:
    case AV_PIX_FMT_YUVJ411P: return 1;
    default: return f->color_range == AVCOL_RANGE_JPEG;
    }
}

int vlm_av_sws_rgb(struct SwsContext **cache, const AVFrame *f, uint8_t *dst, int dst_stride,
                   int accurate)
{
    int flags = accurate ? SWS_BILINEAR | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT | SWS_FULL_CHR_H_INP
                         : SWS_BILINEAR;
    if (f->width <= 0 || f->height <= 0)
        return vlm_errorf(VLM_ERR_FORMAT, "frame has no size (%dx%d)", f->width, f->height);
    const AVPixFmtDescriptor *d = av_pix_fmt_desc_get((enum AVPixelFormat)f->format);
    if (!d || !sws_isSupportedInput((enum AVPixelFormat)f->format))
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "pixel format '%s' cannot be converted to RGB",
                          d ? d->name : "?");
    struct SwsContext *c = sws_getCachedContext(*cache, f->width, f->height,
                                                (enum AVPixelFormat)f->format, f->width, f->height,
                                                AV_PIX_FMT_RGB24, flags, NULL, NULL, NULL);
    if (!c) {
        *cache = NULL; /* sws_getCachedContext freed the old one */
        return vlm_errorf(VLM_ERR_NOMEM, "cannot set up the conversion of '%s' to RGB", d->name);
    }
    *cache = c;
    if (!(d->flags & AV_PIX_FMT_FLAG_RGB) && d->nb_components >= 3) {
        const int *coef = sws_getCoefficients(sws_colorspace(f));
        sws_setColorspaceDetails(c, coef, full_range(f), sws_getCoefficients(SWS_CS_DEFAULT), 1, 0,
                                 1 << 16, 1 << 16);
    }
    uint8_t *dsts[4] = {dst, NULL, NULL, NULL};
    int strides[4] = {dst_stride, 0, 0, 0};
    int h = sws_scale(c, (const uint8_t *const *)f->data, f->linesize, 0, f->height, dsts, strides);
    if (h != f->height) return vlm_errorf(VLM_ERR_FORMAT, "RGB conversion failed (%s)", d->name);
    return VLM_OK;
}

int64_t vlm_av_frame_bytes(int pix_fmt, int width, int height)
{
    int n = av_image_get_buffer_size((enum AVPixelFormat)pix_fmt, width, height, 1);
    return n < 0 ? -1 : (int64_t)n;
}

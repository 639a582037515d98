/* Internal to media/: FFmpeg glue shared by the image and video decoders.
 *
 * Every container is opened through an AVIOContext of ours (memory or an open
 * FILE*), never by name, with a demuxer whitelist and an io_open callback that
 * refuses everything: a playlist, a reference movie or an image-sequence pattern
 * cannot make libavformat open another file or a network address. */
#ifndef VLM_MEDIA_AV_UTIL_H
#define VLM_MEDIA_AV_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>

struct SwsContext;

/* Once per process: FFmpeg's own logging is silenced (our errors carry the
 * message) unless the environment variable VLM_FFMPEG_LOG is set. */
void vlm_av_init(void);

/* Sets the vlm error from an AVERROR and returns the matching vlm code:
 * "<what>: <FFmpeg's text>". */
int vlm_av_error(int averr, const char *what);

/* A byte source for an AVIOContext: memory (data/size) or a FILE*. */
typedef struct {
    const uint8_t *data;
    size_t size, pos;
    FILE *file;
    int64_t file_size;
} vlm_av_source;

/* Opens a demuxer on src (which must outlive the context). format_whitelist:
 * comma-separated demuxer names, NULL = no restriction beyond the io_open ban.
 * what names the input in error messages. */
int vlm_av_open(vlm_av_source *src, const char *format_whitelist, const char *what,
                AVFormatContext **out);
/* Closes what vlm_av_open opened (NULL-safe, sets *fc to NULL). */
void vlm_av_close(AVFormatContext **fc);

/* libswscale's SIMD converters write whole blocks of pixels, up to a few dozen
 * bytes past the end of a row; a destination must have this much room after its
 * last row (found by fuzzing: without it the last row overran the heap block). */
#define VLM_AV_SWS_SLACK 256

/* Converts any frame to packed RGB24 with libswscale, honouring the frame's
 * colour matrix and range (BT.601 when unspecified and height < 720, else BT.709).
 * dst needs dst_stride * height + VLM_AV_SWS_SLACK bytes.
 * *cache is reused between calls with equal geometry (free with sws_freeContext).
 * accurate: full chroma interpolation and accurate rounding (slower). */
int vlm_av_sws_rgb(struct SwsContext **cache, const AVFrame *f, uint8_t *dst, int dst_stride,
                   int accurate);

/* Bytes of one frame of this format and size (all planes), or -1. */
int64_t vlm_av_frame_bytes(int pix_fmt, int width, int height);

#endif

/* Internal to media/: the per-format decoders behind vlm_image_decode_memory. */
#ifndef VLM_MEDIA_IMAGE_CODECS_H
#define VLM_MEDIA_IMAGE_CODECS_H

#include "media/image.h"

/* Both take a non-NULL lim, leave *out zeroed on failure and set the error. */
int vlm_image_decode_png(const uint8_t *data, size_t size, const vlm_image_limits *lim,
                         vlm_image *out);
int vlm_image_decode_jpeg(const uint8_t *data, size_t size, const vlm_image_limits *lim,
                          vlm_image *out);

/* VLM_OK if a width x height image fits the budget (pixels, and its RGB8 copy
 * within the decoded-bytes budget), else VLM_ERR_LIMIT (or VLM_ERR_FORMAT for a
 * zero/negative size) with a message naming the numbers. */
int vlm_image_check_limits(const char *fmt, int64_t width, int64_t height,
                           const vlm_image_limits *lim);
/* VLM_OK if bytes fit the decoded-bytes budget, else VLM_ERR_LIMIT. */
int vlm_image_check_bytes(const char *fmt, int64_t bytes, const vlm_image_limits *lim);
/* The decoded-bytes budget in effect (0 in lim means the default). */
int64_t vlm_image_max_bytes(const vlm_image_limits *lim);

/* GIF, WebP, BMP, TIFF, AVIF through libavcodec (media/image_av.c). */
int vlm_image_decode_av(vlm_image_format fmt, const uint8_t *data, size_t size,
                        const vlm_image_limits *lim, vlm_image *out);

/* ---- header parsers (media/image_header.c): bounds-checked, no allocation ---- */

/* GIF: the logical screen and what Pillow needs for frame 0. */
typedef struct {
    int screen_w, screen_h;
    int x, y, w, h;       /* first image descriptor */
    int trans;            /* transparent index of frame 0, -1 if none */
    int has_palette;      /* a local or global colour table applies to frame 0 */
    uint8_t pal[256][3];  /* PIL's palette for frame 0: (i, i, i), then the table */
    int frames;           /* 1, or 2 when at least one more image follows */
    int data_complete;    /* frame 0's LZW sub-blocks end inside the file */
} vlm_gif_header;
int vlm_gif_parse(const uint8_t *d, size_t n, vlm_gif_header *g);

/* WebP: the canvas, and for an animation where the first frame's bitstream lies. */
typedef struct {
    int width, height;    /* canvas */
    int animated, frames;
    int fx, fy, fw, fh;   /* first frame's rectangle (animations) */
    const uint8_t *alph;  /* first frame's ALPH chunk payload (NULL if none) */
    size_t alph_len;
    const uint8_t *bits;  /* first frame's VP8 / VP8L payload */
    size_t bits_len;
    int lossless;
} vlm_webp_header;
int vlm_webp_parse(const uint8_t *d, size_t n, vlm_webp_header *w);

/* *need: the file size the pixel rows need when uncompressed, else 0; UINT64_MAX
 * when RLE data ends before covering the picture. */
int vlm_bmp_parse(const uint8_t *d, size_t n, int *width, int *height, int *bits, uint64_t *need);

typedef struct {
    int width, height;
    int samples, bits;     /* SamplesPerPixel, BitsPerSample[0] */
    int photometric;
    int assoc_alpha;       /* ExtraSamples[0] == 1 (premultiplied alpha) */
    uint64_t data_end;     /* end of the furthest strip or tile (0 if not given) */
} vlm_tiff_header;
int vlm_tiff_parse(const uint8_t *d, size_t n, vlm_tiff_header *t);

/* The largest 'ispe' (image spatial extents) of the file's items. */
int vlm_avif_parse(const uint8_t *d, size_t n, int *width, int *height);
int vlm_png_parse(const uint8_t *d, size_t n, int *width, int *height);
int vlm_jpeg_parse(const uint8_t *d, size_t n, int *width, int *height);

#endif

/* Still-image decoding to RGB8.
 *
 * PNG (libpng) and JPEG (libjpeg-turbo) give the exact bytes Pillow 9.4.0 gives for
 * Image.open(f).convert("RGB"), because the official DeepSeek-VL2 processor starts
 * from those:
 *   - the format is taken from the magic bytes, never from the file name;
 *   - grey is replicated, palettes are expanded (tRNS ignored, indexes past the
 *     end of PLTE read as grey (i, i, i) like PIL's default palette), alpha is
 *     dropped without compositing;
 *   - 16-bit PNG samples keep their high byte, except 16-bit grey, which PIL
 *     opens as mode "I" and clips to 0..255 when converting (so 256..65535 -> 255);
 *   - 1/2/4-bit grey is scaled to 0..255 (x255, x85, x17);
 *   - JPEG uses libjpeg's defaults (islow IDCT, fancy upsampling); CMYK and YCCK
 *     JPEGs are read as inverted (Adobe) CMYK and converted with PIL's formula;
 *   - EXIF orientation is not applied (PIL's open does not either).
 * A truncated file is an error (PIL: "image file is truncated"); other libjpeg
 * "corrupt data" warnings are ignored, as PIL ignores them.
 *
 * GIF (first frame), WebP (still and the first frame of animations), BMP, TIFF
 * (first page) and AVIF go through FFmpeg's libavcodec, converted to RGB the way
 * Pillow 9.4.0 does (media/image_av.c lists the rules and the few known
 * differences; AVIF, which Pillow 9.4 cannot open, follows libavif's conversion
 * within a few levels).
 *
 * The pixel budget is checked from the header before any pixel buffer exists;
 * the decoded-bytes budget bounds what a decoder may allocate for the picture
 * (checked from the header, then enforced on every buffer libavcodec asks for). */
#ifndef VLM_MEDIA_IMAGE_H
#define VLM_MEDIA_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* RGB8, row-major, width*height*3 bytes, malloc'd. */
typedef struct {
    int width, height;
    uint8_t *rgb;
} vlm_image;

typedef struct {
    int64_t max_pixels;        /* width*height above this -> VLM_ERR_LIMIT */
    int64_t max_decoded_bytes; /* decoder buffers + RGB output above this -> VLM_ERR_LIMIT;
                                  0 = VLM_IMAGE_DEFAULT_MAX_DECODED_BYTES */
} vlm_image_limits;

#define VLM_IMAGE_DEFAULT_MAX_PIXELS 50000000LL
/* 1 GiB: a 50 MP image held as 16-bit RGBA (400 MB) plus its RGB8 copy fits. */
#define VLM_IMAGE_DEFAULT_MAX_DECODED_BYTES (1LL << 30)

void vlm_image_limits_default(vlm_image_limits *l);

/* Formats recognised from the first bytes (never from a name). */
typedef enum {
    VLM_IMAGE_UNKNOWN = 0,
    VLM_IMAGE_PNG,
    VLM_IMAGE_JPEG,
    VLM_IMAGE_GIF,
    VLM_IMAGE_WEBP,
    VLM_IMAGE_BMP,
    VLM_IMAGE_TIFF,
    VLM_IMAGE_AVIF,
} vlm_image_format;

/* The format of the bytes, VLM_IMAGE_UNKNOWN if none of the above (16 bytes are
 * enough to decide; fewer may give UNKNOWN). */
vlm_image_format vlm_image_detect(const void *data, size_t size);
/* "png", "jpeg", "gif", "webp", "bmp", "tiff", "avif" ("unknown"). */
const char *vlm_image_format_name(vlm_image_format f);
/* "image/png", ... (NULL for VLM_IMAGE_UNKNOWN). */
const char *vlm_image_format_mime(vlm_image_format f);

/* Header facts, read without decoding any pixel. */
typedef struct {
    vlm_image_format format;
    int width, height;
    int frames; /* GIF/WebP: >1 when animated (only the first frame is decoded); else 1 */
} vlm_image_info;

/* VLM_OK with *info filled; VLM_ERR_UNSUPPORTED (unknown format), VLM_ERR_FORMAT
 * (header unreadable). Does not apply the pixel budget. */
int vlm_image_probe_memory(const void *data, size_t size, vlm_image_info *info);

/* lim may be NULL (defaults). On failure *out is zeroed and vlm_last_error()
 * says why: VLM_ERR_IO (cannot read the file), VLM_ERR_FORMAT (empty, truncated,
 * corrupt), VLM_ERR_UNSUPPORTED (not one of the formats above, or a variant the
 * decoders reject), VLM_ERR_LIMIT (too many pixels or decoded bytes), VLM_ERR_NOMEM. */
int vlm_image_decode_file(const char *path, const vlm_image_limits *lim, vlm_image *out);
int vlm_image_decode_memory(const void *data, size_t size, const vlm_image_limits *lim,
                            vlm_image *out);
void vlm_image_free(vlm_image *img);

#ifdef __cplusplus
}
#endif
#endif

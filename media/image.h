/* Still-image decoding to RGB8 (PNG via libpng, JPEG via libjpeg-turbo).
 *
 * The goal is the exact bytes Pillow 9.4.0 gives for Image.open(f).convert("RGB"),
 * because the official DeepSeek-VL2 processor starts from those:
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
 * The pixel budget is checked from the header before any pixel buffer exists. */
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
    int64_t max_pixels; /* width*height above this -> VLM_ERR_LIMIT */
} vlm_image_limits;

#define VLM_IMAGE_DEFAULT_MAX_PIXELS 50000000LL

void vlm_image_limits_default(vlm_image_limits *l);

/* lim may be NULL (defaults). On failure *out is zeroed and vlm_last_error()
 * says why: VLM_ERR_IO (cannot read the file), VLM_ERR_FORMAT (empty, truncated,
 * corrupt), VLM_ERR_UNSUPPORTED (not PNG/JPEG, or a variant the decoders reject),
 * VLM_ERR_LIMIT (too many pixels), VLM_ERR_NOMEM. */
int vlm_image_decode_file(const char *path, const vlm_image_limits *lim, vlm_image *out);
int vlm_image_decode_memory(const void *data, size_t size, const vlm_image_limits *lim,
                            vlm_image *out);
void vlm_image_free(vlm_image *img);

#ifdef __cplusplus
}
#endif
#endif

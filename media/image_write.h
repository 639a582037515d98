/* Writing RGB8 images as PNG (libpng's simplified write API): 8-bit RGB, no
 * alpha, marked sRGB (an sRGB chunk, nothing else besides the pixels),
 * default compression. Reading the file back (vlm_image_decode_file) gives the
 * same pixels. JPEG (libjpeg-turbo) for dumps that need not be exact. */
#ifndef VLM_MEDIA_IMAGE_WRITE_H
#define VLM_MEDIA_IMAGE_WRITE_H

#include <stddef.h>

#include "media/image.h"

#ifdef __cplusplus
extern "C" {
#endif

/* PNG bytes of img in a malloc'd buffer (*data, *size). Errors:
 * VLM_ERR_INVALID (no pixels, or a size PNG cannot hold), VLM_ERR_NOMEM. */
int vlm_image_encode_png(const vlm_image *img, void **data, size_t *size);

/* Writes img to path as PNG. The image is encoded first, so a failure to
 * encode leaves no file; VLM_ERR_IO names the path when it cannot be written
 * (a partly written file is removed). */
int vlm_image_write_png(const char *path, const vlm_image *img);

/* JPEG through libjpeg-turbo: baseline, YCbCr 4:2:0, quality 1..100 (0 = 95). Lossy: reading it back
 * gives pixels near the original, not the same. */
int vlm_image_encode_jpeg(const vlm_image *img, int quality, void **data, size_t *size);
int vlm_image_write_jpeg(const char *path, const vlm_image *img, int quality);

/* The format a file name asks for, from its extension (case-insensitive): VLM_IMAGE_PNG for .png,
 * VLM_IMAGE_JPEG for .jpg / .jpeg; VLM_IMAGE_UNKNOWN for anything else. */
vlm_image_format vlm_image_format_for_path(const char *path);
/* Writes img in the format the extension names (PNG, or JPEG at quality 95); another extension is
 * VLM_ERR_INVALID naming the path, with nothing written. */
int vlm_image_write(const char *path, const vlm_image *img);

/* Output-name patterns ("frames_%04d.png"): *n_conversions is 0 (a plain name) or 1 (one integer
 * conversion: %d, %i or %u with optional flags "0-+ #" and a width up to 3 digits); "%%" is a
 * literal %. Anything else (a second conversion, %s, %n, a precision or length modifier, a lone %)
 * is VLM_ERR_INVALID with a message naming the pattern. */
int vlm_image_path_pattern(const char *pattern, int *n_conversions);
/* The name for index i of a checked pattern (the pattern itself when it has no conversion);
 * VLM_ERR_INVALID when it does not fit out[cap]. */
int vlm_image_path_format(const char *pattern, int i, char *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif

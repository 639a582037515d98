/* Writing RGB8 images as PNG (libpng's simplified write API): 8-bit RGB, no
 * alpha, marked sRGB (an sRGB chunk, nothing else besides the pixels),
 * default compression. Reading the file back (vlm_image_decode_file) gives the
 * same pixels. */
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

#ifdef __cplusplus
}
#endif
#endif

/* Internal to media/: the per-format decoders behind vlm_image_decode_memory. */
#ifndef VLM_MEDIA_IMAGE_CODECS_H
#define VLM_MEDIA_IMAGE_CODECS_H

#include "media/image.h"

/* Both take a non-NULL lim, leave *out zeroed on failure and set the error. */
int vlm_image_decode_png(const uint8_t *data, size_t size, const vlm_image_limits *lim,
                         vlm_image *out);
int vlm_image_decode_jpeg(const uint8_t *data, size_t size, const vlm_image_limits *lim,
                          vlm_image *out);

/* VLM_OK if a width x height image fits the budget, else VLM_ERR_LIMIT (or
 * VLM_ERR_FORMAT for a zero/negative size) with a message naming both numbers. */
int vlm_image_check_limits(const char *fmt, int64_t width, int64_t height,
                           const vlm_image_limits *lim);

#endif

/* Image embeddings kept for reuse: the image-token rows (after the projector and the newline /
 * separator layout) of an image, keyed by a 128-bit hash of its preprocessed tiles (which follow
 * from the decoded pixels and the preprocessing parameters) and its tile grid. Least recently used
 * entries are dropped when the bytes exceed the capacity. Not thread-safe (the engine thread). */
#ifndef VLM_FUSION_IMAGE_CACHE_H
#define VLM_FUSION_IMAGE_CACHE_H

#include <stdint.h>

#include "vision/preprocess.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct { uint64_t lo, hi; } vlm_image_key;

/* The key of a preprocessed image. */
vlm_image_key vlm_image_key_of(const vlm_image_tiles *it, int tile_size);

typedef struct vlm_image_cache vlm_image_cache;
int vlm_image_cache_new(int64_t capacity_bytes, vlm_image_cache **out);
void vlm_image_cache_free(vlm_image_cache *c);
/* The cached rows [rows, width] of key, or NULL; valid until the next put. */
const float *vlm_image_cache_get(vlm_image_cache *c, vlm_image_key key, int64_t rows, int64_t width);
/* Keeps a copy (nothing happens when it does not fit the capacity or memory is short). */
void vlm_image_cache_put(vlm_image_cache *c, vlm_image_key key, const float *data, int64_t rows, int64_t width);
int64_t vlm_image_cache_bytes(const vlm_image_cache *c);

#ifdef __cplusplus
}
#endif
#endif

/* DeepSeek-VL2 image preprocessing (official DeepseekVLV2Processor, PIL 9.4.0):
 * an RGB image becomes [global view, local tiles row-major] of tile x tile
 * pixels, CHW uint8, and later fp32 via vlm_tiles_normalize. */
#ifndef VLM_VISION_PREPROCESS_H
#define VLM_VISION_PREPROCESS_H

#include <stddef.h>
#include <stdint.h>

#include "media/image.h"
#include "vision/tiling.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int tile_size;                       /* 384 */
    const vlm_resolution *candidates;    /* not owned */
    int n_candidates;
    float mean[3], std[3];               /* 0.5 each */
    uint8_t pad_color[3];                /* 127,127,127 = int(mean*255) */
} vlm_preprocess_config;

/* The values of the official processor_config.json (tile 384, the 23 default
 * candidates, mean = std = 0.5, pad 127). */
void vlm_preprocess_config_default(vlm_preprocess_config *c);

typedef struct {
    int n_tiles, nw, nh;  /* n_tiles = 1 + nw*nh */
    uint8_t *tiles;       /* n_tiles * 3 * T * T, CHW u8, [global, local_0, ...] row-major */
} vlm_image_tiles;

/* ImageOps.pad(img, (T, T)) as the global view, ImageOps.pad(img, (W, H)) cut
 * into T x T tiles row-major as the local view, where (W, H) is the best
 * candidate when cropping != 0 and (T, T) otherwise (then the single local tile
 * equals the global view).  pad = PIL 9.4 contain (aspect kept, Python
 * round-half-even size), BICUBIC resize, paste at round((target - new) * 0.5)
 * on a pad_color canvas.  Where PIL would compute a zero-pixel side (aspect
 * ratio beyond 1:768 for T = 384; PIL raises ValueError there) that side is 1. */
int vlm_preprocess_image(const vlm_preprocess_config *c, const vlm_image *img, int cropping,
                         vlm_image_tiles *out);
void vlm_image_tiles_free(vlm_image_tiles *t);

/* out[i] = ((float)u / 255.0f - mean[ch]) / std[ch] in fp32, in exactly that order
 * (torchvision ToTensor + Normalize).  n_tiles tiles of 3 x T x T. */
void vlm_tiles_normalize(const vlm_preprocess_config *c, const uint8_t *chw_u8, size_t n_tiles,
                         float *out);

/* ImageOps.pad of PIL 9.4.0 on RGB8 (exposed for tests): dst is tw x th RGB8. */
int vlm_preprocess_pad(const vlm_image *img, int tw, int th, const uint8_t color[3], uint8_t *dst);

#ifdef __cplusplus
}
#endif
#endif

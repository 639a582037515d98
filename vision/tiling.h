/* DeepSeek-VL2 dynamic tiling: which (W, H) canvas an image is padded to, how
 * many 384x384 tiles that gives, and how many image tokens the tiles become.
 * Follows select_best_resolution and the token count of the official
 * processing_deepseek_vl_v2.py (spec §2.1, §2.2, §2.4). */
#ifndef VLM_VISION_TILING_H
#define VLM_VISION_TILING_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int width, height;
} vlm_resolution;

#define VLM_TILING_DEFAULT_TILE 384
#define VLM_TILING_DEFAULT_N_CANDIDATES 23

/* The official candidate_resolutions list, (width, height), in its order (the
 * order decides ties): all (m*384, n*384) with m*n <= 9.  Returns the count. */
int vlm_tiling_default_candidates(const vlm_resolution **out);

/* select_best_resolution: for each candidate (W, H), s = min(W/w, H/h) (doubles),
 * eff = min(int(w*s) * int(h*s), w*h), waste = W*H - eff; keep the largest eff,
 * on equal eff the strictly smaller waste, the first on an exact tie.
 * Returns VLM_OK, or VLM_ERR_INVALID for a non-positive size or no candidates. */
int vlm_tiling_select_best(int width, int height, const vlm_resolution *cands, int n_cands,
                           vlm_resolution *best);

/* Cropping rule: dynamic tiling only when the whole request holds <= 2 images. */
static inline int vlm_tiling_cropping(int n_images_in_request) { return n_images_in_request <= 2; }

/* The canvas for one image: the best candidate when cropping, else (tile, tile). */
int vlm_tiling_target(int width, int height, int cropping, int tile_size,
                      const vlm_resolution *cands, int n_cands, vlm_resolution *target);

/* Tokens per tile side h = ceil((tile // patch) / downsample): 14 for 384/14/2. */
int vlm_tiling_tokens_per_side(int tile_size, int patch_size, int downsample_ratio);

/* Image tokens for one image with nw x nh local tiles (tile_tag "2D", global view
 * first): h*(h+1) global rows + 1 separator + (h*nh) * (h*nw + 1) local rows.
 * For h = 14: 211 + 14*nh*(14*nw + 1). */
int64_t vlm_tiling_image_tokens(int tokens_per_side, int nw, int nh);

#ifdef __cplusplus
}
#endif
#endif

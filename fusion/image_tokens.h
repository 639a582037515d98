/* Placing projected image features into the token sequence (DeepSeek-VL2
 * prepare_inputs_embeds, tile_tag "2D", global view first). For one image with
 * nw x nh local tiles and `side` tokens per tile side:
 *   global view: side rows of (side tile tokens + image_newline)
 *   view_seperator
 *   local grid:  side*nh rows of (side*nw tokens + image_newline), a row joining
 *                the same within-tile row of the nw tiles of one tile row. */
#ifndef VLM_FUSION_IMAGE_TOKENS_H
#define VLM_FUSION_IMAGE_TOKENS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int64_t vlm_image_embed_count(int side, int nw, int nh);
/* proj: the image's tiles [1 + nw*nh, side*side, H] (global first, locals row-major);
 * out: [vlm_image_embed_count(...), H]. */
void vlm_image_embeds_assemble(const float *proj, int side, int nw, int nh, const float *newline,
                               const float *separator, int64_t H, float *out);

#ifdef __cplusplus
}
#endif
#endif

/* The SigLIP vision transformer of DeepSeek-VL2 (timm VisionTransformer,
 * siglip_so400m_patch14_384): patch conv, learned position embedding, pre-norm
 * blocks with GELU(tanh) MLPs, final LayerNorm; no class token, the MAP head is
 * never run. Output: every patch token after the final norm. */
#ifndef VLM_VISION_SIGLIP_H
#define VLM_VISION_SIGLIP_H

#include "core/checkpoint.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int image_size, patch_size; /* 384, 14 */
    int width, layers, heads;   /* 1152, 27, 16 */
    int mlp_hidden;             /* int(width * mlp_ratio) = 4304 */
    float ln_eps;               /* 1e-6 */
} vlm_vision_config;

static inline int vlm_vision_grid(const vlm_vision_config *c) { return c->image_size / c->patch_size; }

typedef struct vlm_siglip vlm_siglip;

/* prefix: "vision." in DeepSeek-VL2 checkpoints. Checks every tensor's shape. */
int vlm_siglip_load(const vlm_checkpoint *ck, const char *prefix, const vlm_vision_config *cfg, vlm_siglip **out);
/* The same, converting the matrices (patch embedding, qkv, proj, fc1, fc2) to q's format at load;
 * q may be NULL (weights as stored). */
int vlm_siglip_load_q(const vlm_checkpoint *ck, const char *prefix, const vlm_vision_config *cfg,
                      const vlm_quant_spec *q, vlm_siglip **out);
void vlm_siglip_free(vlm_siglip *m);
/* pixels: [n_tiles, 3, S, S] normalised fp32; out: [n_tiles, grid*grid, width]. */
int vlm_siglip_forward(const vlm_siglip *m, const float *pixels, int n_tiles, float *out);

#ifdef __cplusplus
}
#endif
#endif

/* DeepSeek-VL2's MlpProjector, type downsample_mlp_gelu: the vision grid is
 * zero-padded to a multiple of the downsample ratio r, each r x r block is
 * concatenated channel-major (v[c*r*r + dy*r + dx], as F.unfold orders it), then an
 * MLP of `depth` Linear layers with exact-erf GELU between them. */
#ifndef VLM_FUSION_PROJECTOR_H
#define VLM_FUSION_PROJECTOR_H

#include "core/checkpoint.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int input_dim;        /* vision width, 1152 */
    int n_embed;          /* LM hidden size */
    int depth;            /* 2 */
    int mlp_ratio;        /* 1 */
    int downsample_ratio; /* 2 */
} vlm_projector_config;

typedef struct vlm_projector vlm_projector;

int vlm_projector_load(const vlm_checkpoint *ck, const char *prefix, const vlm_projector_config *cfg, vlm_projector **out);
/* The same, converting the linear layers to q's format at load (q may be NULL: as stored). */
int vlm_projector_load_q(const vlm_checkpoint *ck, const char *prefix, const vlm_projector_config *cfg,
                         const vlm_quant_spec *q, vlm_projector **out);
void vlm_projector_free(vlm_projector *p);
/* Tokens per side after downsampling a grid x grid input: ceil(grid / r). */
int vlm_projector_side(const vlm_projector_config *cfg, int grid);
/* vis: [n_tiles, grid*grid, input_dim]; out: [n_tiles, side*side, n_embed]. */
int vlm_projector_forward(const vlm_projector *p, const float *vis, int n_tiles, int grid, float *out);

#ifdef __cplusplus
}
#endif
#endif

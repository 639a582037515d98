#include "fusion/projector.h"
#include "core/error.h"
#include "core/ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vlm_projector {
    vlm_projector_config cfg;
    int n_layers;
    vlm_weight *w;
    float **b;
};

int vlm_projector_side(const vlm_projector_config *cfg, int grid)
{
    return (grid + cfg->downsample_ratio - 1) / cfg->downsample_ratio;
}

int vlm_projector_load(const vlm_checkpoint *ck, const char *prefix, const vlm_projector_config *cfg, vlm_projector **out)
{
    return vlm_projector_load_q(ck, prefix, cfg, NULL, out);
}

int vlm_projector_load_q(const vlm_checkpoint *ck, const char *prefix, const vlm_projector_config *cfg,
                         const vlm_quant_spec *q, vlm_projector **out)
{
    *out = NULL;
    if (cfg->depth < 1 || cfg->downsample_ratio < 1 || cfg->mlp_ratio < 1 || cfg->input_dim < 1 || cfg->n_embed < 1)
        return vlm_errorf(VLM_ERR_INVALID, "projector config is inconsistent (depth %d, ratio %d)", cfg->depth,
                          cfg->downsample_ratio);
    vlm_projector *p = calloc(1, sizeof *p);
    if (!p) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    p->cfg = *cfg;
    p->n_layers = cfg->depth;
    p->w = calloc((size_t)cfg->depth, sizeof *p->w);
    p->b = calloc((size_t)cfg->depth, sizeof *p->b);
    if (!p->w || !p->b) {
        vlm_projector_free(p);
        return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    }
    const int r = cfg->downsample_ratio, hidden = cfg->n_embed * cfg->mlp_ratio;
    for (int i = 0; i < cfg->depth; i++) {
        /* nn.Sequential indices: Linear at 0, 2, 4, ... with GELU between */
        int64_t in = i == 0 ? (int64_t)cfg->input_dim * r * r : hidden;
        int64_t outd = i == cfg->depth - 1 ? cfg->n_embed : hidden;
        char name[256];
        snprintf(name, sizeof name, "%slayers.%d.weight", prefix, 2 * i);
        int rc = vlm_checkpoint_weight_as(ck, name, 2, NULL, outd, in, q, &p->w[i]);
        if (rc == VLM_OK) {
            snprintf(name, sizeof name, "%slayers.%d.bias", prefix, 2 * i);
            rc = vlm_checkpoint_vector(ck, name, outd, &p->b[i]);
        }
        if (rc != VLM_OK) {
            vlm_projector_free(p);
            return rc;
        }
    }
    *out = p;
    return VLM_OK;
}

void vlm_projector_free(vlm_projector *p)
{
    if (!p) return;
    for (int i = 0; p->b && i < p->n_layers; i++) free(p->b[i]);
    for (int i = 0; p->w && i < p->n_layers; i++) vlm_weight_release(&p->w[i]);
    free(p->b);
    free(p->w);
    free(p);
}

int vlm_projector_forward(const vlm_projector *p, const float *vis, int n_tiles, int grid, float *out)
{
    const int r = p->cfg.downsample_ratio, side = vlm_projector_side(&p->cfg, grid);
    const int64_t C = p->cfg.input_dim, T = (int64_t)side * side, in0 = C * r * r;
    const int64_t hidden = (int64_t)p->cfg.n_embed * p->cfg.mlp_ratio;
    const int64_t widest = in0 > hidden ? in0 : hidden;
    float *a = malloc((size_t)(T * widest) * sizeof(float)), *b = malloc((size_t)(T * widest) * sizeof(float));
    if (!a || !b) {
        free(a);
        free(b);
        return vlm_errorf(VLM_ERR_NOMEM, "out of memory running the projector");
    }
    for (int t = 0; t < n_tiles; t++) {
        const float *x = vis + (size_t)t * grid * grid * C;
        for (int i = 0; i < side; i++)
            for (int j = 0; j < side; j++) {
                float *v = a + (size_t)(i * side + j) * in0;
                for (int dy = 0; dy < r; dy++)
                    for (int dx = 0; dx < r; dx++) {
                        int y = i * r + dy, xx = j * r + dx;
                        const float *src = (y < grid && xx < grid) ? x + ((size_t)y * grid + xx) * C : NULL;
                        for (int64_t c = 0; c < C; c++) v[c * r * r + dy * r + dx] = src ? src[c] : 0.0f;
                    }
            }
        float *cur = a, *nxt = b;
        for (int l = 0; l < p->n_layers; l++) {
            float *dst = l == p->n_layers - 1 ? out + (size_t)t * T * p->cfg.n_embed : nxt;
            vlm_op_linear(dst, cur, T, &p->w[l], p->b[l]);
            if (l < p->n_layers - 1) vlm_op_gelu_erf(dst, T * p->w[l].rows);
            float *tmp = cur;
            cur = dst;
            nxt = tmp;
        }
    }
    free(a);
    free(b);
    return VLM_OK;
}

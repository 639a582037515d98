#include "vision/siglip.h"
#include "core/error.h"
#include "core/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float *norm1_w, *norm1_b, *norm2_w, *norm2_b;
    vlm_weight qkv, proj, fc1, fc2;
    float *qkv_b, *proj_b, *fc1_b, *fc2_b;
} siglip_block;

struct vlm_siglip {
    vlm_vision_config cfg;
    vlm_weight patch_w; /* conv kernel viewed as [width, 3*p*p] */
    float *patch_b, *pos_embed, *norm_w, *norm_b;
    siglip_block *blocks;
    int fast; /* weights converted at load: the fast attention and GELU too */
};

static int load_vec(const vlm_checkpoint *ck, const char *prefix, const char *name, int64_t n, float **out)
{
    char full[256];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    return vlm_checkpoint_vector(ck, full, n, out);
}

static int load_mat(const vlm_checkpoint *ck, const char *prefix, const char *name, int64_t r, int64_t c,
                    const vlm_quant_spec *q, vlm_weight *out)
{
    char full[256];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    return vlm_checkpoint_weight_as(ck, full, 2, NULL, r, c, q, out);
}

int vlm_siglip_load(const vlm_checkpoint *ck, const char *prefix, const vlm_vision_config *cfg, vlm_siglip **out)
{
    return vlm_siglip_load_q(ck, prefix, cfg, NULL, out);
}

int vlm_siglip_load_q(const vlm_checkpoint *ck, const char *prefix, const vlm_vision_config *cfg,
                      const vlm_quant_spec *q, vlm_siglip **out)
{
    *out = NULL;
    if (cfg->patch_size <= 0 || cfg->image_size < cfg->patch_size || cfg->width <= 0 || cfg->heads <= 0 ||
        cfg->width % cfg->heads || cfg->layers <= 0 || cfg->mlp_hidden <= 0)
        return vlm_errorf(VLM_ERR_INVALID, "vision config is inconsistent (width %d, heads %d, layers %d, patch %d)",
                          cfg->width, cfg->heads, cfg->layers, cfg->patch_size);
    vlm_siglip *m = calloc(1, sizeof *m);
    if (!m) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    m->cfg = *cfg;
    m->fast = q && q->fmt != VLM_WQ_NONE;
    m->blocks = calloc((size_t)cfg->layers, sizeof *m->blocks);
    if (!m->blocks) {
        free(m);
        return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    }
    const int64_t C = cfg->width, P = cfg->patch_size, G = vlm_vision_grid(cfg), Hd = cfg->mlp_hidden;
    char name[256];
    int rc;
    {
        /* the conv kernel [C, 3, P, P] read as the matrix [C, 3*P*P] */
        int64_t shape[4] = {C, 3, P, P};
        snprintf(name, sizeof name, "%spatch_embed.proj.weight", prefix);
        if ((rc = vlm_checkpoint_weight_as(ck, name, 4, shape, C, 3 * P * P, q, &m->patch_w))) goto fail;
        int64_t pshape[3] = {1, G * G, C};
        snprintf(name, sizeof name, "%spos_embed", prefix);
        if ((rc = vlm_checkpoint_f32(ck, name, 3, pshape, &m->pos_embed))) goto fail;
    }
    if ((rc = load_vec(ck, prefix, "patch_embed.proj.bias", C, &m->patch_b)) ||
        (rc = load_vec(ck, prefix, "norm.weight", C, &m->norm_w)) ||
        (rc = load_vec(ck, prefix, "norm.bias", C, &m->norm_b)))
        goto fail;
    for (int l = 0; l < cfg->layers; l++) {
        siglip_block *b = &m->blocks[l];
        char bp[128];
        snprintf(bp, sizeof bp, "%sblocks.%d.", prefix, l);
        if ((rc = load_vec(ck, bp, "norm1.weight", C, &b->norm1_w)) || (rc = load_vec(ck, bp, "norm1.bias", C, &b->norm1_b)) ||
            (rc = load_vec(ck, bp, "norm2.weight", C, &b->norm2_w)) || (rc = load_vec(ck, bp, "norm2.bias", C, &b->norm2_b)) ||
            (rc = load_mat(ck, bp, "attn.qkv.weight", 3 * C, C, q, &b->qkv)) ||
            (rc = load_vec(ck, bp, "attn.qkv.bias", 3 * C, &b->qkv_b)) ||
            (rc = load_mat(ck, bp, "attn.proj.weight", C, C, q, &b->proj)) ||
            (rc = load_vec(ck, bp, "attn.proj.bias", C, &b->proj_b)) ||
            (rc = load_mat(ck, bp, "mlp.fc1.weight", Hd, C, q, &b->fc1)) ||
            (rc = load_vec(ck, bp, "mlp.fc1.bias", Hd, &b->fc1_b)) ||
            (rc = load_mat(ck, bp, "mlp.fc2.weight", C, Hd, q, &b->fc2)) ||
            (rc = load_vec(ck, bp, "mlp.fc2.bias", C, &b->fc2_b)))
            goto fail;
    }
    *out = m;
    return VLM_OK;
fail:
    vlm_siglip_free(m);
    return rc;
}

void vlm_siglip_free(vlm_siglip *m)
{
    if (!m) return;
    if (m->blocks)
        for (int l = 0; l < m->cfg.layers; l++) {
            siglip_block *b = &m->blocks[l];
            free(b->norm1_w); free(b->norm1_b); free(b->norm2_w); free(b->norm2_b);
            free(b->qkv_b); free(b->proj_b); free(b->fc1_b); free(b->fc2_b);
            vlm_weight_release(&b->qkv); vlm_weight_release(&b->proj);
            vlm_weight_release(&b->fc1); vlm_weight_release(&b->fc2);
        }
    free(m->blocks);
    vlm_weight_release(&m->patch_w);
    free(m->patch_b);
    free(m->pos_embed);
    free(m->norm_w);
    free(m->norm_b);
    free(m);
}

/* Gathers each stride-P patch into a row of 3*P*P values in the conv kernel's
 * (channel, ky, kx) order, so the conv becomes one matrix product. Pixels past
 * grid*P (the last 6 rows/columns at 384/14) are never read, as in the conv. */
static void im2col(const float *img, int S, int P, int G, float *cols)
{
    const int K = 3 * P * P;
    for (int gy = 0; gy < G; gy++)
        for (int gx = 0; gx < G; gx++) {
            float *row = cols + (size_t)(gy * G + gx) * K;
            for (int c = 0; c < 3; c++)
                for (int ky = 0; ky < P; ky++)
                    memcpy(row + (c * P + ky) * P, img + ((size_t)c * S + gy * P + ky) * S + gx * P, (size_t)P * sizeof(float));
        }
}

int vlm_siglip_forward(const vlm_siglip *m, const float *pixels, int n_tiles, float *out)
{
    const vlm_vision_config *c = &m->cfg;
    const int S = c->image_size, P = c->patch_size, G = vlm_vision_grid(c);
    const int64_t N = (int64_t)G * G, C = c->width, Hd = c->mlp_hidden, hd = C / c->heads;
    float *cols = malloc((size_t)N * 3 * P * P * sizeof(float));
    float *h = malloc((size_t)N * C * sizeof(float));
    float *qkv = malloc((size_t)N * 3 * C * sizeof(float));
    float *att = malloc((size_t)N * C * sizeof(float));
    float *mlp = malloc((size_t)N * Hd * sizeof(float));
    int rc = VLM_OK;
    if (!cols || !h || !qkv || !att || !mlp) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory running the vision encoder");
        goto done;
    }
    vlm_attention_params ap = {
        .n_q = N, .n_kv = N, .n_heads = c->heads, .n_kv_heads = c->heads, .qk_dim = (int)hd, .v_dim = (int)hd,
        .q_stride = 3 * C, .k_stride = 3 * C, .v_stride = 3 * C, .o_stride = C, .causal = 0,
        .scale = (float)(1.0 / sqrt((double)hd)),
    };
    for (int t = 0; t < n_tiles; t++) {
        float *x = out + (size_t)t * N * C;
        im2col(pixels + (size_t)t * 3 * S * S, S, P, G, cols);
        vlm_op_linear(x, cols, N, &m->patch_w, m->patch_b);
        vlm_op_add(x, m->pos_embed, N * C);
        for (int l = 0; l < c->layers; l++) {
            const siglip_block *b = &m->blocks[l];
            vlm_op_layernorm(h, x, N, C, b->norm1_w, b->norm1_b, c->ln_eps);
            vlm_op_linear(qkv, h, N, &b->qkv, b->qkv_b);
            rc = m->fast ? vlm_op_attention_fast(&ap, qkv, qkv + C, qkv + 2 * C, att)
                         : vlm_op_attention(&ap, qkv, qkv + C, qkv + 2 * C, att);
            if (rc) goto done;
            vlm_op_linear(h, att, N, &b->proj, b->proj_b);
            vlm_op_add(x, h, N * C);
            vlm_op_layernorm(h, x, N, C, b->norm2_w, b->norm2_b, c->ln_eps);
            vlm_op_linear(mlp, h, N, &b->fc1, b->fc1_b);
            if (m->fast)
                vlm_op_gelu_tanh_fast(mlp, N * Hd);
            else
                vlm_op_gelu_tanh(mlp, N * Hd);
            vlm_op_linear(h, mlp, N, &b->fc2, b->fc2_b);
            vlm_op_add(x, h, N * C);
        }
        vlm_op_layernorm(x, x, N, C, m->norm_w, m->norm_b, c->ln_eps);
    }
done:
    free(cols);
    free(h);
    free(qkv);
    free(att);
    free(mlp);
    return rc;
}

/* Multi-head latent attention (DeepseekV2Attention, eager): per token the cache
 * keeps the normed compressed kv c [kv_lora] and one shared roped k_pe [rope].
 *
 * Absorbed form (the official one): q_lat_h = W_UK_h^T q_nope_h, so that
 *   score_h(j) = (q_lat_h . c_j + q_pe_h . k_pe_j) * (nope + rope)^-0.5,
 *   o_h = W_UV_h (sum_j p_hj c_j),
 * which is one multi-query attention over the cache rows [c | k_pe] with the rows'
 * first kv_lora values as the shared value. Non-absorbed form: expand
 * k_h = [W_UK_h c ; k_pe], v_h = W_UV_h c for every cached token and run ordinary
 * multi-head attention. Both give the same result up to fp32 rounding.
 * RoPE on q_pe / k_pe is the interleaved-pair rotation, stored de-interleaved as
 * the official code leaves it (dot products unchanged). */
#include "text/lm_internal.h"

#include "core/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int nh, nope, rope, vd, r, qhd, row;
} mla_dims;

static int absorbed(const vlm_lm *lm, const vlm_attn_w *a, const mla_dims *d, const vlm_kv_cache *c, int l,
                    const vlm_lm_step *s, const float *q, float *o)
{
    const int64_t T = s->T;
    const int nh = d->nh, r = d->r, nope = d->nope, rope = d->rope, row = d->row, qhd = d->qhd, vd = d->vd;
    const int gw = nope > r ? nope : r;
    float *qabs = malloc((size_t)(T * nh * row) * sizeof(float));
    float *olat = malloc((size_t)(T * nh * r) * sizeof(float));
    float *gin = malloc((size_t)(T * gw) * sizeof(float));
    float *gout = malloc((size_t)(T * (r > vd ? r : vd)) * sizeof(float));
    if (!qabs || !olat || !gin || !gout) {
        free(qabs);
        free(olat);
        free(gin);
        free(gout);
        return vlm_errorf(VLM_ERR_NOMEM, "MLA attention: out of memory for %lld tokens", (long long)T);
    }
    const size_t es = vlm_dtype_size(a->kv_b.dtype);
    for (int h = 0; h < nh; h++) {
        float *dst = qabs + (int64_t)h * row;
        if (nope > 0) {
            for (int64_t t = 0; t < T; t++) memcpy(gin + t * nope, q + (t * nh + h) * qhd, (size_t)nope * sizeof(float));
            vlm_weight uk = {.dtype = a->kv_b.dtype, .rows = r, .cols = nope, .data = (const char *)a->uk_t + (size_t)h * r * nope * es};
            vlm_op_linear(gout, gin, T, &uk, NULL);
            for (int64_t t = 0; t < T; t++) memcpy(dst + t * nh * row, gout + t * r, (size_t)r * sizeof(float));
        } else {
            for (int64_t t = 0; t < T; t++) memset(dst + t * nh * row, 0, (size_t)r * sizeof(float));
        }
        for (int64_t t = 0; t < T; t++)
            memcpy(dst + t * nh * row + r, q + (t * nh + h) * qhd + nope, (size_t)rope * sizeof(float));
    }
    const float *kv = vlm_kv_rows(c, l, 0);
    vlm_attention_params p = {
        .n_q = T, .n_kv = s->pos0 + T, .n_heads = nh, .n_kv_heads = 1, .qk_dim = row, .v_dim = r,
        .q_stride = (int64_t)nh * row, .k_stride = row, .v_stride = row, .o_stride = (int64_t)nh * r,
        .causal = 1, .q_pos0 = s->pos0, .scale = (float)pow((double)qhd, -0.5),
    };
    /* converted weights: the fast attention kernels too */
    int rc = a->o.quant != VLM_WQ_NONE ? vlm_op_attention_fast(&p, qabs, kv, kv, olat)
                                       : vlm_op_attention(&p, qabs, kv, kv, olat);
    for (int h = 0; rc == VLM_OK && h < nh; h++) {
        for (int64_t t = 0; t < T; t++) memcpy(gin + t * r, olat + (t * nh + h) * r, (size_t)r * sizeof(float));
        vlm_weight uv = vlm_weight_rows(&a->kv_b, (int64_t)h * (nope + vd) + nope, vd);
        vlm_op_linear(gout, gin, T, &uv, NULL);
        for (int64_t t = 0; t < T; t++) memcpy(o + (t * nh + h) * vd, gout + t * vd, (size_t)vd * sizeof(float));
    }
    (void)lm;
    free(qabs);
    free(olat);
    free(gin);
    free(gout);
    return rc;
}

static int expanded(const vlm_attn_w *a, const mla_dims *d, const vlm_kv_cache *c, int l, const vlm_lm_step *s,
                    const float *q, float *o)
{
    const int64_t n = s->pos0 + s->T;
    const int nh = d->nh, r = d->r, nope = d->nope, rope = d->rope, row = d->row, qhd = d->qhd, vd = d->vd;
    const int64_t kvw = (int64_t)nh * (nope + vd);
    float *lat = malloc((size_t)(n * r) * sizeof(float));
    float *kvb = malloc((size_t)(n * kvw) * sizeof(float));
    float *K = malloc((size_t)(n * nh * qhd) * sizeof(float));
    float *V = malloc((size_t)(n * nh * vd) * sizeof(float));
    if (!lat || !kvb || !K || !V) {
        free(lat);
        free(kvb);
        free(K);
        free(V);
        return vlm_errorf(VLM_ERR_NOMEM, "MLA attention: out of memory for %lld cached tokens", (long long)n);
    }
    const float *cache = vlm_kv_rows(c, l, 0);
    for (int64_t j = 0; j < n; j++) memcpy(lat + j * r, cache + j * row, (size_t)r * sizeof(float));
    vlm_op_linear(kvb, lat, n, &a->kv_b, NULL);
    for (int64_t j = 0; j < n; j++)
        for (int h = 0; h < nh; h++) {
            const float *src = kvb + j * kvw + (int64_t)h * (nope + vd);
            float *k = K + (j * nh + h) * qhd;
            memcpy(k, src, (size_t)nope * sizeof(float));
            memcpy(k + nope, cache + j * row + r, (size_t)rope * sizeof(float));
            memcpy(V + (j * nh + h) * vd, src + nope, (size_t)vd * sizeof(float));
        }
    vlm_attention_params p = {
        .n_q = s->T, .n_kv = n, .n_heads = nh, .n_kv_heads = nh, .qk_dim = qhd, .v_dim = vd,
        .q_stride = (int64_t)nh * qhd, .k_stride = (int64_t)nh * qhd, .v_stride = (int64_t)nh * vd,
        .o_stride = (int64_t)nh * vd, .causal = 1, .q_pos0 = s->pos0, .scale = (float)pow((double)qhd, -0.5),
    };
    int rc = vlm_op_attention(&p, q, K, V, o);
    free(lat);
    free(kvb);
    free(K);
    free(V);
    return rc;
}

int vlm_attn_mla_forward(const vlm_lm *lm, int l, vlm_kv_cache *c, const vlm_lm_step *s, const float *x, float *out)
{
    const vlm_lm_config *cfg = &lm->cfg;
    const vlm_attn_w *a = &lm->layers[l].attn;
    mla_dims d = {cfg->num_attention_heads, cfg->qk_nope_head_dim, cfg->qk_rope_head_dim, cfg->v_head_dim,
                  cfg->kv_lora_rank, 0, 0};
    d.qhd = d.nope + d.rope;
    d.row = d.r + d.rope;
    const int64_t T = s->T, qw = (int64_t)d.nh * d.qhd;
    float *q = malloc((size_t)(T * qw) * sizeof(float));
    float *o = malloc((size_t)(T * d.nh * d.vd) * sizeof(float));
    float *qa = cfg->q_lora_rank > 0 ? malloc((size_t)(T * cfg->q_lora_rank) * sizeof(float)) : NULL;
    if (!q || !o || (cfg->q_lora_rank > 0 && !qa)) {
        free(q);
        free(o);
        free(qa);
        return vlm_errorf(VLM_ERR_NOMEM, "MLA attention: out of memory for %lld tokens", (long long)T);
    }
    if (cfg->q_lora_rank > 0) {
        vlm_op_linear(qa, x, T, &a->q_a, a->bq_a);
        vlm_op_rmsnorm(qa, qa, T, cfg->q_lora_rank, a->q_a_norm, VLM_MLA_NORM_EPS);
        vlm_op_linear(q, qa, T, &a->q_b, NULL);
    } else {
        vlm_op_linear(q, x, T, &a->q_proj, NULL);
    }
    /* [c | k_pe] of the new tokens straight into their cache rows */
    float *kv = vlm_kv_rows(c, l, 0) + s->pos0 * d.row;
    vlm_op_linear(kv, x, T, &a->kv_a, a->bkv_a);
    for (int64_t t = 0; t < T; t++) {
        const float *cs = s->cos + t * (d.rope / 2), *sn = s->sin + t * (d.rope / 2);
        vlm_op_rmsnorm(kv + t * d.row, kv + t * d.row, 1, d.r, a->kv_a_norm, VLM_MLA_NORM_EPS);
        vlm_op_rope_interleaved(kv + t * d.row + d.r, 1, d.rope, d.rope, cs, sn);
        vlm_op_rope_interleaved(q + t * qw + d.nope, d.nh, d.qhd, d.rope, cs, sn);
    }
    int rc = lm->mla_absorbed ? absorbed(lm, a, &d, c, l, s, q, o) : expanded(a, &d, c, l, s, q, o);
    if (rc == VLM_OK) vlm_op_linear(out, o, T, &a->o, a->bo);
    free(q);
    free(o);
    free(qa);
    return rc;
}

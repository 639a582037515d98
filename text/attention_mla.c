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

typedef struct {
    int nh, nope, rope, vd, r, qhd, row;
} mla_dims;

/* Allocates n buffers of the given float counts (all or none). */
static int alloc_bufs(const vlm_backend *be, int n, float **p[], const int64_t count[])
{
    int rc = VLM_OK, i;
    for (i = 0; i < n; i++) *p[i] = NULL;
    for (i = 0; i < n && rc == VLM_OK; i++) rc = be->alloc(be, (size_t)count[i] * sizeof(float), (void **)p[i]);
    if (rc != VLM_OK)
        for (i = 0; i < n; i++) {
            be->free(be, *p[i]);
            *p[i] = NULL;
        }
    return rc;
}

static int absorbed(const vlm_backend *be, const vlm_attn_w *a, const mla_dims *d, int l, const vlm_lm_step *s,
                    const float *q, float *o)
{
    const int64_t T = s->T;
    const int nh = d->nh, r = d->r, nope = d->nope, rope = d->rope, row = d->row, qhd = d->qhd, vd = d->vd;
    const int gw = nope > r ? nope : r;
    float *qabs, *olat, *gin, *gout;
    int rc = alloc_bufs(be, 4, (float **[]){&qabs, &olat, &gin, &gout},
                        (const int64_t[]){T * nh * row, T * nh * r, T * gw, T * (r > vd ? r : vd)});
    if (rc != VLM_OK) return vlm_error_prefix(rc, "MLA attention (%lld tokens)", (long long)T);
    const size_t es = vlm_dtype_size(a->kv_b.dtype);
    /* qabs row (t, h) = [W_UK_h^T q_nope(t, h) | q_pe(t, h)] */
    if (nope == 0) rc = be->zero(be, qabs, (size_t)(T * nh * row) * sizeof(float));
    for (int h = 0; h < nh && rc == VLM_OK; h++) {
        float *dst = qabs + (int64_t)h * row;
        if (nope > 0) {
            rc = be->copy_rows(be, gin, nope, q + (int64_t)h * qhd, (int64_t)nh * qhd, T, nope);
            vlm_weight uk = {.dtype = a->kv_b.dtype, .rows = r, .cols = nope, .data = (const char *)a->uk_t + (size_t)h * r * nope * es};
            if (rc == VLM_OK) rc = be->linear(be, gout, gin, T, &uk, NULL);
            if (rc == VLM_OK) rc = be->copy_rows(be, dst, (int64_t)nh * row, gout, r, T, r);
        }
        if (rc == VLM_OK) rc = be->copy_rows(be, dst + r, (int64_t)nh * row, q + (int64_t)h * qhd + nope, (int64_t)nh * qhd, T, rope);
    }
    /* one multi-query attention per sequence over its own cache */
    for (int i = 0; i < s->n && rc == VLM_OK; i++) {
        const vlm_lm_part *pt = &s->parts[i];
        const void *kv = vlm_kv_rows(pt->c, l, 0);
        vlm_attention_params p = {
            .n_q = pt->T, .n_kv = pt->pos0 + pt->T, .n_heads = nh, .n_kv_heads = 1, .qk_dim = row, .v_dim = r,
            .q_stride = (int64_t)nh * row, .k_stride = row, .v_stride = row, .o_stride = (int64_t)nh * r,
            .causal = 1, .q_pos0 = pt->pos0, .scale = (float)pow((double)qhd, -0.5), .kv_f16 = pt->c->f16,
        };
        /* converted weights: the fast attention kernels too */
        rc = be->attention(be, &p, qabs + pt->row0 * nh * row, kv, kv, olat + pt->row0 * nh * r,
                           a->o.quant != VLM_WQ_NONE);
    }
    for (int h = 0; rc == VLM_OK && h < nh; h++) {
        rc = be->copy_rows(be, gin, r, olat + (int64_t)h * r, (int64_t)nh * r, T, r);
        vlm_weight uv = vlm_weight_rows(&a->kv_b, (int64_t)h * (nope + vd) + nope, vd);
        if (rc == VLM_OK) rc = be->linear(be, gout, gin, T, &uv, NULL);
        if (rc == VLM_OK) rc = be->copy_rows(be, o + (int64_t)h * vd, (int64_t)nh * vd, gout, vd, T, vd);
    }
    be->free(be, qabs);
    be->free(be, olat);
    be->free(be, gin);
    be->free(be, gout);
    return rc;
}

/* One sequence (part pt) of the step; q and o are that sequence's rows. */
static int expanded(const vlm_backend *be, const vlm_attn_w *a, const mla_dims *d, int l, const vlm_lm_part *pt,
                    const float *q, float *o)
{
    const vlm_kv_cache *c = pt->c;
    const int64_t n = pt->pos0 + pt->T;
    const int nh = d->nh, r = d->r, nope = d->nope, rope = d->rope, row = d->row, qhd = d->qhd, vd = d->vd;
    const int64_t kvw = (int64_t)nh * (nope + vd);
    float *lat, *kvb, *K, *V;
    int rc = alloc_bufs(be, 4, (float **[]){&lat, &kvb, &K, &V}, (const int64_t[]){n * r, n * kvw, n * nh * qhd, n * nh * vd});
    if (rc != VLM_OK) return vlm_error_prefix(rc, "MLA attention (%lld cached tokens)", (long long)n);
    /* the cache's rows as fp32: lat, then the shared k_pe of each token into every head of K */
    const void *cache = vlm_kv_rows(c, l, 0);
    rc = c->f16 ? be->rows_from_f16(be, lat, r, cache, row, n, r) : be->copy_rows(be, lat, r, cache, row, n, r);
    if (rc == VLM_OK) rc = be->linear(be, kvb, lat, n, &a->kv_b, NULL);
    /* kvb row j is [k_nope | v] of each head, i.e. (j, h) rows of nope + vd values */
    if (rc == VLM_OK) rc = be->copy_rows(be, K, qhd, kvb, nope + vd, n * nh, nope);
    if (rc == VLM_OK) rc = be->copy_rows(be, V, vd, kvb + nope, nope + vd, n * nh, vd);
    for (int h = 0; h < nh && rc == VLM_OK; h++) {
        float *dst = K + (int64_t)h * qhd + nope;
        rc = c->f16 ? be->rows_from_f16(be, dst, (int64_t)nh * qhd, (const uint16_t *)cache + r, row, n, rope)
                    : be->copy_rows(be, dst, (int64_t)nh * qhd, (const float *)cache + r, row, n, rope);
    }
    vlm_attention_params p = {
        .n_q = pt->T, .n_kv = n, .n_heads = nh, .n_kv_heads = nh, .qk_dim = qhd, .v_dim = vd,
        .q_stride = (int64_t)nh * qhd, .k_stride = (int64_t)nh * qhd, .v_stride = (int64_t)nh * vd,
        .o_stride = (int64_t)nh * vd, .causal = 1, .q_pos0 = pt->pos0, .scale = (float)pow((double)qhd, -0.5),
    };
    if (rc == VLM_OK) rc = be->attention(be, &p, q, K, V, o, 0);
    be->free(be, lat);
    be->free(be, kvb);
    be->free(be, K);
    be->free(be, V);
    return rc;
}

int vlm_attn_mla_forward(const vlm_lm *lm, int l, const vlm_lm_step *s, const float *x, float *out)
{
    const vlm_backend *be = vlm_lm_backend(lm);
    const vlm_lm_config *cfg = &lm->cfg;
    const vlm_attn_w *a = &lm->layers[l].attn;
    mla_dims d = {cfg->num_attention_heads, cfg->qk_nope_head_dim, cfg->qk_rope_head_dim, cfg->v_head_dim,
                  cfg->kv_lora_rank, 0, 0};
    d.qhd = d.nope + d.rope;
    d.row = d.r + d.rope;
    const int64_t T = s->T, qw = (int64_t)d.nh * d.qhd, ql = cfg->q_lora_rank;
    const vlm_lm_part *p0 = &s->parts[0];
    /* one sequence with an fp32 cache takes the new rows in place; otherwise they are made in a scratch
     * buffer and stored (rounded in an f16 cache) when normed and roped */
    const int direct = s->n == 1 && !p0->c->f16;
    float *q, *o, *qa, *kvnew;
    int rc = alloc_bufs(be, 4, (float **[]){&q, &o, &qa, &kvnew},
                        (const int64_t[]){T * qw, T * d.nh * d.vd, T * ql, direct ? 0 : T * d.row});
    if (rc != VLM_OK) return vlm_error_prefix(rc, "MLA attention (%lld tokens)", (long long)T);
    if (ql > 0) {
        rc = be->linear(be, qa, x, T, &a->q_a, a->bq_a);
        if (rc == VLM_OK) rc = be->rmsnorm(be, qa, qa, T, ql, ql, a->q_a_norm, VLM_MLA_NORM_EPS);
        if (rc == VLM_OK) rc = be->linear(be, q, qa, T, &a->q_b, NULL);
    } else {
        rc = be->linear(be, q, x, T, &a->q_proj, NULL);
    }
    /* [c | k_pe] of the new tokens: c normed, k_pe and q_pe roped */
    float *kv = direct ? vlm_kv_at(p0->c, l, 0, p0->pos0) : kvnew;
    if (rc == VLM_OK) rc = be->linear(be, kv, x, T, &a->kv_a, a->bkv_a);
    if (rc == VLM_OK) rc = be->rmsnorm(be, kv, kv, T, d.r, d.row, a->kv_a_norm, VLM_MLA_NORM_EPS);
    if (rc == VLM_OK) rc = be->rope_interleaved(be, kv + d.r, T, d.row, 1, d.rope, d.rope, s->cos, s->sin);
    for (int i = 0; i < s->n && rc == VLM_OK && !direct; i++) rc = vlm_kv_store_part(&s->parts[i], l, 0, kv, d.row);
    if (rc == VLM_OK) rc = be->rope_interleaved(be, q + d.nope, T, qw, d.nh, d.qhd, d.rope, s->cos, s->sin);
    if (rc == VLM_OK && lm->mla_absorbed) rc = absorbed(be, a, &d, l, s, q, o);
    for (int i = 0; i < s->n && rc == VLM_OK && !lm->mla_absorbed; i++) {
        const vlm_lm_part *pt = &s->parts[i];
        rc = expanded(be, a, &d, l, pt, q + pt->row0 * qw, o + pt->row0 * d.nh * d.vd);
    }
    if (rc == VLM_OK) rc = be->linear(be, out, o, T, &a->o, a->bo);
    be->free(be, q);
    be->free(be, o);
    be->free(be, qa);
    be->free(be, kvnew);
    return rc;
}

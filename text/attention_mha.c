/* Multi-head attention of DeepSeek-VL2-Tiny: transformers 4.38.2 LlamaAttention
 * (q/k/v/o projections, NeoX rotate_half RoPE over the whole head, GQA head
 * mapping, causal softmax(q k^T / sqrt(head_dim)) v). K and V go to the cache. */
#include "text/lm_internal.h"

#include "core/error.h"

#include <math.h>

int vlm_attn_mha_forward(const vlm_lm *lm, int l, const vlm_lm_step *s, const float *x, float *out)
{
    const vlm_backend *be = vlm_lm_backend(lm);
    const vlm_lm_config *cfg = &lm->cfg;
    const vlm_attn_w *a = &lm->layers[l].attn;
    const int nh = cfg->num_attention_heads, nkv = cfg->num_key_value_heads, hd = lm->head_dim;
    const int64_t T = s->T, qd = (int64_t)nh * hd, kvd = (int64_t)nkv * hd;
    const vlm_lm_part *p0 = &s->parts[0];
    /* one sequence with an fp32 cache takes the new K and V straight from the projections; otherwise
     * they go to a scratch buffer and from there (after RoPE, rounded in an f16 cache) to each cache */
    const int direct = s->n == 1 && !p0->c->f16;
    float *q = NULL, *o = NULL, *kv = NULL;
    int rc = be->alloc(be, (size_t)(T * qd) * sizeof(float), (void **)&q);
    if (rc == VLM_OK) rc = be->alloc(be, (size_t)(T * qd) * sizeof(float), (void **)&o);
    if (rc == VLM_OK && !direct) rc = be->alloc(be, (size_t)(2 * T * kvd) * sizeof(float), (void **)&kv);
    if (rc != VLM_OK) {
        be->free(be, q);
        be->free(be, o);
        return vlm_error_prefix(rc, "attention (%lld tokens)", (long long)T);
    }
    float *K = direct ? vlm_kv_at(p0->c, l, 0, p0->pos0) : kv, *V = direct ? vlm_kv_at(p0->c, l, 1, p0->pos0) : kv + T * kvd;
    /* one parallel pass for the three projections over every row (the same results as three calls) */
    const vlm_linear_job qkv[3] = {{q, x, T, &a->q, a->bq}, {K, x, T, &a->k, a->bk}, {V, x, T, &a->v, a->bv}};
    rc = be->linear_many(be, qkv, 3);
    if (rc == VLM_OK) rc = be->rope_neox(be, q, T, qd, nh, hd, hd, s->cos, s->sin);
    if (rc == VLM_OK) rc = be->rope_neox(be, K, T, kvd, nkv, hd, hd, s->cos, s->sin);
    for (int i = 0; i < s->n && rc == VLM_OK; i++) {
        const vlm_lm_part *p = &s->parts[i];
        if (!direct) rc = vlm_kv_store_part(p, l, 0, K, kvd);
        if (rc == VLM_OK && !direct) rc = vlm_kv_store_part(p, l, 1, V, kvd);
        vlm_attention_params ap = {
            .n_q = p->T, .n_kv = p->pos0 + p->T, .n_heads = nh, .n_kv_heads = nkv, .qk_dim = hd, .v_dim = hd,
            .q_stride = qd, .k_stride = kvd, .v_stride = kvd, .o_stride = qd,
            .causal = 1, .q_pos0 = p->pos0, .scale = (float)(1.0 / sqrt((double)hd)), .kv_f16 = p->c->f16,
        };
        /* converted weights: the fast attention kernels too */
        if (rc == VLM_OK)
            rc = be->attention(be, &ap, q + p->row0 * qd, vlm_kv_rows(p->c, l, 0), vlm_kv_rows(p->c, l, 1),
                               o + p->row0 * qd, a->q.quant != VLM_WQ_NONE);
    }
    if (rc == VLM_OK) rc = be->linear(be, out, o, T, &a->o, a->bo);
    be->free(be, q);
    be->free(be, o);
    be->free(be, kv);
    return rc;
}

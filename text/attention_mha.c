/* Multi-head attention of DeepSeek-VL2-Tiny: transformers 4.38.2 LlamaAttention
 * (q/k/v/o projections, NeoX rotate_half RoPE over the whole head, GQA head
 * mapping, causal softmax(q k^T / sqrt(head_dim)) v). K and V go to the cache. */
#include "text/lm_internal.h"

#include "core/error.h"

#include <math.h>

int vlm_attn_mha_forward(const vlm_lm *lm, int l, vlm_kv_cache *c, const vlm_lm_step *s, const float *x, float *out)
{
    const vlm_backend *be = vlm_lm_backend(lm);
    const vlm_lm_config *cfg = &lm->cfg;
    const vlm_attn_w *a = &lm->layers[l].attn;
    const int nh = cfg->num_attention_heads, nkv = cfg->num_key_value_heads, hd = lm->head_dim;
    const int64_t T = s->T, qd = (int64_t)nh * hd, kvd = (int64_t)nkv * hd;
    float *q = NULL, *o = NULL, *kv = NULL;
    int rc = be->alloc(be, (size_t)(T * qd) * sizeof(float), (void **)&q);
    if (rc == VLM_OK) rc = be->alloc(be, (size_t)(T * qd) * sizeof(float), (void **)&o);
    /* an fp32 cache takes the new K and V straight from the projections; an f16 one after RoPE */
    if (rc == VLM_OK && c->f16) rc = be->alloc(be, (size_t)(2 * T * kvd) * sizeof(float), (void **)&kv);
    if (rc != VLM_OK) {
        be->free(be, q);
        be->free(be, o);
        return vlm_error_prefix(rc, "attention (%lld tokens)", (long long)T);
    }
    float *K = c->f16 ? kv : vlm_kv_at(c, l, 0, s->pos0), *V = c->f16 ? kv + T * kvd : vlm_kv_at(c, l, 1, s->pos0);
    /* one parallel pass for the three projections (the same results as three calls) */
    const vlm_linear_job qkv[3] = {{q, x, T, &a->q, a->bq}, {K, x, T, &a->k, a->bk}, {V, x, T, &a->v, a->bv}};
    rc = be->linear_many(be, qkv, 3);
    if (rc == VLM_OK) rc = be->rope_neox(be, q, T, qd, nh, hd, hd, s->cos, s->sin);
    if (rc == VLM_OK) rc = be->rope_neox(be, K, T, kvd, nkv, hd, hd, s->cos, s->sin);
    if (rc == VLM_OK && c->f16) rc = vlm_kv_store_f16(c, l, 0, s->pos0, K, kvd, T);
    if (rc == VLM_OK && c->f16) rc = vlm_kv_store_f16(c, l, 1, s->pos0, V, kvd, T);
    vlm_attention_params p = {
        .n_q = T, .n_kv = s->pos0 + T, .n_heads = nh, .n_kv_heads = nkv, .qk_dim = hd, .v_dim = hd,
        .q_stride = qd, .k_stride = kvd, .v_stride = kvd, .o_stride = qd,
        .causal = 1, .q_pos0 = s->pos0, .scale = (float)(1.0 / sqrt((double)hd)), .kv_f16 = c->f16,
    };
    /* converted weights: the fast attention kernels too */
    if (rc == VLM_OK)
        rc = be->attention(be, &p, q, vlm_kv_rows(c, l, 0), vlm_kv_rows(c, l, 1), o, a->q.quant != VLM_WQ_NONE);
    if (rc == VLM_OK) rc = be->linear(be, out, o, T, &a->o, a->bo);
    be->free(be, q);
    be->free(be, o);
    be->free(be, kv);
    return rc;
}

/* The decoder forward pass (DeepseekV2Model + lm_head):
 *   per layer  x += Attn(RMSNorm_in(x));  x += (MoE or MLP)(RMSNorm_post(x))
 *   then       RMSNorm_final, lm_head. */
#include "text/lm_internal.h"

#include "core/error.h"

#include <stdlib.h>
#include <string.h>

int vlm_lm_forward(const vlm_lm *lm, vlm_kv_cache *cache, const float *embeds, int64_t T, float *logits, int all_logits,
                   vlm_lm_trace *trace)
{
    if (!lm || !cache || !embeds || T <= 0)
        return vlm_errorf(VLM_ERR_INVALID, "vlm_lm_forward: needs a model, a cache and T > 0 embeddings (T = %lld)",
                          (long long)T);
    if (cache->lm != lm) return vlm_errorf(VLM_ERR_INVALID, "vlm_lm_forward: the KV cache was made for another model");
    if (T > cache->cap - cache->len)
        return vlm_errorf(VLM_ERR_LIMIT, "context full: %lld cached + %lld new tokens exceed the cache capacity of %lld",
                          (long long)cache->len, (long long)T, (long long)cache->cap);
    const vlm_lm_config *c = &lm->cfg;
    const int H = c->hidden_size, NL = c->num_hidden_layers, K = c->num_experts_per_tok;
    const int rd = c->use_mla ? c->qk_rope_head_dim : lm->head_dim;
    const int64_t pos0 = cache->len;

    float *x = malloc((size_t)(T * H) * sizeof(float));
    float *xn = malloc((size_t)(T * H) * sizeof(float));
    float *a = malloc((size_t)(T * H) * sizeof(float));
    float *cs = malloc((size_t)(T * (rd / 2) + 1) * sizeof(float));
    float *sn = malloc((size_t)(T * (rd / 2) + 1) * sizeof(float));
    int rc = VLM_OK;
    if (!x || !xn || !a || !cs || !sn) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "decoder: out of memory for %lld tokens", (long long)T);
        goto done;
    }
    for (int64_t t = 0; t < T; t++)
        vlm_rope_angles(cs + t * (rd / 2), sn + t * (rd / 2), pos0 + t, rd, c->rope_theta);
    vlm_lm_step step = {pos0, T, cs, sn};

    memcpy(x, embeds, (size_t)(T * H) * sizeof(float));
    float *hs = trace ? trace->hidden_states : NULL;
    if (hs) memcpy(hs, x, (size_t)(T * H) * sizeof(float));
    for (int l = 0; l < NL && rc == VLM_OK; l++) {
        const vlm_lm_layer *L = &lm->layers[l];
        vlm_op_rmsnorm(xn, x, T, H, L->in_norm, c->rms_norm_eps);
        rc = c->use_mla ? vlm_attn_mla_forward(lm, l, cache, &step, xn, a)
                        : vlm_attn_mha_forward(lm, l, cache, &step, xn, a);
        if (rc != VLM_OK) break;
        vlm_op_add(x, a, T * H);
        vlm_op_rmsnorm(xn, x, T, H, L->post_norm, c->rms_norm_eps);
        if (L->is_moe) {
            const int m = L->moe_index;
            rc = vlm_moe_forward(lm, L, xn, T, a, trace && trace->routing_idx ? trace->routing_idx + m * T * K : NULL,
                                 trace && trace->routing_weight ? trace->routing_weight + m * T * K : NULL,
                                 trace && trace->routing_gap ? trace->routing_gap + m * T : NULL,
                                 trace && trace->force_idx ? trace->force_idx + m * T * K : NULL,
                                 trace && trace->force_mask ? trace->force_mask + m * T : NULL);
            if (rc != VLM_OK) break;
        } else {
            float *g = malloc((size_t)(T * c->intermediate_size) * sizeof(float));
            float *u = malloc((size_t)(T * c->intermediate_size) * sizeof(float));
            if (g && u) vlm_mlp_forward(&L->mlp, xn, T, a, g, u);
            else rc = vlm_errorf(VLM_ERR_NOMEM, "decoder: out of memory for %lld tokens", (long long)T);
            free(g);
            free(u);
            if (rc != VLM_OK) break;
        }
        vlm_op_add(x, a, T * H);
        if (hs && l < NL - 1) memcpy(hs + (size_t)(l + 1) * T * H, x, (size_t)(T * H) * sizeof(float));
    }
    if (rc != VLM_OK) goto done;
    vlm_op_rmsnorm(xn, x, T, H, lm->final_norm, c->rms_norm_eps);
    if (hs) memcpy(hs + (size_t)NL * T * H, xn, (size_t)(T * H) * sizeof(float));
    if (logits) {
        if (all_logits) vlm_op_linear(logits, xn, T, &lm->lm_head, NULL);
        else vlm_op_linear(logits, xn + (T - 1) * H, 1, &lm->lm_head, NULL);
    }
    cache->len += T;
done:
    free(x);
    free(xn);
    free(a);
    free(cs);
    free(sn);
    return rc;
}

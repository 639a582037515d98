/* The decoder forward pass (DeepseekV2Model + lm_head):
 *   per layer  x += Attn(RMSNorm_in(x));  x += (MoE or MLP)(RMSNorm_post(x))
 *   then       RMSNorm_final, lm_head.
 * Every op runs on the model's backend (core/backend.h); the activations live in its buffers.
 * The host only builds the RoPE tables and receives the traces and logits. */
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
    const vlm_backend *be = vlm_lm_backend(lm);
    if (cache->be != be)
        return vlm_errorf(VLM_ERR_INVALID, "vlm_lm_forward: the KV cache is on backend %s, the model on %s",
                          cache->be->name, be->name);
    if (T > cache->cap - cache->len)
        return vlm_errorf(VLM_ERR_LIMIT, "context full: %lld cached + %lld new tokens exceed the cache capacity of %lld",
                          (long long)cache->len, (long long)T, (long long)cache->cap);
    const vlm_lm_config *c = &lm->cfg;
    const int H = c->hidden_size, NL = c->num_hidden_layers, K = c->num_experts_per_tok;
    const int rd = c->use_mla ? c->qk_rope_head_dim : lm->head_dim;
    const int64_t pos0 = cache->len;
    const size_t act = (size_t)(T * H) * sizeof(float), tab = (size_t)(T * (rd / 2) + 1) * sizeof(float);
    const size_t mlp = (size_t)(T * c->intermediate_size) * sizeof(float);

    float *x = NULL, *xn = NULL, *a = NULL, *lg = NULL;
    const void *bcs = NULL, *bsn = NULL;
    /* RoPE tables: made on the host, then handed to the backend */
    float *cs = malloc(tab), *sn = malloc(tab);
    int rc = VLM_OK;
    if (!cs || !sn) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "decoder: out of memory for %lld tokens", (long long)T);
        goto done;
    }
    for (int64_t t = 0; t < T; t++)
        vlm_rope_angles(cs + t * (rd / 2), sn + t * (rd / 2), pos0 + t, rd, c->rope_theta);
    if ((rc = be->alloc(be, act, (void **)&x)) != VLM_OK || (rc = be->alloc(be, act, (void **)&xn)) != VLM_OK ||
        (rc = be->alloc(be, act, (void **)&a)) != VLM_OK || (rc = vlm_be_buffer_view(be, cs, tab, &bcs)) != VLM_OK ||
        (rc = vlm_be_buffer_view(be, sn, tab, &bsn)) != VLM_OK) {
        rc = vlm_error_prefix(rc, "decoder (%lld tokens)", (long long)T);
        goto done;
    }
    vlm_lm_step step = {pos0, T, bcs, bsn};

    rc = be->upload(be, x, embeds, act);
    float *hs = trace ? trace->hidden_states : NULL;
    if (rc == VLM_OK && hs) rc = be->download(be, hs, x, act);
    for (int l = 0; l < NL && rc == VLM_OK; l++) {
        const vlm_lm_layer *L = &lm->layers[l];
        rc = be->rmsnorm(be, xn, x, T, H, H, L->in_norm, c->rms_norm_eps);
        if (rc == VLM_OK)
            rc = c->use_mla ? vlm_attn_mla_forward(lm, l, cache, &step, xn, a)
                            : vlm_attn_mha_forward(lm, l, cache, &step, xn, a);
        if (rc == VLM_OK) rc = be->add(be, x, a, T * H);
        if (rc == VLM_OK) rc = be->rmsnorm(be, xn, x, T, H, H, L->post_norm, c->rms_norm_eps);
        if (rc != VLM_OK) break;
        if (L->is_moe) {
            const int m = L->moe_index;
            rc = vlm_moe_forward(lm, L, xn, T, a, trace && trace->routing_idx ? trace->routing_idx + m * T * K : NULL,
                                 trace && trace->routing_weight ? trace->routing_weight + m * T * K : NULL,
                                 trace && trace->routing_gap ? trace->routing_gap + m * T : NULL,
                                 trace && trace->force_idx ? trace->force_idx + m * T * K : NULL,
                                 trace && trace->force_mask ? trace->force_mask + m * T : NULL);
        } else {
            float *g = NULL, *u = NULL;
            if ((rc = be->alloc(be, mlp, (void **)&g)) == VLM_OK && (rc = be->alloc(be, mlp, (void **)&u)) == VLM_OK)
                rc = vlm_mlp_forward(be, &L->mlp, xn, T, a, g, u);
            else
                rc = vlm_error_prefix(rc, "decoder (%lld tokens)", (long long)T);
            be->free(be, g);
            be->free(be, u);
        }
        if (rc == VLM_OK) rc = be->add(be, x, a, T * H);
        if (rc == VLM_OK && hs && l < NL - 1) rc = be->download(be, hs + (size_t)(l + 1) * T * H, x, act);
    }
    if (rc == VLM_OK) rc = be->rmsnorm(be, xn, x, T, H, H, lm->final_norm, c->rms_norm_eps);
    if (rc == VLM_OK && hs) rc = be->download(be, hs + (size_t)NL * T * H, xn, act);
    if (rc == VLM_OK && logits) {
        const int64_t rows = all_logits ? T : 1, V = c->vocab_size;
        const size_t bytes = (size_t)(rows * V) * sizeof(float);
        rc = vlm_be_output_view(be, logits, bytes, (void **)&lg);
        if (rc == VLM_OK) rc = be->linear(be, lg, xn + (T - rows) * H, rows, &lm->lm_head, NULL);
        int rc2 = vlm_be_output_finish(be, logits, lg, bytes, rc == VLM_OK);
        if (rc == VLM_OK) rc = rc2;
    }
    if (rc == VLM_OK) cache->len += T;
done:
    be->free(be, x);
    be->free(be, xn);
    be->free(be, a);
    if (bcs) vlm_be_buffer_view_release(be, bcs);
    if (bsn) vlm_be_buffer_view_release(be, bsn);
    free(cs);
    free(sn);
    return rc;
}

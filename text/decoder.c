/* The decoder forward pass (DeepseekV2Model + lm_head):
 *   per layer  x += Attn(RMSNorm_in(x));  x += (MoE or MLP)(RMSNorm_post(x))
 *   then       RMSNorm_final, lm_head.
 * Every op runs on the model's backend (core/backend.h); the activations live in its buffers.
 * The host only builds the RoPE tables and receives the traces and logits. */
#include "text/lm_internal.h"

#include "core/error.h"

#include <stdlib.h>
#include <string.h>

/* The forward pass over n sequences' new rows (T in all; embeds [T, H]). Logits: all_logits (one
 * sequence): every row; else the last row of each sequence with want[i] (NULL: all), packed in order. */
static int forward(const vlm_lm *lm, const vlm_lm_seq *seqs, int n, const float *embeds, int64_t T, float *logits,
                   int all_logits, vlm_lm_trace *trace, int64_t *expert_counts)
{
    const vlm_backend *be = vlm_lm_backend(lm);
    const vlm_lm_config *c = &lm->cfg;
    const int H = c->hidden_size, NL = c->num_hidden_layers, K = c->num_experts_per_tok, E = c->n_routed_experts;
    const int rd = c->use_mla ? c->qk_rope_head_dim : lm->head_dim;
    const size_t act = (size_t)(T * H) * sizeof(float), tab = (size_t)(T * (rd / 2) + 1) * sizeof(float);
    const size_t mlp = (size_t)(T * c->intermediate_size) * sizeof(float);

    float *x = NULL, *xn = NULL, *a = NULL, *lg = NULL, *last = NULL;
    const void *bcs = NULL, *bsn = NULL;
    /* RoPE tables (each row at its own sequence's position) and the parts: made on the host */
    float *cs = malloc(tab), *sn = malloc(tab);
    vlm_lm_part *parts = malloc((size_t)n * sizeof *parts);
    int rc = VLM_OK;
    if (!cs || !sn || !parts) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "decoder: out of memory for %lld tokens", (long long)T);
        goto done;
    }
    for (int i = 0, row = 0; i < n; row += (int)seqs[i].n_tokens, i++) {
        parts[i] = (vlm_lm_part){seqs[i].cache, seqs[i].cache->len, seqs[i].n_tokens, row};
        for (int64_t t = 0; t < seqs[i].n_tokens; t++)
            vlm_rope_angles(cs + (row + t) * (rd / 2), sn + (row + t) * (rd / 2), parts[i].pos0 + t, rd, c->rope_theta);
    }
    if ((rc = be->alloc(be, act, (void **)&x)) != VLM_OK || (rc = be->alloc(be, act, (void **)&xn)) != VLM_OK ||
        (rc = be->alloc(be, act, (void **)&a)) != VLM_OK || (rc = vlm_be_buffer_view(be, cs, tab, &bcs)) != VLM_OK ||
        (rc = vlm_be_buffer_view(be, sn, tab, &bsn)) != VLM_OK) {
        rc = vlm_error_prefix(rc, "decoder (%lld tokens)", (long long)T);
        goto done;
    }
    vlm_lm_step step = {T, bcs, bsn, parts, n};

    rc = be->upload(be, x, embeds, act);
    float *hs = trace ? trace->hidden_states : NULL;
    if (rc == VLM_OK && hs) rc = be->download(be, hs, x, act);
    for (int l = 0; l < NL && rc == VLM_OK; l++) {
        const vlm_lm_layer *L = &lm->layers[l];
        rc = be->rmsnorm(be, xn, x, T, H, H, L->in_norm, c->rms_norm_eps);
        if (rc == VLM_OK)
            rc = c->use_mla ? vlm_attn_mla_forward(lm, l, &step, xn, a) : vlm_attn_mha_forward(lm, l, &step, xn, a);
        if (rc == VLM_OK) rc = be->add(be, x, a, T * H);
        if (rc == VLM_OK) rc = be->rmsnorm(be, xn, x, T, H, H, L->post_norm, c->rms_norm_eps);
        if (rc != VLM_OK) break;
        if (L->is_moe) {
            const int m = L->moe_index;
            rc = vlm_moe_forward(lm, L, xn, T, a, trace && trace->routing_idx ? trace->routing_idx + m * T * K : NULL,
                                 trace && trace->routing_weight ? trace->routing_weight + m * T * K : NULL,
                                 trace && trace->routing_gap ? trace->routing_gap + m * T : NULL,
                                 trace && trace->force_idx ? trace->force_idx + m * T * K : NULL,
                                 trace && trace->force_mask ? trace->force_mask + m * T : NULL,
                                 expert_counts ? expert_counts + (int64_t)m * E : NULL);
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
        /* the rows the lm_head runs on: all (all_logits), one sequence's last row in place, or the
         * wanted sequences' last rows gathered into one matrix (one GEMM for the batch) */
        const float *in = xn + (T - 1) * H;
        int64_t rows = 1;
        if (all_logits) {
            in = xn;
            rows = T;
        } else if (n > 1) {
            int32_t *pick = malloc((size_t)n * sizeof *pick);
            const void *bpick = NULL;
            rows = 0;
            for (int i = 0; pick && i < n; i++)
                if (seqs[i].want_logits) pick[rows++] = (int32_t)(parts[i].row0 + parts[i].T - 1);
            if (!pick) rc = vlm_errorf(VLM_ERR_NOMEM, "out of memory");
            if (rc == VLM_OK && rows) rc = be->alloc(be, (size_t)(rows * H) * sizeof(float), (void **)&last);
            if (rc == VLM_OK && rows) rc = vlm_be_buffer_view(be, pick, (size_t)rows * sizeof *pick, &bpick);
            if (rc == VLM_OK && rows) rc = be->gather_rows(be, last, xn, H, bpick, rows, 1);
            if (bpick) vlm_be_buffer_view_release(be, bpick);
            free(pick);
            in = last;
        }
        const int64_t V = c->vocab_size;
        const size_t bytes = (size_t)(rows * V) * sizeof(float);
        if (rc == VLM_OK && rows) {
            rc = vlm_be_output_view(be, logits, bytes, (void **)&lg);
            if (rc == VLM_OK) rc = be->linear(be, lg, in, rows, &lm->lm_head, NULL);
            int rc2 = vlm_be_output_finish(be, logits, lg, bytes, rc == VLM_OK);
            if (rc == VLM_OK) rc = rc2;
        }
    }
    if (rc == VLM_OK)
        for (int i = 0; i < n; i++) seqs[i].cache->len += seqs[i].n_tokens;
done:
    be->free(be, x);
    be->free(be, xn);
    be->free(be, a);
    be->free(be, last);
    if (bcs) vlm_be_buffer_view_release(be, bcs);
    if (bsn) vlm_be_buffer_view_release(be, bsn);
    free(cs);
    free(sn);
    free(parts);
    return rc;
}

/* Checks one sequence of a forward call (its cache is lm's, on lm's backend, with room). */
static int check_seq(const vlm_lm *lm, const vlm_kv_cache *cache, int64_t T)
{
    if (!cache || T <= 0)
        return vlm_errorf(VLM_ERR_INVALID, "vlm_lm_forward: needs a cache and T > 0 embeddings (T = %lld)", (long long)T);
    if (cache->lm != lm) return vlm_errorf(VLM_ERR_INVALID, "vlm_lm_forward: the KV cache was made for another model");
    const vlm_backend *be = vlm_lm_backend(lm);
    if (cache->be != be)
        return vlm_errorf(VLM_ERR_INVALID, "vlm_lm_forward: the KV cache is on backend %s, the model on %s",
                          cache->be->name, be->name);
    if (T > cache->cap - cache->len)
        return vlm_errorf(VLM_ERR_LIMIT, "context full: %lld cached + %lld new tokens exceed the cache capacity of %lld",
                          (long long)cache->len, (long long)T, (long long)cache->cap);
    return VLM_OK;
}

int vlm_lm_forward(const vlm_lm *lm, vlm_kv_cache *cache, const float *embeds, int64_t T, float *logits, int all_logits,
                   vlm_lm_trace *trace)
{
    if (!lm || !embeds) return vlm_errorf(VLM_ERR_INVALID, "vlm_lm_forward: needs a model and embeddings");
    int rc = check_seq(lm, cache, T);
    if (rc) return rc;
    const vlm_lm_seq seq = {cache, T, 1};
    return forward(lm, &seq, 1, embeds, T, logits, all_logits, trace, NULL);
}

int vlm_lm_forward_batch(const vlm_lm *lm, const vlm_lm_seq *seqs, int n_seq, const float *embeds, float *logits,
                         int64_t *expert_counts)
{
    if (!lm || !seqs || n_seq <= 0 || !embeds)
        return vlm_errorf(VLM_ERR_INVALID, "vlm_lm_forward_batch: needs a model, sequences and embeddings");
    int64_t T = 0;
    for (int i = 0; i < n_seq; i++) {
        int rc = check_seq(lm, seqs[i].cache, seqs[i].n_tokens);
        if (rc) return vlm_error_prefix(rc, "sequence %d of the batch", i);
        for (int j = 0; j < i; j++)
            if (seqs[j].cache == seqs[i].cache)
                return vlm_errorf(VLM_ERR_INVALID, "vlm_lm_forward_batch: sequences %d and %d share a cache", j, i);
        T += seqs[i].n_tokens;
    }
    return forward(lm, seqs, n_seq, embeds, T, logits, 0, NULL, expert_counts);
}

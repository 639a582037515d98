/* MoE layer (DeepseekV2MoE.moe_infer): route every token, then run each chosen
 * expert once over all the tokens routed to it (a counting sort by expert), add
 * the weighted outputs, then the shared experts on every token.
 * The products run on the model's backend; the routing (text/moe_router.c) runs on the
 * host from the gate logits read back through vlm_be_host_view (no copy on the CPU), and
 * the grouped order and weights go back through vlm_be_buffer_view. */
#include "text/lm_internal.h"

#include "core/error.h"

#include <stdlib.h>
#include <string.h>

/* Decode (a few tokens): every chosen expert's gate and up projections in one parallel pass,
 * then every down projection in another (plus the shared experts in both), instead of three
 * thread-pool jobs per expert. Only for converted weights; the sums are added in the same
 * order as the loop in vlm_moe_forward, so the result is the same.
 * order / w are buffers: order[i] = the routing entry t * K + j of row i (grouped by expert). */
#define MOE_BATCH_MAX 512 /* routed (token, expert) pairs: a decode step of a batch of sequences */

static int moe_experts_batched(const vlm_backend *be, const vlm_lm_layer *L, int E, const float *x, int64_t T, int K,
                               int H, int64_t Im, int64_t Iw, const int64_t *start, const int32_t *order,
                               const float *w, float *y)
{
    const int64_t n_pairs = T * K, rows_i = n_pairs * Im + (L->has_shared ? T * Iw : 0);
    float *g = NULL, *u = NULL, *ob = NULL, *xb = NULL;
    /* at most one entry per expert used (and the shared experts) */
    vlm_linear_job *jobs = malloc((size_t)(2 * E + 2) * sizeof *jobs);
    int *ex = malloc((size_t)(E + 1) * sizeof *ex);
    int64_t *off = malloc((size_t)(E + 1) * sizeof *off), *cnt = malloc((size_t)(E + 1) * sizeof *cnt);
    int rc = jobs && ex && off && cnt ? VLM_OK : vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    if (rc == VLM_OK) rc = be->alloc(be, (size_t)rows_i * sizeof(float), (void **)&g);
    if (rc == VLM_OK) rc = be->alloc(be, (size_t)rows_i * sizeof(float), (void **)&u);
    if (rc == VLM_OK) rc = be->alloc(be, (size_t)(n_pairs + T) * H * sizeof(float), (void **)&ob);
    if (rc == VLM_OK) rc = be->alloc(be, (size_t)n_pairs * H * sizeof(float), (void **)&xb);
    if (rc != VLM_OK) {
        rc = vlm_error_prefix(rc, "MoE");
        goto done;
    }
    /* xb holds the routed tokens grouped by expert (order), like the loop path */
    rc = be->gather_rows(be, xb, x, H, order, n_pairs, K);
    int nj = 0, ne = 0;
    for (int e = 0; e < E; e++) {
        const int64_t n = start[e + 1] - start[e];
        if (n == 0) continue;
        ex[ne] = e, off[ne] = start[e], cnt[ne] = n, ne++;
    }
    for (int i = 0; i < ne; i++) {
        const vlm_mlp_w *m = &L->experts[ex[i]];
        jobs[nj++] = (vlm_linear_job){g + off[i] * Im, xb + off[i] * H, cnt[i], &m->gate, NULL};
        jobs[nj++] = (vlm_linear_job){u + off[i] * Im, xb + off[i] * H, cnt[i], &m->up, NULL};
    }
    float *gs = g + n_pairs * Im, *us = u + n_pairs * Im, *os = ob + n_pairs * H;
    if (L->has_shared) {
        jobs[nj++] = (vlm_linear_job){gs, x, T, &L->shared.gate, NULL};
        jobs[nj++] = (vlm_linear_job){us, x, T, &L->shared.up, NULL};
    }
    if (rc == VLM_OK) rc = be->linear_many(be, jobs, nj);
    if (rc == VLM_OK) rc = be->silu_mul(be, g, u, rows_i);
    nj = 0;
    for (int i = 0; i < ne; i++)
        jobs[nj++] = (vlm_linear_job){ob + off[i] * H, g + off[i] * Im, cnt[i], &L->experts[ex[i]].down, NULL};
    if (L->has_shared) jobs[nj++] = (vlm_linear_job){os, gs, T, &L->shared.down, NULL};
    if (rc == VLM_OK) rc = be->linear_many(be, jobs, nj);
    if (rc == VLM_OK) rc = be->scatter_add_rows(be, y, ob, H, order, w, n_pairs, K);
    if (rc == VLM_OK && L->has_shared) rc = be->add(be, y, os, T * H);
done:
    free(jobs);
    free(ex);
    free(off);
    free(cnt);
    be->free(be, xb);
    be->free(be, g);
    be->free(be, u);
    be->free(be, ob);
    return rc;
}

/* Gate logits on the backend, then every token routed on the host: sel / w [T, K]. */
static int moe_route(const vlm_backend *be, const vlm_lm *lm, const vlm_lm_layer *L, const float *x, int64_t T,
                     int32_t *sel, float *w, float *gap, const int32_t *force_idx, const uint8_t *force_mask)
{
    const vlm_lm_config *c = &lm->cfg;
    const int E = c->n_routed_experts, K = c->num_experts_per_tok;
    const size_t bytes = (size_t)(T * E) * sizeof(float);
    float *logits = NULL;
    const float *hl = NULL;
    int rc = be->alloc(be, bytes, (void **)&logits);
    if (rc != VLM_OK) return vlm_error_prefix(rc, "MoE gate (%lld tokens)", (long long)T);
    rc = be->linear(be, logits, x, T, &L->gate, NULL); /* fp32 gate logits, as the official gate */
    /* a device gating kernel (vlm_cuda_moe_route) can replace this read-back and the host loop */
    if (rc == VLM_OK) rc = vlm_be_host_view(be, logits, bytes, (const void **)&hl);
    if (rc == VLM_OK) {
        vlm_moe_router r;
        vlm_moe_router_from_config(c, &r);
        r.bias = L->gate_bias;
        for (int64_t t = 0; t < T && rc == VLM_OK; t++) {
            const int32_t *f = force_idx && force_mask && force_mask[t] ? force_idx + t * K : NULL;
            rc = vlm_moe_route(&r, hl + t * E, f, sel + t * K, w + t * K, gap ? gap + t : NULL);
        }
        vlm_be_host_view_release(be, hl);
    }
    be->free(be, logits);
    return rc;
}

int vlm_moe_forward(const vlm_lm *lm, const vlm_lm_layer *L, const float *x, int64_t T, float *y, int32_t *idx,
                    float *weight, float *gap, const int32_t *force_idx, const uint8_t *force_mask,
                    int64_t *expert_counts)
{
    const vlm_backend *be = vlm_lm_backend(lm);
    const vlm_lm_config *c = &lm->cfg;
    const int E = c->n_routed_experts, K = c->num_experts_per_tok, H = c->hidden_size;
    const int64_t Im = c->moe_intermediate_size, Iw = L->has_shared ? Im * c->n_shared_experts : 0;
    const int64_t gw = Iw > Im ? Iw : Im;
    if (T * K > INT32_MAX) return vlm_errorf(VLM_ERR_LIMIT, "MoE: %lld tokens are too many at once", (long long)T);
    /* host: routing and grouping */
    int32_t *sel = malloc((size_t)(T * K) * sizeof(int32_t));
    float *w = malloc((size_t)(T * K) * sizeof(float));
    int32_t *order = malloc((size_t)(T * K) * sizeof(int32_t));
    int64_t *start = calloc((size_t)E + 1, sizeof(int64_t));
    int64_t *fill = malloc((size_t)E * sizeof(int64_t));
    /* backend: the grouped inputs and outputs, scratch, and views of order / w */
    float *xb = NULL, *ob = NULL, *g = NULL, *u = NULL;
    const void *border = NULL, *bw = NULL;
    int rc = VLM_OK;
    if (!sel || !w || !order || !start || !fill) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "MoE: out of memory for %lld tokens", (long long)T);
        goto done;
    }
    rc = moe_route(be, lm, L, x, T, sel, w, gap, force_idx, force_mask);
    if (rc != VLM_OK) goto done;
    if (idx) memcpy(idx, sel, (size_t)(T * K) * sizeof(int32_t));
    if (weight) memcpy(weight, w, (size_t)(T * K) * sizeof(float));
    if (expert_counts)
        for (int64_t i = 0; i < T * K; i++) expert_counts[sel[i]]++;

    /* group the (token, slot) pairs by expert, tokens ascending within an expert */
    for (int64_t i = 0; i < T * K; i++) start[sel[i] + 1]++;
    for (int e = 0; e < E; e++) start[e + 1] += start[e];
    memcpy(fill, start, (size_t)E * sizeof(int64_t));
    for (int64_t i = 0; i < T * K; i++) order[fill[sel[i]]++] = (int32_t)i;
    if ((rc = vlm_be_buffer_view(be, order, (size_t)(T * K) * sizeof(int32_t), &border)) != VLM_OK ||
        (rc = vlm_be_buffer_view(be, w, (size_t)(T * K) * sizeof(float), &bw)) != VLM_OK)
        goto done;

    rc = be->zero(be, y, (size_t)(T * H) * sizeof(float));
    if (rc != VLM_OK) goto done;
    if (T * K <= MOE_BATCH_MAX && L->experts[0].gate.quant != VLM_WQ_NONE) {
        rc = moe_experts_batched(be, L, E, x, T, K, H, Im, Iw, start, border, bw, y);
        goto done;
    }
    if ((rc = be->alloc(be, (size_t)(T * H) * sizeof(float), (void **)&xb)) != VLM_OK ||
        (rc = be->alloc(be, (size_t)(T * H) * sizeof(float), (void **)&ob)) != VLM_OK ||
        (rc = be->alloc(be, (size_t)(T * gw) * sizeof(float), (void **)&g)) != VLM_OK ||
        (rc = be->alloc(be, (size_t)(T * gw) * sizeof(float), (void **)&u)) != VLM_OK) {
        rc = vlm_error_prefix(rc, "MoE (%lld tokens)", (long long)T);
        goto done;
    }
    for (int e = 0; e < E && rc == VLM_OK; e++) {
        const int64_t n = start[e + 1] - start[e];
        if (n == 0) continue;
        const int32_t *ord = (const int32_t *)border + start[e];
        rc = be->gather_rows(be, xb, x, H, ord, n, K);
        if (rc == VLM_OK) rc = vlm_mlp_forward(be, &L->experts[e], xb, n, ob, g, u);
        if (rc == VLM_OK) rc = be->scatter_add_rows(be, y, ob, H, ord, bw, n, K);
    }
    if (rc == VLM_OK && L->has_shared) {
        rc = vlm_mlp_forward(be, &L->shared, x, T, ob, g, u);
        if (rc == VLM_OK) rc = be->add(be, y, ob, T * H);
    }
done:
    if (border) vlm_be_buffer_view_release(be, border);
    if (bw) vlm_be_buffer_view_release(be, bw);
    free(sel);
    free(w);
    free(order);
    free(start);
    free(fill);
    be->free(be, xb);
    be->free(be, ob);
    be->free(be, g);
    be->free(be, u);
    return rc;
}

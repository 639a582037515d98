/* MoE layer (DeepseekV2MoE.moe_infer): route every token, then run each chosen
 * expert once over all the tokens routed to it (a counting sort by expert), add
 * the weighted outputs, then the shared experts on every token. */
#include "text/lm_internal.h"

#include "core/error.h"

#include <stdlib.h>
#include <string.h>

/* Decode (a few tokens): every chosen expert's gate and up projections in one parallel pass,
 * then every down projection in another (plus the shared experts in both), instead of three
 * thread-pool jobs per expert. Only for converted weights; the sums are added in the same
 * order as the loop in vlm_moe_forward, so the result is the same. */
#define MOE_BATCH_MAX 24

static int moe_experts_batched(const vlm_lm_layer *L, int E, const float *x, int64_t T, int K, int H, int64_t Im, int64_t Iw,
                               const int64_t *start, const int64_t *order, const float *w, float *y)
{
    const int64_t n_pairs = T * K, rows_i = n_pairs * Im + (L->has_shared ? T * Iw : 0);
    float *g = malloc((size_t)rows_i * sizeof(float)), *u = malloc((size_t)rows_i * sizeof(float));
    float *ob = malloc((size_t)(n_pairs + T) * H * sizeof(float)), *xb = malloc((size_t)n_pairs * H * sizeof(float));
    vlm_linear_job jobs[2 * MOE_BATCH_MAX + 2];
    if (!g || !u || !ob || !xb) {
        free(g);
        free(u);
        free(ob);
        free(xb);
        return vlm_errorf(VLM_ERR_NOMEM, "MoE: out of memory");
    }
    /* xb holds the routed tokens grouped by expert (order), like the loop path */
    for (int64_t i = 0; i < n_pairs; i++) memcpy(xb + i * H, x + (order[i] / K) * H, (size_t)H * sizeof(float));
    int nj = 0, ne = 0, ex[MOE_BATCH_MAX + 1];
    int64_t off[MOE_BATCH_MAX + 1], cnt[MOE_BATCH_MAX + 1];
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
    vlm_op_linear_many(jobs, nj);
    vlm_op_silu_mul(g, u, rows_i);
    nj = 0;
    for (int i = 0; i < ne; i++)
        jobs[nj++] = (vlm_linear_job){ob + off[i] * H, g + off[i] * Im, cnt[i], &L->experts[ex[i]].down, NULL};
    if (L->has_shared) jobs[nj++] = (vlm_linear_job){os, gs, T, &L->shared.down, NULL};
    vlm_op_linear_many(jobs, nj);
    for (int64_t i = 0; i < n_pairs; i++) {
        float *yt = y + (order[i] / K) * H, wt = w[order[i]];
        const float *oi = ob + i * H;
        for (int h = 0; h < H; h++) yt[h] += wt * oi[h];
    }
    if (L->has_shared) vlm_op_add(y, os, T * H);
    free(xb);
    free(g);
    free(u);
    free(ob);
    return VLM_OK;
}

int vlm_moe_forward(const vlm_lm *lm, const vlm_lm_layer *L, const float *x, int64_t T, float *y, int32_t *idx,
                    float *weight, float *gap, const int32_t *force_idx, const uint8_t *force_mask)
{
    const vlm_lm_config *c = &lm->cfg;
    const int E = c->n_routed_experts, K = c->num_experts_per_tok, H = c->hidden_size;
    const int64_t Im = c->moe_intermediate_size, Iw = L->has_shared ? Im * c->n_shared_experts : 0;
    const int64_t gw = Iw > Im ? Iw : Im;
    float *logits = malloc((size_t)(T * E) * sizeof(float));
    int32_t *sel = malloc((size_t)(T * K) * sizeof(int32_t));
    float *w = malloc((size_t)(T * K) * sizeof(float));
    int64_t *order = malloc((size_t)(T * K) * sizeof(int64_t));
    int64_t *start = calloc((size_t)E + 1, sizeof(int64_t));
    float *xb = malloc((size_t)(T * H) * sizeof(float));
    float *ob = malloc((size_t)(T * H) * sizeof(float));
    float *g = malloc((size_t)(T * gw) * sizeof(float));
    float *u = malloc((size_t)(T * gw) * sizeof(float));
    int rc = VLM_OK;
    if (!logits || !sel || !w || !order || !start || !xb || !ob || !g || !u) {
        rc = vlm_errorf(VLM_ERR_NOMEM, "MoE: out of memory for %lld tokens", (long long)T);
        goto done;
    }

    vlm_moe_router r;
    vlm_moe_router_from_config(c, &r);
    r.bias = L->gate_bias;
    vlm_op_linear(logits, x, T, &L->gate, NULL); /* fp32 gate logits, as the official gate */
    for (int64_t t = 0; t < T && rc == VLM_OK; t++) {
        const int32_t *f = force_idx && force_mask && force_mask[t] ? force_idx + t * K : NULL;
        rc = vlm_moe_route(&r, logits + t * E, f, sel + t * K, w + t * K, gap ? gap + t : NULL);
    }
    if (rc != VLM_OK) goto done;
    if (idx) memcpy(idx, sel, (size_t)(T * K) * sizeof(int32_t));
    if (weight) memcpy(weight, w, (size_t)(T * K) * sizeof(float));

    /* group the (token, slot) pairs by expert, tokens ascending within an expert */
    for (int64_t i = 0; i < T * K; i++) start[sel[i] + 1]++;
    for (int e = 0; e < E; e++) start[e + 1] += start[e];
    {
        int64_t *fill = malloc((size_t)E * sizeof(int64_t));
        if (!fill) {
            rc = vlm_errorf(VLM_ERR_NOMEM, "MoE: out of memory");
            goto done;
        }
        memcpy(fill, start, (size_t)E * sizeof(int64_t));
        for (int64_t i = 0; i < T * K; i++) order[fill[sel[i]]++] = i;
        free(fill);
    }

    memset(y, 0, (size_t)(T * H) * sizeof(float));
    if (T * K <= MOE_BATCH_MAX && L->experts[0].gate.quant != VLM_WQ_NONE) {
        rc = moe_experts_batched(L, E, x, T, K, H, Im, Iw, start, order, w, y);
        goto done;
    }
    for (int e = 0; e < E; e++) {
        const int64_t n = start[e + 1] - start[e];
        if (n == 0) continue;
        const int64_t *ord = order + start[e];
        for (int64_t i = 0; i < n; i++) memcpy(xb + i * H, x + (ord[i] / K) * H, (size_t)H * sizeof(float));
        vlm_mlp_forward(&L->experts[e], xb, n, ob, g, u);
        for (int64_t i = 0; i < n; i++) {
            float *yt = y + (ord[i] / K) * H, wt = w[ord[i]];
            const float *oi = ob + i * H;
            for (int h = 0; h < H; h++) yt[h] += wt * oi[h];
        }
    }
    if (L->has_shared) {
        vlm_mlp_forward(&L->shared, x, T, ob, g, u);
        vlm_op_add(y, ob, T * H);
    }
done:
    free(logits);
    free(sel);
    free(w);
    free(order);
    free(start);
    free(xb);
    free(ob);
    free(g);
    free(u);
    return rc;
}

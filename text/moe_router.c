/* MoE expert selection (see moe_router.h for the formulas and the tie rule). */
#include "text/moe_router.h"

#include "core/error.h"
#include "core/ops.h"

#include <math.h>
#include <string.h>

void vlm_moe_router_from_config(const vlm_lm_config *cfg, vlm_moe_router *r)
{
    memset(r, 0, sizeof *r);
    r->n_experts = cfg->n_routed_experts;
    r->top_k = cfg->num_experts_per_tok;
    r->n_group = cfg->n_group;
    r->topk_group = cfg->topk_group;
    r->method = cfg->topk_method;
    r->scoring = cfg->scoring_func;
    r->norm_topk_prob = cfg->norm_topk_prob;
    r->scaling = cfg->routed_scaling_factor;
    r->bias = NULL;
}

int vlm_moe_router_check(const vlm_moe_router *r)
{
    if (r->n_experts <= 0 || r->n_experts > VLM_MOE_MAX_EXPERTS)
        return vlm_errorf(VLM_ERR_INVALID, "moe: n_routed_experts %d outside 1..%d", r->n_experts, VLM_MOE_MAX_EXPERTS);
    if (r->top_k <= 0 || r->top_k > r->n_experts)
        return vlm_errorf(VLM_ERR_INVALID, "moe: num_experts_per_tok %d outside 1..%d", r->top_k, r->n_experts);
    if (r->method != VLM_TOPK_GREEDY && r->method != VLM_TOPK_GROUP_LIMITED_GREEDY && r->method != VLM_TOPK_NOAUX_TC)
        return vlm_errorf(VLM_ERR_INVALID, "moe: unknown topk_method %d", (int)r->method);
    if (r->scoring != VLM_SCORE_SOFTMAX && r->scoring != VLM_SCORE_SIGMOID)
        return vlm_errorf(VLM_ERR_INVALID, "moe: unknown scoring_func %d", (int)r->scoring);
    if (r->method != VLM_TOPK_GREEDY) {
        if (r->n_group <= 0 || r->n_experts % r->n_group != 0)
            return vlm_errorf(VLM_ERR_INVALID, "moe: %d experts do not split into n_group %d groups", r->n_experts,
                              r->n_group);
        if (r->topk_group <= 0 || r->topk_group > r->n_group)
            return vlm_errorf(VLM_ERR_INVALID, "moe: topk_group %d outside 1..n_group (%d)", r->topk_group, r->n_group);
        /* the official noaux_tc takes the top 2 of every group */
        if (r->method == VLM_TOPK_NOAUX_TC && r->n_experts / r->n_group < 2)
            return vlm_errorf(VLM_ERR_INVALID, "moe: noaux_tc needs at least 2 experts per group (have %d)",
                              r->n_experts / r->n_group);
        if (r->method == VLM_TOPK_NOAUX_TC && !r->bias)
            return vlm_errorf(VLM_ERR_INVALID, "moe: noaux_tc needs e_score_correction_bias");
    }
    return VLM_OK;
}

/* a ranks before b (value va at index ia, vb at ib): NaN first, then larger, then lower index. */
static int ranks_before(float va, int ia, float vb, int ib)
{
    int na = isnan(va), nb = isnan(vb);
    if (na != nb) return na;
    if (!na && va != vb) return va > vb;
    return ia < ib;
}

/* Indices of the k best of v[0..n) in rank order into out (k <= n). O(k n): n is small. */
static void top_k(const float *v, int n, int k, int *out)
{
    unsigned char taken[VLM_MOE_MAX_EXPERTS];
    memset(taken, 0, (size_t)n);
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < n; i++)
            if (!taken[i] && (best < 0 || ranks_before(v[i], i, v[best], best))) best = i;
        taken[best] = 1;
        out[j] = best;
    }
}

/* Keeps the topk_group best groups of choice (group score per method), setting the rest to 0.0. */
static void mask_groups(const vlm_moe_router *r, float *choice)
{
    const int G = r->n_group, per = r->n_experts / G;
    if (G <= 0 || G > VLM_MOE_MAX_EXPERTS) return; /* excluded by vlm_moe_router_check */
    float gs[VLM_MOE_MAX_EXPERTS] = {0};
    for (int g = 0; g < G; g++) {
        const float *c = choice + g * per;
        if (r->method == VLM_TOPK_GROUP_LIMITED_GREEDY) {
            int b;
            top_k(c, per, 1, &b);
            gs[g] = c[b];
        } else {
            int b[2];
            top_k(c, per, 2, b);
            gs[g] = c[b[0]] + c[b[1]];
        }
    }
    int keep[VLM_MOE_MAX_EXPERTS];
    top_k(gs, G, r->topk_group, keep);
    unsigned char kept[VLM_MOE_MAX_EXPERTS];
    memset(kept, 0, (size_t)G);
    for (int j = 0; j < r->topk_group; j++) kept[keep[j]] = 1;
    for (int g = 0; g < G; g++)
        if (!kept[g])
            for (int e = 0; e < per; e++) choice[g * per + e] = 0.0f;
}

int vlm_moe_route(const vlm_moe_router *r, const float *logits, const int32_t *force, int32_t *idx, float *weight,
                  float *gap)
{
    int rc = vlm_moe_router_check(r);
    if (rc != VLM_OK) return rc;
    const int E = r->n_experts, K = r->top_k;
    float scores[VLM_MOE_MAX_EXPERTS], choice[VLM_MOE_MAX_EXPERTS];
    memcpy(scores, logits, (size_t)E * sizeof(float));
    if (r->scoring == VLM_SCORE_SOFTMAX) vlm_op_softmax(scores, E);
    else
        for (int e = 0; e < E; e++) scores[e] = 1.0f / (1.0f + expf(-scores[e]));

    for (int e = 0; e < E; e++) choice[e] = r->method == VLM_TOPK_NOAUX_TC ? scores[e] + r->bias[e] : scores[e];
    if (r->method != VLM_TOPK_GREEDY) mask_groups(r, choice);

    int sel[VLM_MOE_MAX_EXPERTS];
    int n_rank = K < E ? K + 1 : K;
    top_k(choice, E, n_rank, sel);
    if (gap) *gap = K < E ? choice[sel[K - 1]] - choice[sel[K]] : INFINITY;

    if (force) {
        for (int j = 0; j < K; j++) {
            if (force[j] < 0 || force[j] >= E)
                return vlm_errorf(VLM_ERR_INVALID, "moe: forced expert %d outside 0..%d", (int)force[j], E - 1);
            sel[j] = force[j];
        }
    }
    /* weights in selection order, then normalised, then sorted by expert id */
    float w[VLM_MOE_MAX_EXPERTS];
    for (int j = 0; j < K; j++) w[j] = r->method == VLM_TOPK_NOAUX_TC ? scores[sel[j]] : choice[sel[j]];
    if (K > 1 && r->norm_topk_prob) {
        float sum = 0.0f;
        for (int j = 0; j < K; j++) sum += w[j];
        sum += 1e-20f;
        for (int j = 0; j < K; j++) w[j] = w[j] / sum * r->scaling;
    } else {
        for (int j = 0; j < K; j++) w[j] *= r->scaling;
    }
    for (int j = 1; j < K; j++) { /* insertion sort by index: K is small */
        int si = sel[j];
        float sw = w[j];
        int i = j - 1;
        for (; i >= 0 && sel[i] > si; i--) {
            sel[i + 1] = sel[i];
            w[i + 1] = w[i];
        }
        sel[i + 1] = si;
        w[i + 1] = sw;
    }
    for (int j = 0; j < K; j++) {
        idx[j] = sel[j];
        if (weight) weight[j] = w[j];
    }
    return VLM_OK;
}

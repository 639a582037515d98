/* Expert selection of DeepSeek-V2/V3 MoE layers (MoEGate.forward in the official
 * modeling_deepseek.py) for one token, from its fp32 gate logits.
 *
 *   scores  = softmax(logits) or sigmoid(logits)                      (fp32)
 *   greedy:               choice = scores
 *   group_limited_greedy: group score = max of scores in the group; keep the topk_group best groups;
 *                         choice = scores with the other groups' experts set to 0.0
 *   noaux_tc:             c = scores + bias; group score = sum of the 2 largest c in the group; keep the
 *                         topk_group best groups; choice = c with the other groups' experts set to 0.0
 *   idx = top_k of choice;  weight = choice[idx] (greedy, group_limited_greedy) or scores[idx] (noaux_tc)
 *   if top_k > 1 and norm_topk_prob: weight = weight / (sum + 1e-20) * scaling, else weight * scaling.
 * Masked experts get 0.0, not -inf, exactly as the official masked_fill: a negative corrected
 * score can therefore lose to a masked expert.
 *
 * Ties: torch.topk leaves the order of equal values unspecified; here the lower index wins
 * everywhere (experts and groups), and NaN ranks above every number (as torch's comparator). */
#ifndef VLM_TEXT_MOE_ROUTER_H
#define VLM_TEXT_MOE_ROUTER_H

#include <stdint.h>

#include "text/lm_config.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VLM_MOE_MAX_EXPERTS 1024

typedef struct {
    int n_experts, top_k, n_group, topk_group;
    vlm_topk_method method;
    vlm_scoring_func scoring;
    int norm_topk_prob;
    float scaling;
    const float *bias; /* noaux_tc: e_score_correction_bias [n_experts]; else NULL */
} vlm_moe_router;

/* Fills the router from a config (bias left NULL). */
void vlm_moe_router_from_config(const vlm_lm_config *cfg, vlm_moe_router *r);
/* 0, or VLM_ERR_INVALID naming what is inconsistent (e.g. experts not divisible by n_group). */
int vlm_moe_router_check(const vlm_moe_router *r);

/* One token: idx[top_k] sorted ascending, weight[top_k] in the same order, *gap = k-th minus (k+1)-th
 * largest choice value (+inf when top_k == n_experts). If force is not NULL its top_k experts are used
 * instead of the selection; their weights follow the same formula (gap is still the selection's).
 * Any of weight/gap may be NULL. Returns 0 or VLM_ERR_INVALID (bad router, forced id out of range). */
int vlm_moe_route(const vlm_moe_router *r, const float *logits, const int32_t *force, int32_t *idx, float *weight,
                  float *gap);

#ifdef __cplusplus
}
#endif
#endif

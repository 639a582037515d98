/* Hyper-parameters of the DeepSeek-V2-style MoE language model (the
 * "language_config" of a DeepSeek-VL2 config.json), after class defaults. */
#ifndef VLM_TEXT_LM_CONFIG_H
#define VLM_TEXT_LM_CONFIG_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { VLM_TOPK_GREEDY, VLM_TOPK_GROUP_LIMITED_GREEDY, VLM_TOPK_NOAUX_TC } vlm_topk_method;
typedef enum { VLM_SCORE_SOFTMAX, VLM_SCORE_SIGMOID } vlm_scoring_func;

typedef struct {
    int vocab_size, hidden_size, intermediate_size, moe_intermediate_size;
    int num_hidden_layers, num_attention_heads, num_key_value_heads;
    int n_shared_experts, n_routed_experts, num_experts_per_tok; /* 0 = dense model */
    int first_k_dense_replace, moe_layer_freq, n_group, topk_group;
    vlm_topk_method topk_method;
    vlm_scoring_func scoring_func;
    int norm_topk_prob;
    float routed_scaling_factor;
    int use_mla;
    int q_lora_rank; /* 0 = null (no q_a/q_b projections) */
    int kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim;
    int max_position_embeddings;
    float rms_norm_eps, rope_theta;
    int bos_token_id, eos_token_id;
} vlm_lm_config;

/* Layer l is an MoE layer (else a dense MLP), as DeepseekV2DecoderLayer decides. */
static inline int vlm_lm_layer_is_moe(const vlm_lm_config *c, int l)
{
    return c->n_routed_experts > 0 && l >= c->first_k_dense_replace && (l % c->moe_layer_freq) == 0;
}

#ifdef __cplusplus
}
#endif
#endif

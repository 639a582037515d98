/* The DeepSeek-V2-style Mixture-of-Experts text decoder of DeepSeek-VL2
 * (models/modeling_deepseek.py): MHA (Tiny, through transformers' LlamaAttention)
 * or MLA (Small/Base, DeepseekV2Attention), dense MLP in the first layers, MoE
 * with shared experts after that, RMSNorm, untied lm_head. fp32 reference path
 * on the ops of core/ops.h; weights stay in the checkpoint mapping. */
#ifndef VLM_TEXT_DECODER_H
#define VLM_TEXT_DECODER_H

#include <stdint.h>

#include "core/backend.h"
#include "core/checkpoint.h"
#include "text/lm_config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vlm_lm vlm_lm;

/* prefix: "language." for DeepSeek-VL2 checkpoints (tensors language.model.layers.N...., language.lm_head.weight),
 * "" for a plain DeepseekV2ForCausalLM. Every tensor the config implies is checked for presence, dtype and shape
 * (errors name the tensor, the expected and the found shape). The checkpoint must outlive the model. */
int vlm_lm_load(const vlm_checkpoint *ck, const char *prefix, const vlm_lm_config *cfg, vlm_lm **out);
/* Weight formats chosen at load: attention (q/k/v/o, MLA q_proj/q_a/q_b/kv_a/o; kv_b stays as
 * stored for the absorbed form), experts (every SwiGLU MLP: dense layers, routed and shared experts)
 * and the lm_head. The router gate and the embedding table stay as stored. */
typedef struct {
    vlm_quant_spec attention, experts, lm_head;
} vlm_lm_quant;
/* vlm_lm_load with weights converted as q says (q may be NULL: all as stored). */
int vlm_lm_load_q(const vlm_checkpoint *ck, const char *prefix, const vlm_lm_config *cfg, const vlm_lm_quant *q,
                  vlm_lm **out);
void vlm_lm_free(vlm_lm *lm);
const vlm_lm_config *vlm_lm_get_config(const vlm_lm *lm);
/* Number of MoE layers (the first dimension of the routing traces). */
int vlm_lm_n_moe_layers(const vlm_lm *lm);
/* MLA only: 1 (default) = weight-absorbed attention over the compressed cache, as the official
 * DeepseekV2Attention; 0 = expand k = [W_UK ckv ; k_pe], v = W_UV ckv for every cached token.
 * Both read the same cache. Ignored for MHA. Not thread-safe against a running forward. */
void vlm_lm_set_mla_absorbed(vlm_lm *lm, int absorbed);
/* Runs the forward pass on `be` (NULL: the CPU backend; the loader sets the CPU). A backend without
 * host memory (CUDA) runs weights as stored (F32 / BF16 / F16) or converted to bf16, not q8 / q4:
 * those are VLM_ERR_UNSUPPORTED, naming the weights and asking for --quant bf16 or none, and the
 * model stays where it was. KV caches made before belong to the old backend (forward refuses them).
 * Not thread-safe against a running forward. */
int vlm_lm_set_backend(vlm_lm *lm, const vlm_backend *be);

/* Token embeddings [n, hidden]; an id outside [0, vocab) is an error. */
int vlm_lm_embed(const vlm_lm *lm, const int32_t *ids, int64_t n, float *out);

/* Per-layer cache. MHA: K and V (num_key_value_heads * head_dim each) per token;
 * MLA: the normed compressed kv (kv_lora_rank) followed by the roped k_pe (qk_rope_head_dim).
 * Values are fp32 or IEEE half (16-bit: half the memory and half the bytes each decode step reads;
 * K/V computed in fp32, rounded to nearest when stored, |x| > 65504 saturated). */
typedef struct vlm_kv_cache vlm_kv_cache;
/* The element type of caches made from now on: VLM_KV_AUTO (the default: 16-bit when the attention
 * weights are converted, i.e. run by the fast kernels, and the backend has f16 attention; fp32 for
 * weights as stored, the exact reference path), VLM_KV_F32 or VLM_KV_F16. F16 on a backend without
 * f16 attention is VLM_ERR_UNSUPPORTED here (the setting unchanged) and at cache creation (if the
 * backend changed since). */
typedef enum { VLM_KV_AUTO = 0, VLM_KV_F32 = 1, VLM_KV_F16 = 2 } vlm_kv_type;
int vlm_lm_set_kv_type(vlm_lm *lm, vlm_kv_type t);
/* What VLM_KV_AUTO / the setting resolves to for lm's current weights and backend (never AUTO). */
vlm_kv_type vlm_lm_kv_type(const vlm_lm *lm);
/* Cache bytes per token (all layers) for that type. */
int64_t vlm_lm_kv_bytes_per_token(const vlm_lm *lm);
/* Parses "auto", "f32", "f16" (0 or VLM_ERR_INVALID). */
int vlm_kv_type_parse(const char *s, vlm_kv_type *out);
const char *vlm_kv_type_name(vlm_kv_type t);
int vlm_kv_cache_create(const vlm_lm *lm, int64_t max_tokens, vlm_kv_cache **out);
vlm_kv_type vlm_kv_cache_type(const vlm_kv_cache *c);
void vlm_kv_cache_free(vlm_kv_cache *c);
void vlm_kv_cache_reset(vlm_kv_cache *c);
/* Forget everything after the first n tokens (n <= current length). */
int vlm_kv_cache_truncate(vlm_kv_cache *c, int64_t n);
int64_t vlm_kv_cache_len(const vlm_kv_cache *c);
int64_t vlm_kv_cache_capacity(const vlm_kv_cache *c);
/* Bytes of one token's rows in all layers and buffers of this cache. */
int64_t vlm_kv_cache_token_bytes(const vlm_kv_cache *c);
/* Copies tokens [pos, pos + n) (pos + n <= length) out to host memory dst, layout [layer][buffer][n][row]
 * (vlm_kv_cache_token_bytes(c) * n bytes). */
int vlm_kv_cache_export(const vlm_kv_cache *c, int64_t pos, int64_t n, void *dst);
/* Writes n tokens from host memory src (as exported from a cache of the same model and type) at
 * position pos (pos <= length, pos + n <= capacity); the length becomes pos + n. */
int vlm_kv_cache_import(vlm_kv_cache *c, int64_t pos, int64_t n, const void *src);

typedef struct {
    float *hidden_states;     /* NULL or [(L+1), T, H]: HF output_hidden_states: [0]=inputs, [i]=output of layer i-1, [L]=after final norm */
    int32_t *routing_idx;     /* NULL or [n_moe_layers, T, top_k]: chosen experts per MoE layer, sorted ascending */
    float *routing_weight;    /* NULL or same shape: combine weights in the same order */
    float *routing_gap;       /* NULL or [n_moe_layers, T]: selection score of k-th minus (k+1)-th expert */
    const int32_t *force_idx; /* NULL or [n_moe_layers, T, top_k]: where force_mask[l*T+t] != 0 use these experts instead of the top-k */
    const uint8_t *force_mask;
} vlm_lm_trace;

/* Appends T tokens (their input embeddings [T, H]) after the cache's current length, positions continuing from it.
 * logits: [T, vocab] if all_logits else [vocab] for the last row only (may be NULL to skip the lm_head).
 * T + cache length > capacity is an error (VLM_ERR_LIMIT) and leaves the cache unchanged; on any error the
 * cache length is unchanged. trace may be NULL. */
int vlm_lm_forward(const vlm_lm *lm, vlm_kv_cache *cache, const float *embeds, int64_t T, float *logits, int all_logits,
                   vlm_lm_trace *trace);

/* One sequence's part of a batched forward step. */
typedef struct {
    vlm_kv_cache *cache;
    int64_t n_tokens; /* its new rows, appended after the cache's length */
    int want_logits;  /* the logits of its last row are wanted */
} vlm_lm_seq;

/* n_seq sequences' new tokens in one forward pass (continuous batching): embeds [sum n_tokens, H],
 * the sequences' rows one after the other. Every op but attention runs on all rows at once (one
 * GEMM per linear over the batch, routed experts grouped by expert across it); attention runs per
 * sequence over its own cache. Each row's arithmetic is that of vlm_lm_forward. logits: NULL or
 * [number of sequences with want_logits, vocab], their last rows in order. expert_counts: NULL or
 * [n_moe_layers * n_routed_experts], incremented by the tokens routed to each expert. Caches must be
 * distinct; on any error no cache's length changes. */
int vlm_lm_forward_batch(const vlm_lm *lm, const vlm_lm_seq *seqs, int n_seq, const float *embeds, float *logits,
                         int64_t *expert_counts);

#ifdef __cplusplus
}
#endif
#endif

/* Internals of the text decoder shared by its source files (not a public header). */
#ifndef VLM_TEXT_LM_INTERNAL_H
#define VLM_TEXT_LM_INTERNAL_H

#include "core/backend.h"
#include "core/ops.h"
#include "text/decoder.h"
#include "text/moe_router.h"

/* The official code builds kv_a_layernorm / q_a_layernorm with the class default eps,
 * not config.rms_norm_eps. */
#define VLM_MLA_NORM_EPS 1e-6f

typedef struct {
    vlm_weight gate, up, down; /* SwiGLU: down(silu(gate x) * up x) */
} vlm_mlp_w;

typedef struct {
    /* MHA (LlamaAttention) */
    vlm_weight q, k, v;
    float *bq, *bk, *bv; /* optional biases (attention_bias), NULL if absent */
    /* MLA (DeepseekV2Attention) */
    vlm_weight q_proj;           /* q_lora_rank == 0 */
    vlm_weight q_a, q_b;         /* q_lora_rank > 0 */
    float *q_a_norm;
    vlm_weight kv_a;             /* [kv_lora + rope, H] */
    float *kv_a_norm;            /* [kv_lora] */
    vlm_weight kv_b;             /* [nh * (nope + v), kv_lora] */
    void *uk_t;                  /* absorbed form: per head W_UK^T [nh][kv_lora][nope], kv_b's dtype (owned) */
    float *bq_a, *bkv_a;         /* optional biases of q_a_proj / kv_a_proj_with_mqa */
    /* both */
    vlm_weight o;
    float *bo;
} vlm_attn_w;

typedef struct {
    float *in_norm, *post_norm;
    vlm_attn_w attn;
    int is_moe, moe_index; /* moe_index: position among the MoE layers, -1 for dense */
    vlm_mlp_w mlp;         /* dense layer */
    vlm_weight gate;       /* MoE: [E, H] */
    float *gate_bias;      /* noaux_tc e_score_correction_bias [E] */
    vlm_mlp_w *experts;    /* [E] */
    int has_shared;
    vlm_mlp_w shared;
} vlm_lm_layer;

struct vlm_lm {
    const vlm_backend *be; /* runs the forward pass (set at load; NULL is taken as the CPU backend) */
    vlm_lm_config cfg;
    int head_dim; /* MHA */
    int n_moe;
    int mla_absorbed;
    vlm_kv_type kv_type; /* as set (VLM_KV_AUTO by default) */
    vlm_weight embed, lm_head;
    float *final_norm;
    vlm_lm_layer *layers;
};

struct vlm_kv_cache {
    const vlm_lm *lm;
    int64_t cap, len;
    int64_t row;  /* values per token per layer per buffer: MHA nkv*hd (K and V each), MLA kv_lora+rope */
    int n_bufs;   /* 2 (MHA: K, V) or 1 (MLA) */
    int f16;      /* values are IEEE half (uint16_t), else float */
    const vlm_backend *be; /* the model's backend at creation; data is its buffer */
    void *data;   /* [n_layers][n_bufs][cap][row] */
};

/* The backend a model runs on. */
static inline const vlm_backend *vlm_lm_backend(const vlm_lm *lm) { return lm->be ? lm->be : vlm_backend_cpu(); }

/* Bytes of one cached token's row of one buffer of one layer. */
static inline size_t vlm_kv_row_bytes(const vlm_kv_cache *c) { return (size_t)c->row * (c->f16 ? 2u : 4u); }
/* Rows [0, cap) of buffer b (0 = K or MLA latent, 1 = V) of layer l (floats or halves, c->f16). */
static inline void *vlm_kv_rows(const vlm_kv_cache *c, int l, int b)
{
    return (char *)c->data + ((size_t)l * (size_t)c->n_bufs + (size_t)b) * (size_t)c->cap * vlm_kv_row_bytes(c);
}
/* The same at token `pos` */
static inline void *vlm_kv_at(const vlm_kv_cache *c, int l, int b, int64_t pos)
{
    return (char *)vlm_kv_rows(c, l, b) + (size_t)pos * vlm_kv_row_bytes(c);
}
/* Stores T new rows of c->row floats (src_stride apart) at token pos of buffer b of an f16 cache
 * (into an fp32 cache the projections write directly). */
int vlm_kv_store_f16(const vlm_kv_cache *c, int l, int b, int64_t pos, const float *src, int64_t src_stride,
                     int64_t T);

/* One sequence's rows in a forward step: T new tokens at positions pos0 .. pos0+T-1 of cache c,
 * rows row0 .. row0+T-1 of the step's activations. */
typedef struct {
    vlm_kv_cache *c;
    int64_t pos0, T, row0;
} vlm_lm_part;

/* One forward step over n sequences' new tokens (T rows in all, the sequences' rows one after the
 * other), with the rows' RoPE tables [T][rope_dim/2] (row t: its own position; buffers of the
 * model's backend). All float pointers below are buffers of lm->be (core/backend.h). */
typedef struct {
    int64_t T;
    const float *cos, *sin;
    const vlm_lm_part *parts;
    int n;
} vlm_lm_step;

/* Attention of layer l on normed input x [T, H] into out [T, H]: the projections over all rows at
 * once, the attention itself per sequence over its own cache; writes the new tokens into the caches. */
int vlm_attn_mha_forward(const vlm_lm *lm, int l, const vlm_lm_step *s, const float *x, float *out);
int vlm_attn_mla_forward(const vlm_lm *lm, int l, const vlm_lm_step *s, const float *x, float *out);
/* Stores rows [row0, row0 + T) of src (row_stride floats apart, c->row values each) at the part's
 * cache positions (rounded to half in an f16 cache). */
int vlm_kv_store_part(const vlm_lm_part *p, int l, int b, const float *src, int64_t row_stride);

/* SwiGLU MLP on x [M, H] into y [M, H]; g and u are scratch [M, intermediate]. */
int vlm_mlp_forward(const vlm_backend *be, const vlm_mlp_w *m, const float *x, int64_t M, float *y, float *g, float *u);

/* MoE layer on normed x [T, H] into y [T, H] (routed + shared). The routing outputs (idx/weight [T, top_k],
 * gap [T]) may be NULL; force_idx/force_mask likewise (force_mask[t] != 0: use force_idx[t*top_k..]).
 * expert_counts: NULL or [n_routed_experts], incremented by the tokens routed to each expert.
 * x and y are buffers; the routing arrays are host memory (routing runs on the host). */
int vlm_moe_forward(const vlm_lm *lm, const vlm_lm_layer *L, const float *x, int64_t T, float *y, int32_t *idx,
                    float *weight, float *gap, const int32_t *force_idx, const uint8_t *force_mask,
                    int64_t *expert_counts);

/* A [rows, cols] sub-matrix view starting at row r0 of W. */
static inline vlm_weight vlm_weight_rows(const vlm_weight *W, int64_t r0, int64_t rows)
{
    return vlm_weight_slice(W, r0, rows);
}

#endif

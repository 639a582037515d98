/* The op interface: the numerical building blocks the model code is written in.
 * This is the fp32 CPU reference implementation (core/ops_cpu.c): activations are
 * fp32, weights may be stored F32, BF16 or F16 and are widened to fp32, all sums
 * accumulate in fp32. Large loops run on the default thread pool.
 * Layouts are row-major; a linear weight is [out, in] as PyTorch stores it. */
#ifndef VLM_CORE_OPS_H
#define VLM_CORE_OPS_H

#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A 2-D weight matrix [rows, cols] (rows = output features) in its stored dtype. */
typedef struct {
    vlm_dtype dtype; /* F32, BF16 or F16 */
    int64_t rows, cols;
    const void *data;
} vlm_weight;

/* y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n]);  x is [M, W.cols], y is [M, W.rows]. */
void vlm_op_linear(float *y, const float *x, int64_t M, const vlm_weight *W, const float *bias);
/* Copies row r of W as fp32 (an embedding lookup). */
void vlm_op_weight_row(const vlm_weight *W, int64_t r, float *dst);

void vlm_op_layernorm(float *y, const float *x, int64_t M, int64_t D, const float *gamma, const float *beta, float eps);
/* y = x * rsqrt(mean(x^2) + eps) * gamma, per row of D. */
void vlm_op_rmsnorm(float *y, const float *x, int64_t M, int64_t D, const float *gamma, float eps);

void vlm_op_gelu_tanh(float *x, int64_t n);
void vlm_op_gelu_erf(float *x, int64_t n);
/* g[i] = silu(g[i]) * up[i] */
void vlm_op_silu_mul(float *g, const float *up, int64_t n);
/* In-place softmax over n values (max-subtracted). */
void vlm_op_softmax(float *x, int64_t n);
void vlm_op_add(float *y, const float *x, int64_t n);

/* RoPE tables: cos/sin[pos][i] for i < dim/2, computed as PyTorch does in fp32:
 * inv_freq[i] = 1 / theta^(2i/dim), angle = (float)pos * inv_freq[i]. */
void vlm_rope_angles(float *cos_out, float *sin_out, int64_t pos, int dim, float theta);
/* NeoX / rotate_half layout: pairs (i, i + dim/2). x has n_heads vectors of `dim` at stride `head_stride`. */
void vlm_op_rope_neox(float *x, int n_heads, int64_t head_stride, int dim, const float *cos, const float *sin);
/* Interleaved pairs (2i, 2i+1), written de-interleaved ([even | odd] rotated) as the official
 * DeepSeek-V2 code leaves them; dot products between two such vectors are unchanged. */
void vlm_op_rope_interleaved(float *x, int n_heads, int64_t head_stride, int dim, const float *cos, const float *sin);

/* Scaled dot-product attention for n_q query rows against n_kv key/value rows.
 * Query row i, head h:  q + i*q_stride + h*qk_dim;  key row j, kv head g: k + j*k_stride + g*qk_dim;
 * value: v + j*v_stride + g*v_dim;  output: out + i*o_stride + h*v_dim.  Head h uses kv head
 * h / (n_heads / n_kv_heads).  If causal, query i (absolute position q_pos0 + i) sees keys j <= q_pos0 + i. */
typedef struct {
    int64_t n_q, n_kv;
    int n_heads, n_kv_heads, qk_dim, v_dim;
    int64_t q_stride, k_stride, v_stride, o_stride;
    int causal;
    int64_t q_pos0;
    float scale;
} vlm_attention_params;
/* Returns 0, or VLM_ERR_NOMEM / VLM_ERR_INVALID. */
int vlm_op_attention(const vlm_attention_params *p, const float *q, const float *k, const float *v, float *out);

#ifdef __cplusplus
}
#endif
#endif

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

/* How a weight is stored and which kernels run it (chosen at load time).
 *  VLM_WQ_NONE  as in the checkpoint (F32/BF16/F16), the fp32 reference kernels of ops_cpu.c.
 *  VLM_WQ_BF16  BF16 (a copy only when the checkpoint holds another dtype), the fast kernels.
 *  VLM_WQ_Q8    int8 q in [-127, 127], w = q * d; one fp16 scale d = max|w| / 127 per group.
 *  VLM_WQ_Q4    4-bit q in [-7, 7] stored as q + 8, w = q * d; d = max|w| / 7 per group.
 * Quantized rows are padded with zeros to a multiple of 32 weights (the kernel block);
 * groups hold `group` weights (a multiple of 32) and the last group of a row holds what
 * is left (e.g. 4304 = 134 * 32 + 16 with group 32: 134 full groups and one of 16).
 * Q4 packs each block of 32 into 16 bytes: byte i holds weight i in its low nibble and
 * weight i + 16 in its high nibble. Scales are [rows][ceil(cols / group)] fp16. */
typedef enum { VLM_WQ_NONE = 0, VLM_WQ_BF16, VLM_WQ_Q8, VLM_WQ_Q4 } vlm_wquant;

/* A 2-D weight matrix [rows, cols] (rows = output features). */
typedef struct {
    vlm_dtype dtype; /* VLM_WQ_NONE / BF16: F32, BF16 or F16 elements; q8: I8; q4: U8 (two per byte) */
    int64_t rows, cols;
    const void *data;
    vlm_wquant quant;
    int group;               /* q8/q4: weights per scale */
    int64_t row_bytes;       /* q8/q4: bytes per stored row */
    const uint16_t *scales;  /* q8/q4: fp16 [rows][n_groups] */
    void *owned;             /* storage this weight owns (converted copies); see vlm_weight_release */
} vlm_weight;

/* A requested format for a set of weights; group 0 means the default (32). */
typedef struct {
    vlm_wquant fmt;
    int group;
} vlm_quant_spec;

/* Converts W in place to spec's format (a no-op for VLM_WQ_NONE, or BF16 already stored so).
 * The converted copy is owned by W. Returns 0, VLM_ERR_INVALID or VLM_ERR_NOMEM. */
int vlm_weight_convert(vlm_weight *W, const vlm_quant_spec *spec);
/* The same for a weight read from a read-only file mapping (a checkpoint): with drop_source,
 * the pages it was read from are dropped from the resident set afterwards (they would be
 * faulted in again from the file if read). Never use it on heap memory. */
int vlm_weight_convert_mapped(vlm_weight *W, const vlm_quant_spec *spec, int drop_source);
/* Frees what W owns (safe on any weight, also a zeroed one) and clears the ownership. */
void vlm_weight_release(vlm_weight *W);
/* Bytes the kernels read for W (data + scales). */
size_t vlm_weight_bytes(const vlm_weight *W);
/* Rows [r0, r0 + rows) of W as a view (any format). */
vlm_weight vlm_weight_slice(const vlm_weight *W, int64_t r0, int64_t rows);
/* Parses "bf16", "q8", "q4", optionally with ":<group>" ("q4:64"), or "none"/"ref". */
int vlm_quant_spec_parse(const char *s, vlm_quant_spec *out);
const char *vlm_wquant_name(vlm_wquant q);
/* The SIMD level the fast kernels use here: "avx2" or "scalar". */
const char *vlm_ops_simd(void);
/* Int8 activations for prefill / ViT / batched-decode products (M >= 4) on q8/q4 weights: each
 * input row is quantized to int8 per block of 32 (scale max|x| / 127, as the decode GEMV always
 * does) and an int8 GEMM runs (core/ops_int8_panel.c) instead of the fp32 GEMM on dequantized
 * weights. mode 1: on; 0: off (fp32 GEMM); negative: auto, the default, which is on for q8 and q4
 * (kept as its own value so that a later kernel may differ by format). A process-wide setting.
 * It changes results by the input rounding: relative RMS error of y vs fp32 weights 7.4e-3 with
 * q8 weights (5.2e-3 from the q8 weights alone), 1.1e-2 to 1.3e-2 with outlier input features; q4
 * weights alone err more than that. On the 2-vCPU Zen 3 it was measured on, against the fp32
 * GEMM: q4 about 2.5x, q8 1.5-1.9x (8 to 512 rows). */
void vlm_ops_set_int8_activations(int mode);
int vlm_ops_int8_activations(void); /* the mode: -1 auto, 0 off, 1 on */
/* Tests: 0 forces the portable scalar versions of the fast kernels, 1 restores detection. */
void vlm_ops_set_simd(int enable);

/* y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n]);  x is [M, W.cols], y is [M, W.rows]. */
void vlm_op_linear(float *y, const float *x, int64_t M, const vlm_weight *W, const float *bias);
/* Several independent products in one parallel pass: the experts a decode token is routed
 * to. Results equal separate vlm_op_linear calls exactly; the batching (one thread-pool job
 * for all rows) applies to converted weights (quant != NONE) with M < 4, other jobs run one
 * after another. */
typedef struct {
    float *y;
    const float *x;
    int64_t M;
    const vlm_weight *W;
    const float *bias;
} vlm_linear_job;
void vlm_op_linear_many(const vlm_linear_job *jobs, int n);
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
/* dst[r*dst_stride + i] = f16(src[r*src_stride + i]) for i < width: round to nearest even, values
 * beyond the half range saturated to +-65504 (a KV cache entry never turns into an infinity). */
void vlm_op_rows_to_f16(uint16_t *dst, int64_t dst_stride, const float *src, int64_t src_stride, int64_t rows,
                        int64_t width);
/* The other way (exact). */
void vlm_op_rows_from_f16(float *dst, int64_t dst_stride, const uint16_t *src, int64_t src_stride, int64_t rows,
                          int64_t width);

/* Scaled dot-product attention for n_q query rows against n_kv key/value rows.
 * Query row i, head h:  q + i*q_stride + h*qk_dim;  key row j, kv head g: k + j*k_stride + g*qk_dim;
 * value: v + j*v_stride + g*v_dim;  output: out + i*o_stride + h*v_dim.  Head h uses kv head
 * h / (n_heads / n_kv_heads).  If causal, query i (absolute position q_pos0 + i) sees keys j <= q_pos0 + i.
 * k and v hold floats, or IEEE half values (uint16_t) when kv_f16 is set (a 16-bit KV cache; strides
 * then count halves); the math is the same on the values widened to fp32. */
typedef struct {
    int64_t n_q, n_kv;
    int n_heads, n_kv_heads, qk_dim, v_dim;
    int64_t q_stride, k_stride, v_stride, o_stride;
    int causal;
    int64_t q_pos0;
    float scale;
    int kv_f16;
} vlm_attention_params;
/* Returns 0, or VLM_ERR_NOMEM / VLM_ERR_INVALID. */
int vlm_op_attention(const vlm_attention_params *p, const float *q, const void *k, const void *v, float *out);

/* The fast path's attention (core/ops_attention.c): blocked, AVX2, never the n_q x n_kv matrix;
 * one query row (decode) against 64 keys or more: blocks of keys read row by row for every head;
 * equals vlm_op_attention up to rounding (summation order, a polynomial exp). Falls back to
 * vlm_op_attention without AVX2, for 2 to 5 query rows and for decode against fewer keys. */
int vlm_op_attention_fast(const vlm_attention_params *p, const float *q, const void *k, const void *v, float *out);
/* vlm_op_gelu_tanh with a polynomial exp (AVX2), equal up to rounding. */
void vlm_op_gelu_tanh_fast(float *x, int64_t n);

#ifdef __cplusplus
}
#endif
#endif

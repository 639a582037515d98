/* The CUDA backend: the ops of core/ops.h, MoE routing (text/moe_router.h) and token
 * choice (text/sampler.h) on device memory. Built with `make CUDA=1`; without it
 * cuda/cuda_stub.c provides these functions and they fail with VLM_ERR_UNSUPPORTED.
 *
 * Conventions:
 *  - Every float / int32 pointer argument is device memory unless it says "host".
 *    Device buffers are plain pointers (from vlm_cuda_malloc); no CUDA type appears here.
 *  - `stream` is a cudaStream_t passed as void*; NULL means the default (legacy) stream.
 *    The ops only enqueue work: results are ready after vlm_cuda_sync() or a d2h copy.
 *  - Each op computes what its CPU reference computes (same layouts, same formulas, fp32
 *    math unless stated); tests/test_cuda_ops.cc compares them and states the tolerances.
 *  - Returns 0 or a negative VLM_ERR_* with a message naming the CUDA / cuBLAS error:
 *    VLM_ERR_INVALID for bad arguments (checked before anything is enqueued), VLM_ERR_NOMEM
 *    for device allocation failures, VLM_ERR_UNSUPPORTED when there is no usable device
 *    (or no CUDA in this build), VLM_ERR_IO for any other device failure.
 *  - Errors of kernels that run asynchronously surface at the next call that synchronizes.
 *  - The functions may be called from several host threads; the one cuBLAS handle is shared
 *    under a lock. */
#ifndef VLM_CUDA_CUDA_OPS_H
#define VLM_CUDA_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "core/ops.h"
#include "core/tensor.h"
#include "text/moe_router.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef void *vlm_cuda_stream;

/* ---- device and memory ------------------------------------------------------ */

/* Number of usable devices: 0 when there is none, no driver, or no CUDA in this build
 * (the reason is left in vlm_last_error()). Never negative. */
int vlm_cuda_device_count(void);
/* The device's name (e.g. "NVIDIA H100 80GB HBM3") into buf (host, n bytes, NUL-terminated). */
int vlm_cuda_device_name(int dev, char *buf, size_t n);
/* Makes dev the calling thread's current device. */
int vlm_cuda_set_device(int dev);
/* Waits for all work on the current device. */
int vlm_cuda_sync(void);
/* Releases the process-wide state (the cuBLAS handle). Safe to call more than once. */
void vlm_cuda_shutdown(void);

int vlm_cuda_stream_create(vlm_cuda_stream *out);
void vlm_cuda_stream_destroy(vlm_cuda_stream stream);
int vlm_cuda_stream_sync(vlm_cuda_stream stream);

/* *ptr = device memory of `bytes` (NULL when bytes is 0). */
int vlm_cuda_malloc(void **ptr, size_t bytes);
void vlm_cuda_free(void *ptr); /* NULL is fine */
/* Synchronous copies: host src -> device dst, device src -> host dst, device -> device. */
int vlm_cuda_memcpy_h2d(void *dst, const void *src, size_t bytes);
int vlm_cuda_memcpy_d2h(void *dst, const void *src, size_t bytes);
int vlm_cuda_memcpy_d2d(void *dst, const void *src, size_t bytes);
int vlm_cuda_memset0(void *dst, size_t bytes, vlm_cuda_stream stream);
/* 1 when p points into device (or managed) memory, 0 for host memory, NULL, or no CUDA. Never an
 * error: a pointer CUDA does not know is host memory. */
int vlm_cuda_is_device_pointer(const void *p);
/* 2-D copy of floats on the device: dst[i * dst_stride + j] = src[i * src_stride + j] for
 * i < rows, j < width (the rows must not overlap). */
int vlm_cuda_copy_rows(float *dst, int64_t dst_stride, const float *src, int64_t src_stride, int64_t rows,
                       int64_t width, vlm_cuda_stream stream);

/* ---- linear ----------------------------------------------------------------- */

/* A weight [rows, cols] in device memory, elements F32, BF16 or F16 (row-major, as vlm_weight). */
typedef struct {
    vlm_dtype dtype;
    int64_t rows, cols;
    void *data;
} vlm_cuda_weight;

/* Copies a host weight stored as F32, BF16 or F16 (quant VLM_WQ_NONE or VLM_WQ_BF16) to the
 * device; q8/q4 weights are VLM_ERR_UNSUPPORTED. Free with vlm_cuda_weight_free. */
int vlm_cuda_weight_upload(const vlm_weight *W, vlm_cuda_weight *out);
void vlm_cuda_weight_free(vlm_cuda_weight *W);

/* y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n]); x [M, W.cols], y [M, W.rows], bias [W.rows] or NULL.
 * F32 weights: fp32 SGEMM (no TF32). BF16/F16 weights: x is rounded to the weight's type and the
 * tensor cores multiply with fp32 accumulation, so y differs from vlm_op_linear by at most
 * u * sum_k |x_k w_k| (u = 2^-8 for BF16, 2^-11 for F16) plus fp32 summation error. */
int vlm_cuda_linear(float *y, const float *x, int64_t M, const vlm_cuda_weight *W, const float *bias,
                    vlm_cuda_stream stream);
/* dst[i, :] = row ids[i] of W widened to fp32 (exact), i < n; ids (device) must lie in [0, W.rows)
 * (checked by the caller, as vlm_op_weight_row). */
int vlm_cuda_embed_rows(float *dst, const vlm_cuda_weight *W, const int32_t *ids, int64_t n, vlm_cuda_stream stream);

/* ---- norms and pointwise (as vlm_op_*) ------------------------------------- */

int vlm_cuda_rmsnorm(float *y, const float *x, int64_t M, int64_t D, const float *gamma, float eps,
                     vlm_cuda_stream stream);
/* The same on M rows of D values that start `stride` floats apart (stride >= D); y and x use the
 * same stride and may be the same buffer. */
int vlm_cuda_rmsnorm_strided(float *y, const float *x, int64_t M, int64_t D, int64_t stride, const float *gamma,
                             float eps, vlm_cuda_stream stream);
/* beta may be NULL. */
int vlm_cuda_layernorm(float *y, const float *x, int64_t M, int64_t D, const float *gamma, const float *beta,
                       float eps, vlm_cuda_stream stream);
int vlm_cuda_gelu_tanh(float *x, int64_t n, vlm_cuda_stream stream);
int vlm_cuda_gelu_erf(float *x, int64_t n, vlm_cuda_stream stream);
/* g[i] = silu(g[i]) * up[i] */
int vlm_cuda_silu_mul(float *g, const float *up, int64_t n, vlm_cuda_stream stream);
/* y[i] += x[i] */
int vlm_cuda_add(float *y, const float *x, int64_t n, vlm_cuda_stream stream);
/* In-place softmax of each of the M rows of n values (contiguous, [M, n]). */
int vlm_cuda_softmax_rows(float *x, int64_t M, int64_t n, vlm_cuda_stream stream);

/* ---- RoPE (as vlm_op_rope_neox / vlm_op_rope_interleaved, for n_tok tokens at once) ----
 * Token t's heads start at x + t * tok_stride, head h at + h * head_stride, `dim` values each
 * (dim even, <= 512). cos/sin are [n_tok, dim/2]: row t holds token t's angles (for consecutive
 * positions p0.. pass a table of vlm_rope_angles rows offset by p0 * dim/2). The interleaved form
 * writes its result de-interleaved ([even | odd] rotated), exactly as the CPU op. */
int vlm_cuda_rope_neox(float *x, int64_t n_tok, int64_t tok_stride, int n_heads, int64_t head_stride, int dim,
                       const float *cos, const float *sin, vlm_cuda_stream stream);
int vlm_cuda_rope_interleaved(float *x, int64_t n_tok, int64_t tok_stride, int n_heads, int64_t head_stride,
                              int dim, const float *cos, const float *sin, vlm_cuda_stream stream);

/* ---- attention ---------------------------------------------------------------
 * vlm_op_attention's semantics (p is a host struct; q, k, v, out device): GQA, strides, causal
 * with q_pos0, scale. Flash-style: online softmax over blocks of 32 keys, no score matrix.
 * qk_dim and v_dim up to 256. */
int vlm_cuda_attention(const vlm_attention_params *p, const float *q, const float *k, const float *v, float *out,
                       vlm_cuda_stream stream);

/* ---- MoE ---------------------------------------------------------------------
 * Routing of T tokens at once with vlm_moe_route's formulas and tie rule (every topk_method
 * and scoring_func): logits [T, n_experts] -> idx [T, top_k] (ascending expert ids per token)
 * and weight [T, top_k] (same order). r is a host struct; its bias pointer is ignored and
 * `bias` (device, [n_experts]) is used instead: the e_score_correction_bias for noaux_tc, else NULL. */
int vlm_cuda_moe_route(const vlm_moe_router *r, const float *bias, const float *logits, int64_t T, int32_t *idx,
                       float *weight, vlm_cuda_stream stream);
/* Groups the T * top_k routing entries by expert for batched expert GEMMs. An entry is the flat
 * index e = t * top_k + j into idx / weight (token t = e / top_k).
 *   offsets [n_experts + 1]: expert x's entries are rows[offsets[x] .. offsets[x + 1]);
 *   rows    [T * top_k]:     the entries grouped by expert, each group in ascending entry order;
 *   pos     [T * top_k]:     the inverse: rows[pos[e]] == e (-1 for an entry whose id is out of range).
 * Deterministic (no atomics decide the order). */
int vlm_cuda_moe_group(const int32_t *idx, int64_t T, int top_k, int n_experts, int32_t *offsets, int32_t *rows,
                       int32_t *pos, vlm_cuda_stream stream);
/* dst[r, :] = src[rows[r] / div, :] for r < n (rows D floats): with div = top_k, the expert
 * inputs in grouped order. */
int vlm_cuda_gather_rows(float *dst, const float *src, int64_t D, const int32_t *rows, int64_t n, int div,
                         vlm_cuda_stream stream);
/* For i = 0, 1, ..., n - 1 in this order: y[rows[i] / div, :] += w[rows[i]] * src[i, :], the product
 * and the sum each rounded to fp32 (no fused multiply-add): bit for bit what the CPU backend's
 * scatter_add_rows computes (core/backend_cpu.c). One thread per column walks the n rows in order,
 * so rows that share a destination are added in the given order (no atomics). */
int vlm_cuda_scatter_add_rows(float *y, const float *src, int64_t D, const int32_t *rows, const float *w, int64_t n,
                              int div, vlm_cuda_stream stream);
/* y[t, :] += sum_j weight[t * top_k + j] * expert_out[pos[t * top_k + j], :], j in order (no atomics);
 * expert_out holds the expert outputs in grouped order ([T * top_k, D]). */
int vlm_cuda_moe_combine(float *y, const float *expert_out, const float *weight, const int32_t *pos, int64_t T,
                         int top_k, int64_t D, vlm_cuda_stream stream);

/* ---- token choice ------------------------------------------------------------ */

/* out[m] = argmax of row m of x [M, V]: lowest index on ties, NaN never chosen, -1 if all NaN. */
int vlm_cuda_argmax(const float *x, int64_t M, int64_t V, int32_t *out, vlm_cuda_stream stream);
/* One token from logits [V] (not modified) with vlm_sampler_sample's steps 2-6 (temperature,
 * top-k, top-p, draw) where the draw uses the given uniform u in [0, 1) instead of the sampler's
 * PRNG: the same u gives the CPU sampler's pick (up to the rounding of the probability sums).
 * temperature 0 is greedy. *out (device) = token id, or -1 when no token has a finite logit.
 * The repetition penalty is not applied here. */
int vlm_cuda_sample(const float *logits, int64_t V, float temperature, int top_k, float top_p, double u,
                    int32_t *out, vlm_cuda_stream stream);

#ifdef __cplusplus
}
#endif
#endif

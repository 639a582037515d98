/* The op interface the text decoder is written against, with one implementation per kind of
 * machine: the CPU backend (core/backend_cpu.c, today) and a CUDA backend (cuda/, later).
 *
 * Why a table of function pointers and not #ifdefs: one build can hold both backends and pick
 * one at run time by name (vlm_backend_by_name); an indirect call per op costs nothing next to
 * the op. The model keeps its backend in struct vlm_lm (text/lm_internal.h, `be`; the loader
 * sets the CPU backend) and its KV cache is allocated there.
 *
 * Memory rule. A "buffer" is memory of the backend: every float / int32 pointer an op takes is a
 * buffer. On the CPU backend buffers are host memory (so host arrays may be passed directly); on
 * the CUDA backend they are device memory. Pointer arithmetic inside a buffer gives a buffer (a
 * row view). Only the small descriptions an op is given are host memory: vlm_attention_params,
 * the vlm_linear_job array (whose y / x / bias pointers are buffers), and vlm_weight.
 * Data crosses between host and buffers only through upload / download (or the staging helpers
 * below, which copy nothing on the CPU backend).
 *
 * Parameters. Weights are passed as vlm_weight (the loader's description, any quant format; a
 * view such as vlm_weight_slice or a per-head sub-matrix is fine); norm gammas and biases as
 * buffers. On the CPU backend both are the loader's host copies. A backend with its own memory
 * keeps resident copies of them (made at load, found from the weight's data pointer) - that
 * mapping belongs to the CUDA backend and is not part of this interface yet.
 *
 * Results. The CPU backend calls the core ops (core/ops.h) exactly as the decoder called them
 * before this interface existed: results are bit-identical, and the fast paths (converted
 * weights, vlm_op_linear_many batching, vlm_op_attention_fast) are used under the same
 * conditions. Another backend computes the same formulas up to rounding.
 *
 * Errors. Every op returns 0 or a negative VLM_ERR_* with a message (core/error.h); the CPU ops
 * cannot fail except through allocation (attention). A device backend may report an asynchronous
 * failure at a later call; download is synchronous (its data is ready when it returns).
 *
 * MoE routing (text/moe_router.c) stays on the host: the decoder computes the gate logits in a
 * buffer, reads them through vlm_be_host_view (no copy on the CPU backend), routes every token on
 * the host and hands the grouped expert order back through vlm_be_buffer_view. A device gating
 * kernel (vlm_cuda_moe_route) can replace that round trip later without changing the ops. */
#ifndef VLM_CORE_BACKEND_H
#define VLM_CORE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "core/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { VLM_BACKEND_CPU = 0, VLM_BACKEND_CUDA = 1 } vlm_backend_kind;

typedef struct vlm_backend vlm_backend;

struct vlm_backend {
    const char *name;      /* "cpu", "cuda:0", ... */
    vlm_backend_kind kind;
    int device;            /* device index (0 for the CPU) */
    int host_memory;       /* 1: buffers are host memory (the staging helpers then copy nothing) */
    int kv_f16;            /* 1: attention takes f16 K/V (vlm_attention_params.kv_f16) and the two
                              f16 row ops below exist (a 16-bit KV cache); 0: they are NULL */
    void *ctx;             /* the backend's own state (CUDA: device, stream, resident weights) */

    /* ---- buffers: sizes in bytes ---- */
    /* *out = a buffer of `bytes` (uninitialized; NULL when bytes is 0). */
    int (*alloc)(const vlm_backend *be, size_t bytes, void **out);
    void (*free)(const vlm_backend *be, void *buf); /* NULL is fine */
    int (*zero)(const vlm_backend *be, void *buf, size_t bytes);
    int (*upload)(const vlm_backend *be, void *dst_buf, const void *host_src, size_t bytes);
    int (*download)(const vlm_backend *be, void *host_dst, const void *src_buf, size_t bytes);
    int (*copy)(const vlm_backend *be, void *dst_buf, const void *src_buf, size_t bytes);
    /* 2-D copy of floats: dst[i * dst_stride + j] = src[i * src_stride + j], i < rows, j < width
     * (slices of heads, rows of the cache). */
    int (*copy_rows)(const vlm_backend *be, float *dst, int64_t dst_stride, const float *src, int64_t src_stride,
                     int64_t rows, int64_t width);
    /* The same into / out of half precision (vlm_op_rows_to_f16 / vlm_op_rows_from_f16); only where kv_f16. */
    int (*rows_to_f16)(const vlm_backend *be, uint16_t *dst, int64_t dst_stride, const float *src,
                       int64_t src_stride, int64_t rows, int64_t width);
    int (*rows_from_f16)(const vlm_backend *be, float *dst, int64_t dst_stride, const uint16_t *src,
                         int64_t src_stride, int64_t rows, int64_t width);

    /* ---- ops (as the vlm_op_* of core/ops.h unless said otherwise) ---- */
    int (*linear)(const vlm_backend *be, float *y, const float *x, int64_t M, const vlm_weight *W, const float *bias);
    /* Independent products; on the CPU vlm_op_linear_many (one parallel pass for decode). */
    int (*linear_many)(const vlm_backend *be, const vlm_linear_job *jobs, int n);
    /* y = rmsnorm(x) on M rows of D values that start `stride` floats apart (stride >= D; D for
     * contiguous rows); y and x use the same stride and may be the same buffer. */
    int (*rmsnorm)(const vlm_backend *be, float *y, const float *x, int64_t M, int64_t D, int64_t stride,
                   const float *gamma, float eps);
    int (*silu_mul)(const vlm_backend *be, float *g, const float *up, int64_t n);
    int (*add)(const vlm_backend *be, float *y, const float *x, int64_t n);
    /* In-place softmax of each of M contiguous rows of n values. */
    int (*softmax_rows)(const vlm_backend *be, float *x, int64_t M, int64_t n);
    /* RoPE on n_tok tokens: token t's heads start at x + t * tok_stride, head h at + h * head_stride;
     * cos / sin are [n_tok][dim / 2] (row t: token t's angles). neox: rotate_half pairs (i, i + dim/2);
     * interleaved: pairs (2i, 2i+1) written de-interleaved, as vlm_op_rope_interleaved. */
    int (*rope_neox)(const vlm_backend *be, float *x, int64_t n_tok, int64_t tok_stride, int n_heads,
                     int64_t head_stride, int dim, const float *cos, const float *sin);
    int (*rope_interleaved)(const vlm_backend *be, float *x, int64_t n_tok, int64_t tok_stride, int n_heads,
                            int64_t head_stride, int dim, const float *cos, const float *sin);
    /* vlm_op_attention's semantics (p on the host). allow_fast: the caller accepts a kernel that
     * equals the reference only up to rounding (the CPU backend then runs vlm_op_attention_fast;
     * the decoder passes it for converted weights, as it always has). */
    int (*attention)(const vlm_backend *be, const vlm_attention_params *p, const float *q, const void *k,
                     const void *v, float *out, int allow_fast);
    /* dst[i, :] = row ids[i] of the embedding table W as fp32, i < n (ids checked by the caller). */
    int (*embed_rows)(const vlm_backend *be, float *dst, const vlm_weight *W, const int32_t *ids, int64_t n);
    /* dst[i, :] = src[rows[i] / div, :] for i < n, D floats a row (div = top_k turns MoE entries
     * t * top_k + j into token rows). */
    int (*gather_rows)(const vlm_backend *be, float *dst, const float *src, int64_t D, const int32_t *rows,
                       int64_t n, int div);
    /* For i = 0, 1, ..., n - 1 in this order: y[rows[i] / div, :] += w[rows[i]] * src[i, :]
     * (a multiply then an add, each rounded). With rows grouped by ascending expert, every token
     * receives its experts' outputs in ascending expert order, which a device kernel that sums a
     * token's entries in order (vlm_cuda_moe_combine) reproduces. */
    int (*scatter_add_rows)(const vlm_backend *be, float *y, const float *src, int64_t D, const int32_t *rows,
                            const float *w, int64_t n, int div);
};

/* The CPU backend (a static object; never freed). */
const vlm_backend *vlm_backend_cpu(void);

/* A backend by name: "cpu", "cuda" (device 0) or "cuda:N". An unknown name or a bad device
 * number is VLM_ERR_INVALID; "cuda" when no CUDA backend is registered is VLM_ERR_UNSUPPORTED
 * ("vlm was built without CUDA (rebuild with make CUDA=1)"). The backend stays valid for the
 * life of the process. */
int vlm_backend_by_name(const char *name, const vlm_backend **out);

/* The CUDA backend's constructor: *out = the backend of device `device`, or an error. */
typedef int (*vlm_backend_open_fn)(int device, const vlm_backend **out);
/* Registers (or with NULL, removes) the CUDA backend's constructor that vlm_backend_by_name uses
 * for "cuda[:N]". The CUDA=1 build's cuda/ code calls it once at start-up (before any lookup). */
void vlm_backend_register_cuda(vlm_backend_open_fn open);

/* ---- staging between host memory and buffers (generic over the table above) ----
 * On a backend with host_memory these return the pointer they are given and copy nothing;
 * elsewhere they allocate and copy. Pair every successful call with its release. */

/* *out = a buffer holding the `bytes` at host (to feed host-made data such as RoPE tables or
 * MoE expert orders to ops). */
int vlm_be_buffer_view(const vlm_backend *be, const void *host, size_t bytes, const void **out);
void vlm_be_buffer_view_release(const vlm_backend *be, const void *view);
/* *out = host memory holding the `bytes` of buffer buf (to read results such as gate logits). */
int vlm_be_host_view(const vlm_backend *be, const void *buf, size_t bytes, const void **out);
void vlm_be_host_view_release(const vlm_backend *be, const void *view);
/* *out = a buffer to compute `bytes` of output in that end up at host: host itself, or a new
 * buffer that vlm_be_output_finish downloads to host and frees (finish also on error paths,
 * with commit = 0 to only free). */
int vlm_be_output_view(const vlm_backend *be, void *host, size_t bytes, void **out);
int vlm_be_output_finish(const vlm_backend *be, void *host, void *view, size_t bytes, int commit);

#ifdef __cplusplus
}
#endif
#endif

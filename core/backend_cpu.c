/* The CPU backend: buffers are host memory (malloc) and every op is the core op the decoder
 * has always called, with the same arguments, so results are bit-identical to calling
 * core/ops.h directly (tests/test_backend.cc checks it). */
#include "core/backend.h"

#include "core/error.h"
#include "core/threadpool.h"

#include <stdlib.h>
#include <string.h>

static int cpu_alloc(const vlm_backend *be, size_t bytes, void **out)
{
    (void)be;
    *out = NULL;
    if (bytes == 0) return VLM_OK;
    *out = malloc(bytes);
    if (!*out) return vlm_errorf(VLM_ERR_NOMEM, "out of memory (%.1f MiB)", (double)bytes / 1048576.0);
    return VLM_OK;
}

static void cpu_free(const vlm_backend *be, void *buf)
{
    (void)be;
    free(buf);
}

static int cpu_zero(const vlm_backend *be, void *buf, size_t bytes)
{
    (void)be;
    if (bytes) memset(buf, 0, bytes);
    return VLM_OK;
}

/* upload, download and copy are all one memcpy here (memmove: a view may overlap its source) */
static int cpu_move(const vlm_backend *be, void *dst, const void *src, size_t bytes)
{
    (void)be;
    if (bytes && dst != src) memmove(dst, src, bytes);
    return VLM_OK;
}

static int cpu_copy_rows(const vlm_backend *be, float *dst, int64_t dst_stride, const float *src, int64_t src_stride,
                         int64_t rows, int64_t width)
{
    (void)be;
    if (width <= 0) return VLM_OK;
    for (int64_t i = 0; i < rows; i++) memcpy(dst + i * dst_stride, src + i * src_stride, (size_t)width * sizeof(float));
    return VLM_OK;
}

static int cpu_rows_to_f16(const vlm_backend *be, uint16_t *dst, int64_t dst_stride, const float *src,
                           int64_t src_stride, int64_t rows, int64_t width)
{
    (void)be;
    vlm_op_rows_to_f16(dst, dst_stride, src, src_stride, rows, width);
    return VLM_OK;
}

static int cpu_rows_from_f16(const vlm_backend *be, float *dst, int64_t dst_stride, const uint16_t *src,
                             int64_t src_stride, int64_t rows, int64_t width)
{
    (void)be;
    vlm_op_rows_from_f16(dst, dst_stride, src, src_stride, rows, width);
    return VLM_OK;
}

static int cpu_linear(const vlm_backend *be, float *y, const float *x, int64_t M, const vlm_weight *W,
                      const float *bias)
{
    (void)be;
    vlm_op_linear(y, x, M, W, bias);
    return VLM_OK;
}

static int cpu_linear_many(const vlm_backend *be, const vlm_linear_job *jobs, int n)
{
    (void)be;
    vlm_op_linear_many(jobs, n);
    return VLM_OK;
}

static int cpu_rmsnorm(const vlm_backend *be, float *y, const float *x, int64_t M, int64_t D, int64_t stride,
                       const float *gamma, float eps)
{
    (void)be;
    if (stride == D) {
        vlm_op_rmsnorm(y, x, M, D, gamma, eps);
        return VLM_OK;
    }
    for (int64_t t = 0; t < M; t++) vlm_op_rmsnorm(y + t * stride, x + t * stride, 1, D, gamma, eps);
    return VLM_OK;
}

static int cpu_silu_mul(const vlm_backend *be, float *g, const float *up, int64_t n)
{
    (void)be;
    vlm_op_silu_mul(g, up, n);
    return VLM_OK;
}

static int cpu_add(const vlm_backend *be, float *y, const float *x, int64_t n)
{
    (void)be;
    vlm_op_add(y, x, n);
    return VLM_OK;
}

static int cpu_softmax_rows(const vlm_backend *be, float *x, int64_t M, int64_t n)
{
    (void)be;
    for (int64_t i = 0; i < M; i++) vlm_op_softmax(x + i * n, n);
    return VLM_OK;
}

static int cpu_rope_neox(const vlm_backend *be, float *x, int64_t n_tok, int64_t tok_stride, int n_heads,
                         int64_t head_stride, int dim, const float *cos, const float *sin)
{
    (void)be;
    const int64_t half = dim / 2;
    for (int64_t t = 0; t < n_tok; t++)
        vlm_op_rope_neox(x + t * tok_stride, n_heads, head_stride, dim, cos + t * half, sin + t * half);
    return VLM_OK;
}

static int cpu_rope_interleaved(const vlm_backend *be, float *x, int64_t n_tok, int64_t tok_stride, int n_heads,
                                int64_t head_stride, int dim, const float *cos, const float *sin)
{
    (void)be;
    const int64_t half = dim / 2;
    for (int64_t t = 0; t < n_tok; t++)
        vlm_op_rope_interleaved(x + t * tok_stride, n_heads, head_stride, dim, cos + t * half, sin + t * half);
    return VLM_OK;
}

static int cpu_attention(const vlm_backend *be, const vlm_attention_params *p, const float *q, const void *k,
                         const void *v, float *out, int allow_fast)
{
    (void)be;
    return allow_fast ? vlm_op_attention_fast(p, q, k, v, out) : vlm_op_attention(p, q, k, v, out);
}

static int cpu_embed_rows(const vlm_backend *be, float *dst, const vlm_weight *W, const int32_t *ids, int64_t n)
{
    (void)be;
    for (int64_t i = 0; i < n; i++) vlm_op_weight_row(W, ids[i], dst + i * W->cols);
    return VLM_OK;
}

static int cpu_gather_rows(const vlm_backend *be, float *dst, const float *src, int64_t D, const int32_t *rows,
                           int64_t n, int div)
{
    (void)be;
    for (int64_t i = 0; i < n; i++) memcpy(dst + i * D, src + (int64_t)(rows[i] / div) * D, (size_t)D * sizeof(float));
    return VLM_OK;
}

typedef struct {
    float *y;
    const float *src, *w;
    const int32_t *rows;
    int64_t D, n;
    int div;
} scatter_job;

/* Columns [h0, h1) of every source row, rows in order: a destination row that several sources
 * add to (a token's experts) gets its sums in the same order however the columns are split. */
static void scatter_columns(void *ctx, int64_t h0, int64_t h1)
{
    const scatter_job *j = ctx;
    for (int64_t i = 0; i < j->n; i++) {
        float *yt = j->y + (int64_t)(j->rows[i] / j->div) * j->D;
        const float wt = j->w[j->rows[i]], *si = j->src + i * j->D;
        for (int64_t h = h0; h < h1; h++) yt[h] += wt * si[h];
    }
}

static int cpu_scatter_add_rows(const vlm_backend *be, float *y, const float *src, int64_t D, const int32_t *rows,
                                const float *w, int64_t n, int div)
{
    (void)be;
    scatter_job j = {y, src, w, rows, D, n, div};
    /* a prefill's routed rows (thousands x hidden size) in slices of columns; a decode step's few
     * (tens of rows) here, where the pool's hand-off cost more than it saved */
    const int64_t slice = 256, work = n * D;
    if (work <= 262144 || D <= slice)
        scatter_columns(&j, 0, D);
    else
        vlm_pool_for(vlm_pool_default(), D, slice, scatter_columns, &j);
    return VLM_OK;
}

static const vlm_backend cpu_backend = {
    .name = "cpu",
    .kind = VLM_BACKEND_CPU,
    .device = 0,
    .host_memory = 1,
    .kv_f16 = 1,
    .ctx = NULL,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .upload = cpu_move,
    .download = cpu_move,
    .copy = cpu_move,
    .copy_rows = cpu_copy_rows,
    .rows_to_f16 = cpu_rows_to_f16,
    .rows_from_f16 = cpu_rows_from_f16,
    .linear = cpu_linear,
    .linear_many = cpu_linear_many,
    .rmsnorm = cpu_rmsnorm,
    .silu_mul = cpu_silu_mul,
    .add = cpu_add,
    .softmax_rows = cpu_softmax_rows,
    .rope_neox = cpu_rope_neox,
    .rope_interleaved = cpu_rope_interleaved,
    .attention = cpu_attention,
    .embed_rows = cpu_embed_rows,
    .gather_rows = cpu_gather_rows,
    .scatter_add_rows = cpu_scatter_add_rows,
};

const vlm_backend *vlm_backend_cpu(void) { return &cpu_backend; }

// Rotary embeddings for n_tok tokens.  CPU references: vlm_op_rope_neox and
// vlm_op_rope_interleaved (core/ops_cpu.c), which rotate the heads of one token.
#include "cuda/cuda_internal.cuh"

#define ROPE_MAX_DIM 512

// NeoX: pairs (i, i + dim/2); a thread per pair, each pair read and written by that thread only.
static __global__ void rope_neox_kernel(float *x, int64_t n_tok, int64_t tok_stride, int n_heads, int64_t head_stride,
                                 int dim, const float *cos, const float *sin)
{
    const int h2 = dim / 2;
    const int64_t n = n_tok * n_heads * h2;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        const int i = (int)(e % h2);
        const int64_t th = e / h2, t = th / n_heads;
        const int h = (int)(th % n_heads);
        float *v = x + t * tok_stride + h * head_stride;
        const float c = cos[t * h2 + i], s = sin[t * h2 + i];
        const float a = v[i], b = v[i + h2];
        v[i] = a * c - b * s;
        v[i + h2] = b * c + a * s;
    }
}

// Interleaved pairs (2i, 2i + 1), written de-interleaved: the rotated even values go to [0, dim/2),
// the odd ones to [dim/2, dim). Outputs overwrite other pairs' inputs, so a block takes one
// (token, head) vector, reads it whole into shared memory, then writes.
static __global__ void rope_interleaved_kernel(float *x, int64_t tok_stride, int n_heads, int64_t head_stride, int dim,
                                        const float *cos, const float *sin)
{
    __shared__ float buf[ROPE_MAX_DIM];
    const int h2 = dim / 2;
    const int64_t t = blockIdx.x / n_heads;
    const int h = (int)(blockIdx.x % n_heads);
    float *v = x + t * tok_stride + h * head_stride;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) buf[i] = v[i];
    __syncthreads();
    for (int i = threadIdx.x; i < h2; i += blockDim.x) {
        const float c = cos[t * h2 + i], s = sin[t * h2 + i];
        const float a = buf[2 * i], b = buf[2 * i + 1];
        v[i] = a * c - b * s;
        v[i + h2] = b * c + a * s;
    }
}

static int check(const char *op, float *x, int64_t n_tok, int n_heads, int dim, const float *cos, const float *sin)
{
    if (n_tok < 0 || n_heads < 0) return vlm_errorf(VLM_ERR_INVALID, "cuda %s: negative size", op);
    if (dim <= 0 || dim % 2 || dim > ROPE_MAX_DIM)
        return vlm_errorf(VLM_ERR_INVALID, "cuda %s: dim %d must be even and in 2..%d", op, dim, ROPE_MAX_DIM);
    if (n_tok > 0 && n_heads > 0 && (!x || !cos || !sin))
        return vlm_errorf(VLM_ERR_INVALID, "cuda %s: NULL pointer", op);
    return VLM_OK;
}

extern "C" int vlm_cuda_rope_neox(float *x, int64_t n_tok, int64_t tok_stride, int n_heads, int64_t head_stride,
                                  int dim, const float *cos, const float *sin, vlm_cuda_stream stream)
{
    int rc = check("rope_neox", x, n_tok, n_heads, dim, cos, sin);
    if (rc != VLM_OK || n_tok == 0 || n_heads == 0) return rc;
    const int64_t n = n_tok * n_heads * (dim / 2);
    rope_neox_kernel<<<vlm_grid_for(n, 256), 256, 0, vlm_stream(stream)>>>(x, n_tok, tok_stride, n_heads,
                                                                            head_stride, dim, cos, sin);
    return vlm_cuda_check_launch("rope_neox");
}

extern "C" int vlm_cuda_rope_interleaved(float *x, int64_t n_tok, int64_t tok_stride, int n_heads,
                                         int64_t head_stride, int dim, const float *cos, const float *sin,
                                         vlm_cuda_stream stream)
{
    int rc = check("rope_interleaved", x, n_tok, n_heads, dim, cos, sin);
    if (rc != VLM_OK || n_tok == 0 || n_heads == 0) return rc;
    if (n_tok * n_heads > INT32_MAX)
        return vlm_errorf(VLM_ERR_LIMIT, "cuda rope_interleaved: %lld vectors", (long long)(n_tok * n_heads));
    rope_interleaved_kernel<<<(unsigned)(n_tok * n_heads), 64, 0, vlm_stream(stream)>>>(x, tok_stride, n_heads,
                                                                                        head_stride, dim, cos, sin);
    return vlm_cuda_check_launch("rope_interleaved");
}

/* The CUDA entry points of a build without CUDA (the default `make`): no device, and every
 * operation fails with VLM_ERR_UNSUPPORTED and a message saying how to get CUDA. */
#include "cuda/cuda_ops.h"

#include "core/error.h"

#include <string.h>

static int no_cuda(void)
{
    return vlm_errorf(VLM_ERR_UNSUPPORTED, "vlm was built without CUDA (rebuild with make CUDA=1)");
}

int vlm_cuda_device_count(void)
{
    no_cuda();
    return 0;
}

int vlm_cuda_device_name(int dev, char *buf, size_t n)
{
    (void)dev;
    if (buf && n > 0) buf[0] = '\0';
    return no_cuda();
}

int vlm_cuda_set_device(int dev)
{
    (void)dev;
    return no_cuda();
}

int vlm_cuda_sync(void) { return no_cuda(); }

void vlm_cuda_shutdown(void) {}

int vlm_cuda_stream_create(vlm_cuda_stream *out)
{
    if (out) *out = NULL;
    return no_cuda();
}

void vlm_cuda_stream_destroy(vlm_cuda_stream stream) { (void)stream; }

int vlm_cuda_stream_sync(vlm_cuda_stream stream)
{
    (void)stream;
    return no_cuda();
}

int vlm_cuda_malloc(void **ptr, size_t bytes)
{
    (void)bytes;
    if (ptr) *ptr = NULL;
    return no_cuda();
}

void vlm_cuda_free(void *ptr) { (void)ptr; }

int vlm_cuda_memcpy_h2d(void *dst, const void *src, size_t bytes)
{
    (void)dst, (void)src, (void)bytes;
    return no_cuda();
}

int vlm_cuda_memcpy_d2h(void *dst, const void *src, size_t bytes)
{
    (void)dst, (void)src, (void)bytes;
    return no_cuda();
}

int vlm_cuda_memcpy_d2d(void *dst, const void *src, size_t bytes)
{
    (void)dst, (void)src, (void)bytes;
    return no_cuda();
}

int vlm_cuda_memset0(void *dst, size_t bytes, vlm_cuda_stream stream)
{
    (void)dst, (void)bytes, (void)stream;
    return no_cuda();
}

int vlm_cuda_is_device_pointer(const void *p)
{
    (void)p;
    return 0;
}

int vlm_cuda_copy_rows(float *dst, int64_t dst_stride, const float *src, int64_t src_stride, int64_t rows,
                       int64_t width, vlm_cuda_stream stream)
{
    (void)dst, (void)dst_stride, (void)src, (void)src_stride, (void)rows, (void)width, (void)stream;
    return no_cuda();
}

int vlm_cuda_rmsnorm_strided(float *y, const float *x, int64_t M, int64_t D, int64_t stride, const float *gamma,
                             float eps, vlm_cuda_stream stream)
{
    (void)y, (void)x, (void)M, (void)D, (void)stride, (void)gamma, (void)eps, (void)stream;
    return no_cuda();
}

int vlm_cuda_embed_rows(float *dst, const vlm_cuda_weight *W, const int32_t *ids, int64_t n, vlm_cuda_stream stream)
{
    (void)dst, (void)W, (void)ids, (void)n, (void)stream;
    return no_cuda();
}

int vlm_cuda_scatter_add_rows(float *y, const float *src, int64_t D, const int32_t *rows, const float *w, int64_t n,
                              int div, vlm_cuda_stream stream)
{
    (void)y, (void)src, (void)D, (void)rows, (void)w, (void)n, (void)div, (void)stream;
    return no_cuda();
}

int vlm_cuda_weight_upload(const vlm_weight *W, vlm_cuda_weight *out)
{
    (void)W;
    if (out) memset(out, 0, sizeof *out);
    return no_cuda();
}

void vlm_cuda_weight_free(vlm_cuda_weight *W)
{
    if (W) memset(W, 0, sizeof *W);
}

int vlm_cuda_linear(float *y, const float *x, int64_t M, const vlm_cuda_weight *W, const float *bias,
                    vlm_cuda_stream stream)
{
    (void)y, (void)x, (void)M, (void)W, (void)bias, (void)stream;
    return no_cuda();
}

int vlm_cuda_rmsnorm(float *y, const float *x, int64_t M, int64_t D, const float *gamma, float eps,
                     vlm_cuda_stream stream)
{
    (void)y, (void)x, (void)M, (void)D, (void)gamma, (void)eps, (void)stream;
    return no_cuda();
}

int vlm_cuda_layernorm(float *y, const float *x, int64_t M, int64_t D, const float *gamma, const float *beta,
                       float eps, vlm_cuda_stream stream)
{
    (void)y, (void)x, (void)M, (void)D, (void)gamma, (void)beta, (void)eps, (void)stream;
    return no_cuda();
}

int vlm_cuda_gelu_tanh(float *x, int64_t n, vlm_cuda_stream stream)
{
    (void)x, (void)n, (void)stream;
    return no_cuda();
}

int vlm_cuda_gelu_erf(float *x, int64_t n, vlm_cuda_stream stream)
{
    (void)x, (void)n, (void)stream;
    return no_cuda();
}

int vlm_cuda_silu_mul(float *g, const float *up, int64_t n, vlm_cuda_stream stream)
{
    (void)g, (void)up, (void)n, (void)stream;
    return no_cuda();
}

int vlm_cuda_add(float *y, const float *x, int64_t n, vlm_cuda_stream stream)
{
    (void)y, (void)x, (void)n, (void)stream;
    return no_cuda();
}

int vlm_cuda_softmax_rows(float *x, int64_t M, int64_t n, vlm_cuda_stream stream)
{
    (void)x, (void)M, (void)n, (void)stream;
    return no_cuda();
}

int vlm_cuda_rope_neox(float *x, int64_t n_tok, int64_t tok_stride, int n_heads, int64_t head_stride, int dim,
                       const float *cos, const float *sin, vlm_cuda_stream stream)
{
    (void)x, (void)n_tok, (void)tok_stride, (void)n_heads, (void)head_stride, (void)dim, (void)cos, (void)sin,
        (void)stream;
    return no_cuda();
}

int vlm_cuda_rope_interleaved(float *x, int64_t n_tok, int64_t tok_stride, int n_heads, int64_t head_stride,
                              int dim, const float *cos, const float *sin, vlm_cuda_stream stream)
{
    (void)x, (void)n_tok, (void)tok_stride, (void)n_heads, (void)head_stride, (void)dim, (void)cos, (void)sin,
        (void)stream;
    return no_cuda();
}

int vlm_cuda_attention(const vlm_attention_params *p, const float *q, const float *k, const float *v, float *out,
                       vlm_cuda_stream stream)
{
    (void)p, (void)q, (void)k, (void)v, (void)out, (void)stream;
    return no_cuda();
}

int vlm_cuda_moe_route(const vlm_moe_router *r, const float *bias, const float *logits, int64_t T, int32_t *idx,
                       float *weight, vlm_cuda_stream stream)
{
    (void)r, (void)bias, (void)logits, (void)T, (void)idx, (void)weight, (void)stream;
    return no_cuda();
}

int vlm_cuda_moe_group(const int32_t *idx, int64_t T, int top_k, int n_experts, int32_t *offsets, int32_t *rows,
                       int32_t *pos, vlm_cuda_stream stream)
{
    (void)idx, (void)T, (void)top_k, (void)n_experts, (void)offsets, (void)rows, (void)pos, (void)stream;
    return no_cuda();
}

int vlm_cuda_gather_rows(float *dst, const float *src, int64_t D, const int32_t *rows, int64_t n, int div,
                         vlm_cuda_stream stream)
{
    (void)dst, (void)src, (void)D, (void)rows, (void)n, (void)div, (void)stream;
    return no_cuda();
}

int vlm_cuda_moe_combine(float *y, const float *expert_out, const float *weight, const int32_t *pos, int64_t T,
                         int top_k, int64_t D, vlm_cuda_stream stream)
{
    (void)y, (void)expert_out, (void)weight, (void)pos, (void)T, (void)top_k, (void)D, (void)stream;
    return no_cuda();
}

int vlm_cuda_argmax(const float *x, int64_t M, int64_t V, int32_t *out, vlm_cuda_stream stream)
{
    (void)x, (void)M, (void)V, (void)out, (void)stream;
    return no_cuda();
}

int vlm_cuda_sample(const float *logits, int64_t V, float temperature, int top_k, float top_p, double u,
                    int32_t *out, vlm_cuda_stream stream)
{
    (void)logits, (void)V, (void)temperature, (void)top_k, (void)top_p, (void)u, (void)out, (void)stream;
    return no_cuda();
}

// Norms, activations, add and row softmax.  CPU references: vlm_op_rmsnorm, vlm_op_layernorm,
// vlm_op_gelu_tanh, vlm_op_gelu_erf, vlm_op_silu_mul, vlm_op_add, vlm_op_softmax (core/ops_cpu.c).
// All fp32; the formulas are written in the CPU op's order. The CPU norms sum in double, these
// sum in fp32 with a tree (one block per row), which keeps the relative error near 1e-7.
#include "cuda/cuda_internal.cuh"

#define ROW_THREADS 256

// y = x * 1 / sqrt(mean(x^2) + eps) * gamma, one block per row; rows `stride` floats apart. In place
// is fine: each element is read and written by the same thread.
static __global__ void rmsnorm_kernel(float *y, const float *x, int64_t D, int64_t stride, const float *gamma,
                                      float eps)
{
    const float *xr = x + blockIdx.x * stride;
    float *yr = y + blockIdx.x * stride;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) ss += xr[i] * xr[i];
    ss = vlm_block_sum(ss);
    const float r = 1.0f / sqrtf(ss / (float)D + eps);
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) yr[i] = (xr[i] * r) * gamma[i];
}

// Two passes (mean, then the variance around it) as the CPU op.
static __global__ void layernorm_kernel(float *y, const float *x, int64_t D, const float *gamma, const float *beta,
                                 float eps)
{
    const float *xr = x + blockIdx.x * D;
    float *yr = y + blockIdx.x * D;
    float sum = 0.0f;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) sum += xr[i];
    const float mean = vlm_block_sum(sum) / (float)D;
    float var = 0.0f;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) var += (xr[i] - mean) * (xr[i] - mean);
    var = vlm_block_sum(var) / (float)D;
    const float rstd = 1.0f / sqrtf(var + eps);
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x)
        yr[i] = (xr[i] - mean) * rstd * gamma[i] + (beta ? beta[i] : 0.0f);
}

static __global__ void gelu_tanh_kernel(float *x, int64_t n)
{
    const float k = 0.7978845608028654f; // sqrt(2/pi)
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
    }
}

static __global__ void gelu_erf_kernel(float *x, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

static __global__ void silu_mul_kernel(float *g, const float *up, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        g[i] = g[i] / (1.0f + expf(-g[i])) * up[i];
}

static __global__ void add_kernel(float *y, const float *x, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] += x[i];
}

// exp(x - max), then times 1 / sum, one block per row.
static __global__ void softmax_rows_kernel(float *x, int64_t n)
{
    float *xr = x + blockIdx.x * n;
    float mx = -INFINITY;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) mx = fmaxf(mx, xr[i]);
    mx = vlm_block_max(mx);
    float sum = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        float e = expf(xr[i] - mx);
        xr[i] = e;
        sum += e;
    }
    const float inv = 1.0f / vlm_block_sum(sum);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) xr[i] *= inv;
}

// Rows go to grid.x, which allows 2^31 - 1 blocks.
static int check_rows(const char *op, int64_t M, int64_t D)
{
    if (M < 0 || D < 0) return vlm_errorf(VLM_ERR_INVALID, "cuda %s: negative size", op);
    if (M > INT32_MAX) return vlm_errorf(VLM_ERR_LIMIT, "cuda %s: %lld rows", op, (long long)M);
    return VLM_OK;
}

extern "C" int vlm_cuda_rmsnorm_strided(float *y, const float *x, int64_t M, int64_t D, int64_t stride,
                                        const float *gamma, float eps, vlm_cuda_stream stream)
{
    int rc = check_rows("rmsnorm", M, D);
    if (rc != VLM_OK || M == 0 || D == 0) return rc;
    if (stride < D)
        return vlm_errorf(VLM_ERR_INVALID, "cuda rmsnorm: row stride %lld is below the row length %lld",
                          (long long)stride, (long long)D);
    if (!y || !x || !gamma) return vlm_errorf(VLM_ERR_INVALID, "cuda rmsnorm: NULL pointer");
    rmsnorm_kernel<<<(unsigned)M, ROW_THREADS, 0, vlm_stream(stream)>>>(y, x, D, stride, gamma, eps);
    return vlm_cuda_check_launch("rmsnorm");
}

extern "C" int vlm_cuda_rmsnorm(float *y, const float *x, int64_t M, int64_t D, const float *gamma, float eps,
                                vlm_cuda_stream stream)
{
    return vlm_cuda_rmsnorm_strided(y, x, M, D, D, gamma, eps, stream);
}

extern "C" int vlm_cuda_layernorm(float *y, const float *x, int64_t M, int64_t D, const float *gamma,
                                  const float *beta, float eps, vlm_cuda_stream stream)
{
    int rc = check_rows("layernorm", M, D);
    if (rc != VLM_OK || M == 0 || D == 0) return rc;
    if (!y || !x || !gamma) return vlm_errorf(VLM_ERR_INVALID, "cuda layernorm: NULL pointer");
    layernorm_kernel<<<(unsigned)M, ROW_THREADS, 0, vlm_stream(stream)>>>(y, x, D, gamma, beta, eps);
    return vlm_cuda_check_launch("layernorm");
}

extern "C" int vlm_cuda_gelu_tanh(float *x, int64_t n, vlm_cuda_stream stream)
{
    if (n <= 0) return n < 0 ? vlm_errorf(VLM_ERR_INVALID, "cuda gelu_tanh: negative size") : VLM_OK;
    if (!x) return vlm_errorf(VLM_ERR_INVALID, "cuda gelu_tanh: NULL pointer");
    gelu_tanh_kernel<<<vlm_grid_for(n, 256), 256, 0, vlm_stream(stream)>>>(x, n);
    return vlm_cuda_check_launch("gelu_tanh");
}

extern "C" int vlm_cuda_gelu_erf(float *x, int64_t n, vlm_cuda_stream stream)
{
    if (n <= 0) return n < 0 ? vlm_errorf(VLM_ERR_INVALID, "cuda gelu_erf: negative size") : VLM_OK;
    if (!x) return vlm_errorf(VLM_ERR_INVALID, "cuda gelu_erf: NULL pointer");
    gelu_erf_kernel<<<vlm_grid_for(n, 256), 256, 0, vlm_stream(stream)>>>(x, n);
    return vlm_cuda_check_launch("gelu_erf");
}

extern "C" int vlm_cuda_silu_mul(float *g, const float *up, int64_t n, vlm_cuda_stream stream)
{
    if (n <= 0) return n < 0 ? vlm_errorf(VLM_ERR_INVALID, "cuda silu_mul: negative size") : VLM_OK;
    if (!g || !up) return vlm_errorf(VLM_ERR_INVALID, "cuda silu_mul: NULL pointer");
    silu_mul_kernel<<<vlm_grid_for(n, 256), 256, 0, vlm_stream(stream)>>>(g, up, n);
    return vlm_cuda_check_launch("silu_mul");
}

extern "C" int vlm_cuda_add(float *y, const float *x, int64_t n, vlm_cuda_stream stream)
{
    if (n <= 0) return n < 0 ? vlm_errorf(VLM_ERR_INVALID, "cuda add: negative size") : VLM_OK;
    if (!y || !x) return vlm_errorf(VLM_ERR_INVALID, "cuda add: NULL pointer");
    add_kernel<<<vlm_grid_for(n, 256), 256, 0, vlm_stream(stream)>>>(y, x, n);
    return vlm_cuda_check_launch("add");
}

extern "C" int vlm_cuda_softmax_rows(float *x, int64_t M, int64_t n, vlm_cuda_stream stream)
{
    int rc = check_rows("softmax", M, n);
    if (rc != VLM_OK || M == 0 || n == 0) return rc;
    if (!x) return vlm_errorf(VLM_ERR_INVALID, "cuda softmax: NULL pointer");
    softmax_rows_kernel<<<(unsigned)M, ROW_THREADS, 0, vlm_stream(stream)>>>(x, n);
    return vlm_cuda_check_launch("softmax");
}

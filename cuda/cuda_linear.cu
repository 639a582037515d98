// y = x W^T (+ bias) through cuBLAS.  CPU reference: vlm_op_linear (core/ops_cpu.c).
//
// Row-major to cuBLAS (column-major): y [M, N] row-major is the column-major N x M matrix y^T,
// and y^T = W x^T, where W [N, K] row-major read column-major is K x N (so op T) and x [M, K]
// row-major is column-major K x M (op N). Hence gemm(T, N, m = N, n = M, k = K, W, ld K, x, ld K, y, ld N).
//
// Precision:
//  - F32 weights: CUBLAS_COMPUTE_32F with the handle's default math mode, i.e. plain fp32 FMA
//    (cuBLAS uses TF32 only when asked for it), like the CPU reference up to summation order.
//  - BF16 / F16 weights: cuBLAS cannot mix an fp32 x with a 16-bit W, so x is first rounded to
//    the weight's type (round to nearest even, as vlm_f32_to_bf16), then the tensor cores
//    multiply 16-bit inputs exactly and accumulate in fp32 (CUBLAS_COMPUTE_32F, fp32 output).
//    The only extra error is the rounding of x: at most u * sum_k |x_k w_k| with u = 2^-8 (BF16)
//    or 2^-11 (F16).
#include "cuda/cuda_internal.cuh"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <limits.h>

#include <mutex>

// One handle per process, created on first use. cuBLAS handles are not safe to share between
// threads that change its stream, so every use holds the lock (the calls only enqueue work).
static std::mutex g_lock;
static cublasHandle_t g_handle = NULL;

void vlm_cuda_linear_shutdown(void)
{
    std::lock_guard<std::mutex> hold(g_lock);
    if (g_handle) cublasDestroy(g_handle);
    g_handle = NULL;
}

static int cublas_fail(cublasStatus_t st, const char *what)
{
    int code = st == CUBLAS_STATUS_ALLOC_FAILED       ? VLM_ERR_NOMEM
               : st == CUBLAS_STATUS_NOT_SUPPORTED    ? VLM_ERR_UNSUPPORTED
               : st == CUBLAS_STATUS_ARCH_MISMATCH    ? VLM_ERR_UNSUPPORTED
               : st == CUBLAS_STATUS_NOT_INITIALIZED  ? VLM_ERR_UNSUPPORTED
               : st == CUBLAS_STATUS_INVALID_VALUE    ? VLM_ERR_INVALID
                                                      : VLM_ERR_IO;
    return vlm_errorf(code, "cublas: %s: %s", what, cublasGetStatusString(st));
}

// x fp32 -> the weight's 16-bit type, round to nearest even.
static __global__ void to_bf16_kernel(__nv_bfloat16 *dst, const float *src, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}

static __global__ void to_f16_kernel(__half *dst, const float *src, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = __float2half_rn(src[i]);
}

static __global__ void add_bias_kernel(float *y, const float *bias, int64_t M, int64_t N)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < M * N; i += (int64_t)gridDim.x * blockDim.x)
        y[i] += bias[i % N];
}

// The gemm itself, under the lock. xw: x in the weight's element type (fp32 for F32 weights).
static int gemm_locked(float *y, const void *xw, int M, int N, int K, const vlm_cuda_weight *W, cudaStream_t s)
{
    std::lock_guard<std::mutex> hold(g_lock);
    if (!g_handle) {
        cublasStatus_t st = cublasCreate(&g_handle);
        if (st != CUBLAS_STATUS_SUCCESS) {
            g_handle = NULL;
            return cublas_fail(st, "create handle");
        }
        // the default: no TF32 for fp32 inputs, tensor cores for 16-bit inputs
        (void)cublasSetMathMode(g_handle, CUBLAS_DEFAULT_MATH);
    }
    cublasStatus_t st = cublasSetStream(g_handle, s);
    if (st != CUBLAS_STATUS_SUCCESS) return cublas_fail(st, "set stream");
    cudaDataType_t t = W->dtype == VLM_DT_BF16 ? CUDA_R_16BF : W->dtype == VLM_DT_F16 ? CUDA_R_16F : CUDA_R_32F;
    const float one = 1.0f, zero = 0.0f;
    st = cublasGemmEx(g_handle, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, W->data, t, K, xw, t, K, &zero, y,
                      CUDA_R_32F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS) return cublas_fail(st, "gemm");
    return VLM_OK;
}

extern "C" int vlm_cuda_linear(float *y, const float *x, int64_t M, const vlm_cuda_weight *W, const float *bias,
                               vlm_cuda_stream stream)
{
    if (!W || !W->data) return vlm_errorf(VLM_ERR_INVALID, "cuda linear: no weight");
    if (W->dtype != VLM_DT_F32 && W->dtype != VLM_DT_BF16 && W->dtype != VLM_DT_F16)
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "cuda linear: %s weights (F32, BF16 or F16)", vlm_dtype_name(W->dtype));
    if (M < 0 || W->rows < 0 || W->cols < 0) return vlm_errorf(VLM_ERR_INVALID, "cuda linear: negative size");
    if (M > INT_MAX || W->rows > INT_MAX || W->cols > INT_MAX)
        return vlm_errorf(VLM_ERR_LIMIT, "cuda linear: [%lld, %lld] x [%lld, %lld]^T exceeds cuBLAS's int sizes",
                          (long long)M, (long long)W->cols, (long long)W->rows, (long long)W->cols);
    if (M == 0 || W->rows == 0) return VLM_OK;
    if (!y || !x) return vlm_errorf(VLM_ERR_INVALID, "cuda linear: NULL input or output");
    const int m = (int)M, n = (int)W->rows, k = (int)W->cols;
    cudaStream_t s = vlm_stream(stream);
    if (k == 0) { // an empty sum: y = bias or 0 (cuBLAS would reject ld 0)
        VLM_CUDA_TRY(cudaMemsetAsync(y, 0, (size_t)M * (size_t)n * sizeof(float), s), "linear: clear");
    } else if (W->dtype == VLM_DT_F32) {
        int rc = gemm_locked(y, x, m, n, k, W, s);
        if (rc != VLM_OK) return rc;
    } else {
        // stream-ordered scratch for the rounded x: safe with several streams, cached by the pool
        const int64_t nx = M * (int64_t)k;
        void *xh = NULL;
        VLM_CUDA_TRY(cudaMallocAsync(&xh, (size_t)nx * 2, s), "linear: scratch for x");
        if (W->dtype == VLM_DT_BF16)
            to_bf16_kernel<<<vlm_grid_for(nx, 256), 256, 0, s>>>((__nv_bfloat16 *)xh, x, nx);
        else
            to_f16_kernel<<<vlm_grid_for(nx, 256), 256, 0, s>>>((__half *)xh, x, nx);
        int rc = vlm_cuda_check_launch("linear: convert x");
        if (rc == VLM_OK) rc = gemm_locked(y, xh, m, n, k, W, s);
        (void)cudaFreeAsync(xh, s);
        if (rc != VLM_OK) return rc;
    }
    if (bias) {
        add_bias_kernel<<<vlm_grid_for(M * n, 256), 256, 0, s>>>(y, bias, M, n);
        return vlm_cuda_check_launch("linear: bias");
    }
    return VLM_OK;
}

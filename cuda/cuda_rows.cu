// Row moves of the op backend (core/backend.h) on the device: strided 2-D copies, embedding rows,
// and the MoE scatter-add in the CPU backend's exact order.  CPU references: cpu_copy_rows,
// cpu_embed_rows (vlm_op_weight_row) and cpu_scatter_add_rows in core/backend_cpu.c.
#include "cuda/cuda_internal.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

static __global__ void copy_rows_kernel(float *dst, int64_t ds, const float *src, int64_t ss, int64_t rows,
                                        int64_t width)
{
    const int64_t n = rows * width;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i = e / width, j = e % width;
        dst[i * ds + j] = src[i * ss + j];
    }
}

extern "C" int vlm_cuda_copy_rows(float *dst, int64_t dst_stride, const float *src, int64_t src_stride,
                                  int64_t rows, int64_t width, vlm_cuda_stream stream)
{
    if (rows < 0 || width < 0) return vlm_errorf(VLM_ERR_INVALID, "cuda copy_rows: negative size");
    if (rows == 0 || width == 0) return VLM_OK;
    if (!dst || !src) return vlm_errorf(VLM_ERR_INVALID, "cuda copy_rows: NULL pointer");
    if (rows > 1 && (dst_stride < width || src_stride < width))
        return vlm_errorf(VLM_ERR_INVALID, "cuda copy_rows: strides %lld / %lld below the width %lld",
                          (long long)dst_stride, (long long)src_stride, (long long)width);
    const int64_t n = rows * width;
    copy_rows_kernel<<<vlm_grid_for(n, 256), 256, 0, vlm_stream(stream)>>>(dst, dst_stride, src, src_stride, rows,
                                                                            width);
    return vlm_cuda_check_launch("copy rows");
}

// Widening BF16 / F16 to fp32 is exact, as vlm_op_weight_row.
static __global__ void embed_rows_kernel(float *dst, const void *w, int dtype, int64_t cols, const int32_t *ids,
                                         int64_t n)
{
    const int64_t total = n * cols;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total;
         e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i = e / cols, j = e % cols, s = (int64_t)ids[i] * cols + j;
        float v;
        if (dtype == VLM_DT_BF16)
            v = __bfloat162float(((const __nv_bfloat16 *)w)[s]);
        else if (dtype == VLM_DT_F16)
            v = __half2float(((const __half *)w)[s]);
        else
            v = ((const float *)w)[s];
        dst[e] = v;
    }
}

extern "C" int vlm_cuda_embed_rows(float *dst, const vlm_cuda_weight *W, const int32_t *ids, int64_t n,
                                   vlm_cuda_stream stream)
{
    if (!W || n < 0) return vlm_errorf(VLM_ERR_INVALID, "cuda embed_rows: bad arguments");
    if (W->dtype != VLM_DT_F32 && W->dtype != VLM_DT_BF16 && W->dtype != VLM_DT_F16)
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "cuda embed_rows: %s table (F32, BF16 or F16)",
                          vlm_dtype_name(W->dtype));
    if (n == 0 || W->cols == 0) return VLM_OK;
    if (!dst || !ids || !W->data) return vlm_errorf(VLM_ERR_INVALID, "cuda embed_rows: NULL pointer");
    const int64_t total = n * W->cols;
    embed_rows_kernel<<<vlm_grid_for(total, 256), 256, 0, vlm_stream(stream)>>>(dst, W->data, (int)W->dtype, W->cols,
                                                                                 ids, n);
    return vlm_cuda_check_launch("embed rows");
}

// One thread per column h walks i = 0 .. n-1 in order, so a destination row receives its
// contributions in the CPU loop's order; __fmul_rn / __fadd_rn keep nvcc from fusing them into
// one FMA (the CPU backend rounds the product and the sum separately).
static __global__ void scatter_add_rows_kernel(float *y, const float *src, int64_t D, const int32_t *rows,
                                               const float *w, int64_t n, int div)
{
    for (int64_t h = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; h < D; h += (int64_t)gridDim.x * blockDim.x)
        for (int64_t i = 0; i < n; i++) {
            const int32_t r = rows[i];
            float *yt = y + (int64_t)(r / div) * D + h;
            *yt = __fadd_rn(*yt, __fmul_rn(w[r], src[i * D + h]));
        }
}

extern "C" int vlm_cuda_scatter_add_rows(float *y, const float *src, int64_t D, const int32_t *rows, const float *w,
                                         int64_t n, int div, vlm_cuda_stream stream)
{
    if (n < 0 || D < 0 || div <= 0) return vlm_errorf(VLM_ERR_INVALID, "cuda scatter_add_rows: bad sizes");
    if (n == 0 || D == 0) return VLM_OK;
    if (!y || !src || !rows || !w) return vlm_errorf(VLM_ERR_INVALID, "cuda scatter_add_rows: NULL pointer");
    scatter_add_rows_kernel<<<vlm_grid_for(D, 128), 128, 0, vlm_stream(stream)>>>(y, src, D, rows, w, n, div);
    return vlm_cuda_check_launch("scatter add rows");
}

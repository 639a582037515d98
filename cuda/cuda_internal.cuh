// Shared by the cuda/*.cu files (not part of the API): error mapping, launch helpers and
// warp / block reductions.
#ifndef VLM_CUDA_INTERNAL_CUH
#define VLM_CUDA_INTERNAL_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "core/error.h"
#include "cuda/cuda_ops.h"

// The VLM_ERR_* for a CUDA error.
int vlm_cuda_code(cudaError_t e);
// Stores "cuda: <what>: <CUDA error string>" and returns the matching VLM_ERR_* (see cuda_ops.h).
int vlm_cuda_fail(cudaError_t e, const char *what);
// The error of the last kernel launch (0 when it was accepted).
int vlm_cuda_check_launch(const char *what);
// Destroys the cuBLAS handle (cuda_linear.cu); called by vlm_cuda_shutdown.
void vlm_cuda_linear_shutdown(void);

#define VLM_CUDA_TRY(call, what)                                  \
    do {                                                          \
        cudaError_t e_ = (call);                                  \
        if (e_ != cudaSuccess) return vlm_cuda_fail(e_, (what));  \
    } while (0)

static inline cudaStream_t vlm_stream(vlm_cuda_stream s) { return (cudaStream_t)s; }

// Blocks for a grid-stride loop over n items (capped: each thread loops over the rest).
static inline unsigned vlm_grid_for(int64_t n, int threads)
{
    int64_t b = (n + threads - 1) / threads;
    if (b > 65535 * 8) b = 65535 * 8;
    return (unsigned)(b < 1 ? 1 : b);
}

#define VLM_FULL_MASK 0xffffffffu

__device__ __forceinline__ float vlm_warp_sum(float v)
{
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(VLM_FULL_MASK, v, off);
    return v;
}

__device__ __forceinline__ float vlm_warp_max(float v)
{
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(VLM_FULL_MASK, v, off));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// May be called repeatedly: the leading barrier protects the scratch from the previous call.
__device__ __forceinline__ float vlm_block_sum(float v)
{
    __shared__ float part[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
    v = vlm_warp_sum(v);
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < n_warps ? part[lane] : 0.0f;
        v = vlm_warp_sum(v);
        if (lane == 0) part[0] = v;
    }
    __syncthreads();
    return part[0];
}

__device__ __forceinline__ float vlm_block_max(float v)
{
    __shared__ float part[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
    v = vlm_warp_max(v);
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < n_warps ? part[lane] : -INFINITY;
        v = vlm_warp_max(v);
        if (lane == 0) part[0] = v;
    }
    __syncthreads();
    return part[0];
}

#endif

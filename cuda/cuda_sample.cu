// Token choice on the device.  CPU reference: vlm_sampler_sample (text/sampler.c), steps 2-6.
//
// Greedy: a block per row keeps the best (value, index) of its share, then a block reduction.
// Sampling follows the CPU code step by step, with the sort done by CUB's radix sort (stable,
// so equal logits keep ascending ids, as the CPU comparator) and the running sums by a scan:
//   1. v = logit / temperature (NaN -> -inf, -0 -> +0); count the tokens with v != -inf
//   2. sort (v, id) by v descending
//   3. top-k: keep the first top_k and any ties with the k-th                     (one thread)
//   4. p_j = exp(v_j - v_0) in double for the kept tokens, 0 after them; P = inclusive sums of p
//   5. top-p: keep the fewest tokens whose mass before the next reaches top_p * sum, then the
//      first j with u * sum < P[j] is the pick (binary searches over P)          (one thread)
// P is summed in a different order than the CPU's loop, so a pick can differ only when u * sum
// falls within double rounding (~1e-16 relative) of a boundary.
#include "cuda/cuda_internal.cuh"

#include <cub/cub.cuh>

#define ARGMAX_THREADS 256

// a beats b: not NaN, larger, or equal with the lower index (index -1 = none).
__device__ __forceinline__ bool argmax_better(float va, int ia, float vb, int ib)
{
    if (ia < 0 || isnan(va)) return false;
    if (ib < 0) return true;
    return va > vb || (va == vb && ia < ib);
}

static __global__ void argmax_kernel(const float *x, int64_t V, int32_t *out)
{
    __shared__ float sv[32];
    __shared__ int si[32];
    const float *row = x + blockIdx.x * V;
    float bv = 0.0f;
    int bi = -1;
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x)
        if (argmax_better(row[i], (int)i, bv, bi)) {
            bv = row[i];
            bi = (int)i;
        }
    for (int off = 16; off > 0; off >>= 1) {
        const float ov = __shfl_xor_sync(VLM_FULL_MASK, bv, off);
        const int oi = __shfl_xor_sync(VLM_FULL_MASK, bi, off);
        if (argmax_better(ov, oi, bv, bi)) {
            bv = ov;
            bi = oi;
        }
    }
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) {
        sv[warp] = bv;
        si[warp] = bi;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < (int)(blockDim.x / 32); w++)
            if (argmax_better(sv[w], si[w], bv, bi)) {
                bv = sv[w];
                bi = si[w];
            }
        out[blockIdx.x] = bi;
    }
}

extern "C" int vlm_cuda_argmax(const float *x, int64_t M, int64_t V, int32_t *out, vlm_cuda_stream stream)
{
    if (M < 0 || V < 0 || M > INT32_MAX || V > INT32_MAX)
        return vlm_errorf(VLM_ERR_INVALID, "cuda argmax: bad sizes %lld x %lld", (long long)M, (long long)V);
    if (M == 0) return VLM_OK;
    if (!x || !out) return vlm_errorf(VLM_ERR_INVALID, "cuda argmax: NULL pointer");
    argmax_kernel<<<(unsigned)M, ARGMAX_THREADS, 0, vlm_stream(stream)>>>(x, V, out);
    return vlm_cuda_check_launch("argmax");
}

// ---- sampling ------------------------------------------------------------------

static __global__ void sample_prep_kernel(const float *logits, int n, float temperature, float *keys, int32_t *ids,
                                   int32_t *n_valid)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float v = logits[i] / temperature;
        if (isnan(v)) v = -INFINITY;
        v += 0.0f; // -0 -> +0: the radix sort orders -0 below +0, the CPU comparator calls them equal
        keys[i] = v;
        ids[i] = i;
        if (v != -INFINITY) atomicAdd(n_valid, 1);
    }
}

// n_keep = the tokens left after top-k (ties with the k-th stay).
static __global__ void sample_top_k_kernel(const float *keys, const int32_t *n_valid, int top_k, int32_t *n_keep)
{
    int n = *n_valid;
    if (top_k > 0 && top_k < n) {
        const float kth = keys[top_k - 1];
        int keep = top_k;
        while (keep < n && keys[keep] >= kth) keep++;
        n = keep;
    }
    *n_keep = n;
}

static __global__ void sample_probs_kernel(const float *keys, const int32_t *n_keep, int n, double *p)
{
    const int keep = *n_keep;
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < n; j += gridDim.x * blockDim.x)
        p[j] = j < keep ? exp((double)keys[j] - (double)keys[0]) : 0.0;
}

// The first k in [lo, hi) with P[k] >= x (P non-decreasing), or hi.
static __device__ int first_at_least(const double *P, int lo, int hi, double x)
{
    while (lo < hi) {
        const int mid = lo + (hi - lo) / 2;
        if (P[mid] >= x) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

static __global__ void sample_pick_kernel(const double *P, const int32_t *ids, const int32_t *n_keep, float top_p,
                                          double u, int32_t *out)
{
    int n = *n_keep;
    if (n <= 0) {
        *out = -1;
        return;
    }
    double sum = P[n - 1];
    if (top_p > 0.0f && top_p < 1.0f) {
        // the CPU loop adds tokens while the mass before them is below top_p * sum: it stops after
        // the first k (>= 1) with P[k - 1] >= lim
        const double lim = (double)top_p * sum;
        n = first_at_least(P, 0, n, lim) + 1;
        if (n > *n_keep) n = *n_keep;
        sum = P[n - 1];
    }
    // the first j with u * sum < P[j]; the last kept token if rounding leaves none
    const double x = u * sum;
    int lo = 0, hi = n;
    while (lo < hi) {
        const int mid = lo + (hi - lo) / 2;
        if (x < P[mid]) hi = mid;
        else lo = mid + 1;
    }
    *out = ids[lo < n ? lo : n - 1];
}

extern "C" int vlm_cuda_sample(const float *logits, int64_t V, float temperature, int top_k, float top_p, double u,
                               int32_t *out, vlm_cuda_stream stream)
{
    if (V <= 0 || V > INT32_MAX) return vlm_errorf(VLM_ERR_INVALID, "cuda sample: vocabulary of %lld", (long long)V);
    if (!logits || !out) return vlm_errorf(VLM_ERR_INVALID, "cuda sample: NULL pointer");
    if (!(temperature >= 0) || isinf(temperature))
        return vlm_errorf(VLM_ERR_INVALID, "cuda sample: temperature %g must be a finite value >= 0",
                          (double)temperature);
    if (top_k < 0) return vlm_errorf(VLM_ERR_INVALID, "cuda sample: top_k %d must be >= 0", top_k);
    if (!(top_p >= 0 && top_p <= 1))
        return vlm_errorf(VLM_ERR_INVALID, "cuda sample: top_p %g not in [0, 1]", (double)top_p);
    if (!(u >= 0 && u < 1)) return vlm_errorf(VLM_ERR_INVALID, "cuda sample: u %g not in [0, 1)", u);
    if (temperature == 0.0f) return vlm_cuda_argmax(logits, 1, V, out, stream);

    const int n = (int)V;
    cudaStream_t s = vlm_stream(stream);
    // CUB's scratch size for the sort and the scan (a query, nothing runs)
    size_t sort_bytes = 0, scan_bytes = 0;
    VLM_CUDA_TRY(cub::DeviceRadixSort::SortPairsDescending(NULL, sort_bytes, (const float *)NULL, (float *)NULL,
                                                           (const int32_t *)NULL, (int32_t *)NULL, n, 0, 32, s),
                 "sample: sort size");
    VLM_CUDA_TRY(cub::DeviceScan::InclusiveSum(NULL, scan_bytes, (const double *)NULL, (double *)NULL, n, s),
                 "sample: scan size");
    const size_t cub_bytes = sort_bytes > scan_bytes ? sort_bytes : scan_bytes;

    // one stream-ordered allocation, carved into 256-byte aligned pieces
    const size_t al = 256, nf = ((size_t)n * 4 + al - 1) / al * al, nd = ((size_t)n * 8 + al - 1) / al * al;
    const size_t total = 4 * nf + 2 * nd + al + (cub_bytes + al - 1) / al * al;
    char *mem = NULL;
    VLM_CUDA_TRY(cudaMallocAsync((void **)&mem, total, s), "sample: scratch");
    float *keys = (float *)mem, *keys_sorted = (float *)(mem + nf);
    int32_t *ids = (int32_t *)(mem + 2 * nf), *ids_sorted = (int32_t *)(mem + 3 * nf);
    double *p = (double *)(mem + 4 * nf), *P = (double *)(mem + 4 * nf + nd);
    int32_t *counts = (int32_t *)(mem + 4 * nf + 2 * nd); // [0] valid tokens, [1] kept after top-k
    void *cub_tmp = mem + 4 * nf + 2 * nd + al;

    int rc = VLM_OK;
    cudaError_t e = cudaMemsetAsync(counts, 0, 2 * sizeof(int32_t), s);
    if (e == cudaSuccess) {
        sample_prep_kernel<<<vlm_grid_for(n, 256), 256, 0, s>>>(logits, n, temperature, keys, ids, counts);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess)
        e = cub::DeviceRadixSort::SortPairsDescending(cub_tmp, sort_bytes, keys, keys_sorted, ids, ids_sorted, n, 0, 32,
                                                      s);
    if (e == cudaSuccess) {
        sample_top_k_kernel<<<1, 1, 0, s>>>(keys_sorted, counts, top_k, counts + 1);
        sample_probs_kernel<<<vlm_grid_for(n, 256), 256, 0, s>>>(keys_sorted, counts + 1, n, p);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cub::DeviceScan::InclusiveSum(cub_tmp, scan_bytes, p, P, n, s);
    if (e == cudaSuccess) {
        sample_pick_kernel<<<1, 1, 0, s>>>(P, ids_sorted, counts + 1, top_p, u, out);
        e = cudaGetLastError();
    }
    if (e != cudaSuccess) rc = vlm_cuda_fail(e, "sample");
    (void)cudaFreeAsync(mem, s);
    return rc;
}
